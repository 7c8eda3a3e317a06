"""The load benchmark's bookkeeping on synthetic streams and runs (the live run is `probexit bench load`)."""

import hashlib

import pytest

from probexit.benchmarks.load import Client, summarize_overhead


def run(tokens: list[int], wall: float, cpu_ms: float | None = None, digests=None) -> dict:
    results = [{"tokens": t, "digest": (digests or {}).get(i, str(t)), "error": None} for i, t in enumerate(tokens)]
    return {
        "results": results,
        "tokens": sum(tokens),
        "wall_s": wall,
        "tokens_per_s": sum(tokens) / wall,
        "cpu_ms_per_token": cpu_ms,
        "probe_step_s": 0.01 * wall,
    }


def test_overhead_ratio_and_identical_tokens():
    runs = {
        "never_fires": [run([10, 20], 1.0, 2.0), run([10, 20], 1.1, 2.2)],
        "disabled": [run([10, 20], 1.0, 2.0), run([10, 20], 1.0, 2.0)],
    }
    summary = summarize_overhead(runs)
    assert summary["per_round_ratios"] == pytest.approx([1.0, 1 / 1.1])
    assert summary["tokens_per_s_ratio_pooled"] == pytest.approx(2.0 / 2.1)
    assert summary["cpu_efficiency_ratio_median"] == pytest.approx((1.0 + 2.0 / 2.2) / 2)
    assert summary["identical_token_counts"] and summary["identical_text"]
    assert summary["probe_step_share_of_wall"] == pytest.approx(0.01)
    assert summary["slower_by"] == pytest.approx(1 - (1.0 + 1 / 1.1) / 2)
    assert "results" not in summary["rounds"]["disabled"][0]


def test_a_request_with_other_tokens_is_counted_per_run():
    runs = {"never_fires": [run([10, 21], 1.0)], "disabled": [run([10, 20], 1.0)]}
    summary = summarize_overhead(runs)
    assert not summary["identical_token_counts"]
    assert summary["requests_with_other_token_counts"] == {"never_fires": [1], "disabled": [0]}
    assert summary["cpu_efficiency_ratio_median"] is None


def test_stream_chunks_give_ttft_tokens_report_and_errors():
    result = {"ttft_s": None, "tokens": 0, "finish_reason": None, "early_exit": None, "error": None}
    digest = hashlib.sha256()
    Client._read_chunk({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, result, digest, 0.0)
    assert result["ttft_s"] is None  # the role chunk carries no text
    Client._read_chunk({"choices": [{"delta": {"reasoning_content": "3 + 14"}}]}, result, digest, 0.0)
    assert result["ttft_s"] is not None
    Client._read_chunk(
        {"choices": [{"delta": {}, "finish_reason": "stop", "early_exit": {"triggered": True}}]}, result, digest, 0.0
    )
    Client._read_chunk({"choices": [], "usage": {"completion_tokens": 7}}, result, digest, 0.0)
    assert (result["finish_reason"], result["early_exit"], result["tokens"]) == ("stop", {"triggered": True}, 7)
    Client._read_chunk({"error": {"message": "the engine is not running"}}, result, digest, 0.0)
    assert result["error"] == "the engine is not running"
