import pytest

from probexit.probes.rules import ExitSettings, SettingsError, answers_agree


@pytest.mark.parametrize(
    "kwargs, field",
    [
        pytest.param({"rule": "magic"}, "rule", id="rule"),
        pytest.param({"threshold": 1.5}, "threshold", id="threshold-high"),
        pytest.param({"threshold": float("nan")}, "threshold", id="threshold-nan"),
        pytest.param({"min_thinking_tokens": -1}, "min_thinking_tokens", id="min-tokens"),
        pytest.param({"k": 0}, "k", id="k"),
        pytest.param({"rule": "budget"}, "budget", id="budget-missing"),
        pytest.param({"record": "yes"}, "record", id="record"),
        pytest.param({"rule": "oracle"}, "answer", id="oracle-without-answer"),
    ],
)
def test_invalid_settings_name_their_field(kwargs, field):
    with pytest.raises(SettingsError) as error:
        ExitSettings(**kwargs)
    assert error.value.field == field and f"early_exit.{field}" in str(error.value)


def test_unknown_setting_is_named():
    with pytest.raises(SettingsError, match="early_exit.colour"):
        ExitSettings.from_json({"colour": "red"})


def test_json_round_trip():
    settings = ExitSettings(rule="consistency", k=3, min_thinking_tokens=10)
    assert ExitSettings.from_json(settings.to_json()) == settings


@pytest.mark.parametrize(
    "answers, k, expected",
    [
        pytest.param(["3", "3"], 2, True, id="agree"),
        pytest.param(["3", "4"], 2, False, id="disagree"),
        pytest.param(["3"], 2, False, id="too-few"),
        pytest.param(["4", "3", "3.", " 3"], 3, True, id="normalised"),
        pytest.param(["2.0", "2"], 2, True, id="numbers"),
    ],
)
def test_answers_agree(answers, k, expected):
    assert answers_agree(answers, k) is expected
