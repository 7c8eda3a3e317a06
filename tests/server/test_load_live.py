"""`probexit bench load` end to end against the session's real server, reduced: its report's fields and
that every request completed (what it measures is in the report, not checked here)."""

import asyncio
import json

import pytest

from probexit.benchmarks.load import run_benchmark, summary_lines, write_report
from probexit.benchmarks.settings import LoadSettings


@pytest.mark.slow
def test_load_report_end_to_end(server, tmp_path):
    report = asyncio.run(
        run_benchmark(
            server.base_url,
            server.api_key,
            LoadSettings(out=tmp_path, concurrency=8, rounds=2, warmup=1, max_tokens=96),
            server_pid=server.process.pid,
        )
    )
    load, overhead = report["load"], report["overhead"]
    assert (load["requests"], load["completed"], load["errors"], load["requests_running_after"]) == (8, 8, 0, 0)
    assert load["early_exits"] > 0  # the session probe fires at the first boundary
    assert load["cpu_ms_per_token"] > 0
    for field in ("ttft_ms", "latency_ms"):
        assert load[field]["p50"] <= load[field]["p99"]
    assert load["ttft_ms"]["p50"] <= load["latency_ms"]["p50"] and load["output_tokens_per_s"] > 0
    assert overhead["errors"] == 0 and len(overhead["per_round_ratios"]) == 2
    assert {
        "tokens_per_s_ratio_median",
        "tokens_per_s_ratio_pooled",
        "slower_by",
        "identical_token_counts",
        "identical_text",
    } <= set(overhead)
    assert [len(overhead["rounds"][name]) for name in ("never_fires", "disabled")] == [2, 2]
    path = write_report(report, tmp_path)
    assert json.loads(path.read_text())["workload"]["concurrency"] == 8
    assert len(summary_lines(report)) == 3
