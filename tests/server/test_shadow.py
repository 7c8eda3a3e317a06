"""Shadow mode: a shadow request's answer is the one without early exit, its report and the server's metrics say
what early exit would have done, and `probexit bench shadow` turns those metrics into estimates.

Against the session server (conftest.py): its probe scores every boundary about 1.0, so the rule would exit at the
first boundary at any threshold of SHADOW_THRESHOLDS.
"""

from __future__ import annotations

import json

import pytest

from probexit.benchmarks import shadow as bench
from probexit.cli.main import main
from probexit.engine.events import RequestRecord
from probexit.probes.rules import SHADOW_THRESHOLDS, ExitSettings
from probexit.probes.runtime import Evaluation
from probexit.server import early_exit
from probexit.server.protocol import EarlyExitRequest
from tests.server.test_early_exit_settings import defaults
from tests.server.test_server import chat

SHADOW = {"early_exit": {"shadow": True}}
OFF = {"early_exit": {"enabled": False}}


def test_a_shadow_answer_is_token_identical_to_no_early_exit(client):
    shadowed = chat(client, seed=41, max_tokens=400, logprobs=True, extra_body=SHADOW).choices[0]
    plain = chat(client, seed=41, max_tokens=400, logprobs=True, extra_body=OFF).choices[0]
    assert [t.token for t in shadowed.logprobs.content] == [t.token for t in plain.logprobs.content]
    assert (shadowed.message.content, shadowed.message.reasoning_content) == (
        plain.message.content,
        plain.message.reasoning_content,
    )
    report = shadowed.early_exit
    assert report["shadow"] is True and report["triggered"] is False and report["reason"] is None
    assert report["would_exit"] is True and report["boundary"] == 0 and report["score"] > 0.99
    assert 0 < report["would_save_tokens"] < report["reasoning_tokens"]
    assert isinstance(report["answer_changed"], bool)
    assert "shadow" not in plain.early_exit  # only a shadow request's report carries the shadow fields


def test_a_streamed_shadow_request_reports_on_its_last_chunk(client):
    chunks = list(chat(client, seed=42, max_tokens=400, stream=True, extra_body=SHADOW))
    last = [choice for chunk in chunks for choice in chunk.choices if choice.finish_reason is not None][0]
    assert last.early_exit["shadow"] is True and last.early_exit["would_exit"] is True


def test_shadow_requests_count_in_the_metrics(server, client):
    before = bench.read_counters(server.base_url)
    for seed in (43, 44):
        chat(client, seed=seed, max_tokens=400, extra_body=SHADOW)
    counters = bench.difference(bench.read_counters(server.base_url), before)
    assert counters["requests"][""] == 2
    assert counters["would_exit"]["request"] == 2
    assert {f"threshold={t}" for t in SHADOW_THRESHOLDS} <= set(counters["would_exit"])
    assert counters["saved_tokens"]["request"] == counters["saved_tokens"]["threshold=0.99"] > 0
    evaluations = server.metric("probexit:probe_evaluations_total", decision="would_exit")
    assert evaluations >= 2


def test_bench_shadow_reads_a_servers_metrics(server, client, tmp_path, capsys):
    chat(client, seed=45, max_tokens=400, extra_body=SHADOW)
    assert main(["bench", "shadow", "--url", server.base_url, "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "shadow.json").read_text())
    request = report["estimates"]["settings"]["request"]
    assert report["estimates"]["shadow_requests"] >= 1 and request["would_exit_rate"]["value"] == 100.0
    low, high = request["saved_share_pct"]["ci95"]
    assert low <= request["saved_share_pct"]["value"] <= high
    assert "shadow requests" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["--url", "http://127.0.0.1:9", "--problems", "x.jsonl"], "only reads", id="url-and-problems"),
        pytest.param(["--url", "http://127.0.0.1:9"], "cannot read", id="no-server"),
    ],
)
def test_bench_shadow_bad_input_is_one_line(argv, message, tmp_path, capsys):
    assert main(["bench", "shadow", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


# -- the arithmetic --------------------------------------------------------------------------------------
def test_estimates_from_counters():
    counters = {
        "requests": {"": 4},
        "thinking_tokens": {"": 400},
        "thinking_tokens_squared": {"": 40_000},
        "would_exit": {"request": 2},
        "answer_changed": {"request": 1},
        "saved_tokens": {"request": 100},
        "saved_tokens_squared": {"request": 5_000},
        "saved_thinking_product": {"request": 10_000},
    }
    row = bench.estimates(counters)["settings"]["request"]
    assert row["would_exit_rate"]["value"] == 50 and row["answer_change_rate_pct"]["value"] == 25
    assert row["saved_share_pct"]["value"] == 25
    # every request thought 100 tokens; two saved 50 each: the share's spread is that of the savings
    low, high = row["saved_share_pct"]["ci95"]
    assert low < 25 < high and high - low == pytest.approx(2 * 1.959964 * 12.5)  # sd of s - R t: 25, over 100
    assert 0 <= row["would_exit_rate"]["ci95"][0] < 50 < row["would_exit_rate"]["ci95"][1] <= 100


def test_shadow_outcomes_per_setting():
    evaluations = [
        Evaluation("r", 0, 9, 10, 0.6, False, answer="9"),
        Evaluation("r", 1, 19, 20, 0.92, True, answer="10"),
        Evaluation("r", None, 29, 30, None, True),
    ]  # the last one: a budget exit, which is real
    outcomes = {
        o.setting: o
        for o in early_exit.shadow_outcomes(
            ExitSettings(threshold=0.9, shadow=True), RequestRecord(evaluations), 50, "\\boxed{10}"
        )
    }
    assert (outcomes["request"].saved_tokens, outcomes["request"].answer_changed) == (30, False)
    assert (outcomes["threshold=0.5"].saved_tokens, outcomes["threshold=0.5"].answer_changed) == (40, True)
    assert not outcomes["threshold=0.95"].would_exit and outcomes["threshold=0.95"].answer_changed is None
    report = early_exit.report(ExitSettings(shadow=True), RequestRecord(evaluations), 30, shadow=outcomes["request"])
    assert (report.triggered, report.reason, report.boundary, report.would_save_tokens) == (True, "budget", None, 30)


def test_shadow_resolution():
    settings = early_exit.resolve(EarlyExitRequest(shadow=True), defaults(enabled=False))
    assert settings.shadow and settings.rule == "probe"
    with pytest.raises(Exception, match="shadow"):
        early_exit.resolve(EarlyExitRequest(shadow=True, enabled=False), defaults())
    assert early_exit.resolve(None, defaults(shadow_rate=1.0)).shadow
    assert not early_exit.resolve(None, defaults(shadow_rate=0.0)).shadow
    assert early_exit.resolve(EarlyExitRequest(enabled=False), defaults(shadow_rate=1.0)) is None
    assert not early_exit.resolve(EarlyExitRequest(shadow=False), defaults(shadow_rate=1.0)).shadow
