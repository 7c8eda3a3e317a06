"""The soak benchmark's bookkeeping: what the clients tally, the counters it compares, the RSS growth it reports.
The live run against a real server is tests/server/test_soak_live.py."""

import pytest

from probexit.benchmarks.settings import SoakSettings
from probexit.benchmarks.soak import (
    CHOICES,
    MIB,
    PLAIN,
    SHADOW,
    Tally,
    compare_counters,
    read_metrics,
    record,
    rss_summary,
    total,
)

METRICS_BEFORE = """
probexit:requests_total{model_name="m",outcome="success"} 3.0
probexit:requests_total{model_name="m",outcome="aborted"} 1.0
probexit:requests_total{model_name="m",outcome="error"} 0.0
probexit:requests_total{model_name="m",outcome="rejected"} 0.0
probexit:early_exits_total{model_name="m",rule="probe"} 2.0
probexit:thinking_tokens_count{model_name="m"} 3.0
probexit:thinking_tokens_sum{model_name="m"} 90.0
probexit:shadow_requests_total{model_name="m"} 0.0
probexit:event_channel_rejected_total{model_name="m",reason="handshake"} 0.0
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 1.0
"""


def _after(**changes) -> str:
    text = METRICS_BEFORE
    for line, value in changes.items():
        text = text.replace(line, value)
    return text


def _finished(*reports, tokens=10):
    return {"reports": dict(enumerate(reports)), "usage": {"completion_tokens": tokens}}


def test_a_run_whose_counters_match_the_clients_is_all_equal():
    tally = Tally()
    record(tally, PLAIN, _finished({"triggered": True, "reasoning_tokens": 12}))
    record(tally, CHOICES, _finished(*[{"triggered": i == 0, "reasoning_tokens": 10} for i in range(3)]))
    record(tally, SHADOW, _finished({"triggered": False, "reasoning_tokens": 40, "shadow": True}))
    record(tally, PLAIN, {"dropped": True})
    after = _after(
        **{
            'outcome="success"} 3.0': 'outcome="success"} 6.0',
            'outcome="aborted"} 1.0': 'outcome="aborted"} 2.0',
            'rule="probe"} 2.0': 'rule="probe"} 4.0',
            'thinking_tokens_count{model_name="m"} 3.0': 'thinking_tokens_count{model_name="m"} 8.0',
            'thinking_tokens_sum{model_name="m"} 90.0': 'thinking_tokens_sum{model_name="m"} 172.0',
            'shadow_requests_total{model_name="m"} 0.0': 'shadow_requests_total{model_name="m"} 1.0',
        }
    )
    result = compare_counters(read_metrics(METRICS_BEFORE), read_metrics(after), tally)
    assert result["all_equal"], result["rows"]
    assert (tally.completed, tally.disconnected, tally.choices, tally.completion_tokens) == (3, 1, 5, 30)


def test_a_lost_report_or_a_strangers_connection_shows_as_unequal():
    tally = Tally()
    record(tally, PLAIN, _finished({"triggered": False, "reasoning_tokens": 5}))
    after = _after(
        **{
            'outcome="success"} 3.0': 'outcome="success"} 4.0',
            'rule="probe"} 2.0': 'rule="probe"} 3.0',  # the server counted an exit the client never saw
            'thinking_tokens_count{model_name="m"} 3.0': 'thinking_tokens_count{model_name="m"} 4.0',
            'thinking_tokens_sum{model_name="m"} 90.0': 'thinking_tokens_sum{model_name="m"} 95.0',
            'reason="handshake"} 0.0': 'reason="handshake"} 2.0',
        }
    )
    result = compare_counters(read_metrics(METRICS_BEFORE), read_metrics(after), tally)
    unequal = {name for name, row in result["rows"].items() if not row["equal"]}
    assert unequal == {"early_exits", "channel_rejections"} and not result["all_equal"]


def test_errors_are_tallied_and_gauges_summed_over_engines():
    tally = Tally()
    record(tally, SHADOW, {"error": "HTTP 500: b'boom'"})
    assert tally.errors == ["shadow: HTTP 500: b'boom'"] and tally.completed == 0
    assert total(read_metrics(METRICS_BEFORE), "vllm:num_requests_running") == 3.0


def test_rss_growth_compares_the_window_after_warmup_with_the_last():
    # 100 s at one sample a second: warm-up 20 s (RSS climbing), then flat at 1000 MiB, the last 10 s at 1010 MiB
    samples = [[t, (500 + 25 * t if t < 20 else 1000 if t < 90 else 1010) * MIB] for t in range(100)]
    summary = rss_summary(samples, 100.0, warmup_share=0.2, window_share=0.1)
    assert summary["start_mib"] == 1000 and summary["end_mib"] == 1010
    assert summary["growth_after_warmup_pct"] == pytest.approx(1.0)
    assert summary["max_mib"] == 1010 and summary["slope_mib_per_h"] > 0


def test_rss_growth_is_none_without_samples_after_warmup():
    summary = rss_summary([[0.0, 10 * MIB]], 100.0, warmup_share=0.2, window_share=0.1)
    assert summary["growth_after_warmup_pct"] is None and summary["max_mib"] == 10


@pytest.mark.parametrize(
    "values, message",
    [
        ({"minutes": 0}, "--minutes"),
        ({"n": 1}, "--n must be at least 2"),
        ({"concurrency": 0}, "--concurrency"),
        ({"warmup_share": 0.95}, "--warmup-share"),
    ],
)
def test_settings_refuse_what_cannot_run(tmp_path, values, message):
    with pytest.raises(ValueError, match=message):
        SoakSettings(out=tmp_path, **values)
