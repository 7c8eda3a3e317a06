import pytest
import torch

from probexit.engine.events import RequestRecord
from probexit.probes.fingerprint import ModelIdentity
from probexit.probes.probe import CalibrationPoint, Probe, ProbeConfig, ProbeModel
from probexit.probes.rules import ExitSettings
from probexit.probes.runtime import Evaluation
from probexit.server import early_exit
from probexit.server.errors import APIError
from probexit.server.protocol import EarlyExitRequest


def probe(calibration=()) -> Probe:
    config = ProbeConfig(
        kind="linear",
        hidden_size=4,
        width=0,
        model=ModelIdentity("m", 4, 10, "f"),
        default_threshold=0.8,
        calibration=list(calibration),
    )
    return Probe(config, ProbeModel(4, 0, torch.zeros(4), torch.ones(4)).weights())


def defaults(**overrides) -> early_exit.ExitDefaults:
    settings = ExitSettings(threshold=0.8, min_thinking_tokens=5)
    values = dict(enabled=True, settings=settings, probe=probe(), markers_known=True)
    return early_exit.ExitDefaults(**{**values, **overrides})


def resolve(body: dict | None, **overrides):
    return early_exit.resolve(EarlyExitRequest(**body) if body is not None else None, defaults(**overrides))


@pytest.mark.parametrize(
    "body, server, expected",
    [
        pytest.param(None, {}, ExitSettings("probe", 0.8, 5), id="server-defaults"),
        pytest.param({"threshold": 0.9}, {}, ExitSettings("probe", 0.9, 5), id="threshold-overrides"),
        pytest.param({"min_thinking_tokens": 0}, {}, ExitSettings("probe", 0.8, 0), id="zero-is-a-value"),
        pytest.param(
            {"rule": "budget", "budget": 3},
            {"probe": None},
            ExitSettings("budget", 0.8, 5, budget=3),
            id="text-rule-without-probe",
        ),
        pytest.param({"rule": "consistency", "k": 3}, {}, ExitSettings("consistency", 0.8, 5, k=3), id="k"),
        pytest.param(None, {"enabled": False}, None, id="server-off"),
        pytest.param({"enabled": False}, {}, None, id="request-off"),
        pytest.param({"enabled": True}, {"enabled": False}, ExitSettings("probe", 0.8, 5), id="request-on"),
        pytest.param({"enabled": False, "threshold": 7}, {}, None, id="off-ignores-the-rest"),
        pytest.param({"threshold": 0.9}, {"enabled": False}, ExitSettings("probe", 0.9, 5), id="settings-ask-for-it"),
        pytest.param({}, {"enabled": False}, None, id="empty-object-follows-server"),
        pytest.param({"rule": "oracle", "answer": "10"}, {}, ExitSettings("oracle", 0.8, 5, answer="10"), id="oracle"),
    ],
)
def test_resolve(body, server, expected):
    assert resolve(body, **server) == expected


@pytest.mark.parametrize(
    "body, server, field",
    [
        pytest.param({"threshold": 1.5}, {}, "early_exit.threshold", id="threshold"),
        pytest.param({"threshold": 0.5, "max_risk": 0.1}, {}, "early_exit.max_risk", id="both"),
        pytest.param({"max_risk": 0.1}, {}, "early_exit.max_risk", id="no-calibration"),
        pytest.param({"max_risk": 0.1, "rule": "first"}, {}, "early_exit.max_risk", id="max-risk-other-rule"),
        pytest.param({}, {"probe": None}, "early_exit.rule", id="probe-rule-without-probe"),
        pytest.param({"rule": "first"}, {"markers_known": False}, "early_exit.enabled", id="no-markers"),
        pytest.param({"rule": "budget"}, {}, "early_exit.budget", id="budget-needs-budget"),
        pytest.param({"rule": "nope"}, {}, "early_exit.rule", id="unknown-rule"),
    ],
)
def test_invalid_settings_name_the_field(body, server, field):
    with pytest.raises(APIError) as error:
        resolve(body, **server)
    assert error.value.status == 400 and error.value.param == field and field in error.value.message


