"""`probexit bench soak` against the session's real server, for a quarter of a minute: every kind of request is
sent, nothing fails or stays running, and the server's counters equal what the clients saw (the memory numbers
are measured, not judged, here)."""

import asyncio

import pytest

from probexit.benchmarks.settings import SoakSettings
from probexit.benchmarks.soak import KINDS, run_soak, summary_lines, write_report


@pytest.mark.slow
def test_a_short_soak_is_clean_and_its_counters_match(server, tmp_path):
    settings = SoakSettings(out=tmp_path, minutes=0.25, concurrency=6, max_tokens=64, sample_seconds=1)
    questions = ["What is 3 + 14 - 7?", "What is 12 - 5 + 9?", "Compute 45 + 17 - 9 + 3."]
    report = asyncio.run(run_soak(server.base_url, server.api_key, questions, settings, server.process.pid))
    requests = report["requests"]
    assert requests["errors"] == 0, requests["error_samples"]
    assert all(requests["sent_by_kind"][kind] > 0 for kind in KINDS)
    assert requests["completed"] + requests["disconnected"] == requests["sent"] and requests["disconnected"] > 0
    assert report["at_end"]["health_requests_running"] == 0 and report["at_end"]["vllm_num_requests_waiting"] == 0
    assert report["counters"]["all_equal"], report["counters"]["rows"]
    assert report["counters"]["rows"]["early_exits"]["server"] > 0  # the session's probe fires at the first boundary
    assert report["rss"]["samples"] >= 10 and report["rss"]["growth_after_warmup_pct"] is not None
    assert write_report(report, tmp_path).is_file() and len(summary_lines(report)) == 4