def test_max_risk_uses_the_calibration_table():
    table = [CalibrationPoint(0.05, 0.95), CalibrationPoint(0.1, 0.9)]
    assert resolve({"max_risk": 0.07}, probe=probe(table)).threshold == 0.95
    assert resolve({"max_risk": 0.01}, probe=probe(table)).threshold == 1.01  # stricter than certified: never


def test_report():
    settings = ExitSettings()
    record = RequestRecord([Evaluation("r", 0, 9, 10, 0.4, False), Evaluation("r", 1, 19, 20, 0.9, True)])
    assert early_exit.report(settings, record, 20).model_dump() == {
        "triggered": True,
        "score": 0.9,
        "boundary": 1,
        "reasoning_tokens": 20,
        "reason": "probe",
    }
    assert early_exit.report(settings, RequestRecord(record.evaluations[:1]), 30).model_dump() == {
        "triggered": False,
        "score": 0.4,
        "boundary": None,
        "reasoning_tokens": 30,
        "reason": None,
    }
    assert early_exit.report(None, None, 7).model_dump() == {
        "triggered": False,
        "score": None,
        "boundary": None,
        "reasoning_tokens": 7,
        "reason": None,
    }
    assert early_exit.report(None, None, 7, cut_while_thinking=True).reason == "length"
    budget = RequestRecord([Evaluation("r", None, 9, 10, None, True)])
    assert early_exit.report(ExitSettings(budget=10), budget, 10).reason == "budget"
    consistency = RequestRecord([Evaluation("r", 2, 9, 10, None, True)])
    assert early_exit.report(ExitSettings(rule="consistency"), consistency, 10).reason == "rule"


@pytest.mark.parametrize(
    "effort, server, expected",
    [
        pytest.param("none", {}, ExitSettings("budget", 0.8, 5, budget=1), id="none-without-a-template-switch"),
        pytest.param("xhigh", {}, None, id="xhigh-thinks-to-the-end"),
        pytest.param("max", {}, None, id="deepseeks-max"),
        pytest.param("medium", {}, ExitSettings("probe", 0.8, 5), id="medium-is-the-default"),
        pytest.param(
            "high",
            {"probe": probe([CalibrationPoint(0.005, 0.97), CalibrationPoint(0.02, 0.6)])},
            ExitSettings("probe", 0.97, 5),
            id="high-is-a-strict-risk",
        ),
        pytest.param(
            "low",
            {"probe": probe([CalibrationPoint(0.005, 0.97), CalibrationPoint(0.02, 0.6)])},
            ExitSettings("probe", 0.6, 5),
            id="low-is-a-loose-risk",
        ),
        pytest.param("low", {}, ExitSettings("probe", 0.8, 5), id="no-table-falls-back-to-the-default"),
        pytest.param("none", {"markers_known": False, "enabled": False}, None, id="no-markers-nothing-to-end"),
    ],
)
def test_reasoning_effort_maps_to_settings(effort, server, expected):
    assert early_exit.resolve(None, defaults(**server), effort=effort) == expected


@pytest.mark.parametrize(
    "body, budget, expected",
    [
        pytest.param(None, 50, ExitSettings("probe", 0.8, 5, budget=50), id="a-cap-on-the-probe"),
        pytest.param({"enabled": False}, 50, ExitSettings("budget", budget=50), id="alone"),
        pytest.param(
            {"rule": "budget", "budget": 30}, 50, ExitSettings("budget", 0.8, 5, budget=30), id="tighter-rule"
        ),
    ],
)
def test_thinking_budget(body, budget, expected):
    request = EarlyExitRequest(**body) if body is not None else None
    assert early_exit.resolve(request, defaults(), thinking_budget=budget) == expected


def test_a_thinking_budget_needs_thinking_markers():
    with pytest.raises(APIError) as error:
        early_exit.resolve(None, defaults(enabled=False, markers_known=False), thinking_budget=10)
    assert error.value.param == "thinking_token_budget"
