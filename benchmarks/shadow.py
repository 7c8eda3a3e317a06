"""`probexit bench shadow`: what early exit would save and change on live traffic, from a server's shadow metrics.

A server run with `--shadow-rate R` (or requests with `early_exit: {"shadow": true}`) thinks to the end on its
shadow requests and counts, per setting (each request's own, and the probe at `SHADOW_THRESHOLDS`), how many it
would have ended early, how many thinking tokens that would have saved, and how many answers the exit would have
changed. This turns those counters into the estimates a user needs before turning early exit on, with 95%
intervals: the saved share of thinking (a ratio of sums; its interval by the delta method over the per-request
sums of squares and products the server exports) and the would-exit and answer-change rates (Wilson intervals).

With `--problems` it first sends the problems in shadow mode itself (the savings benchmark's prompts and seeds),
and with `--savings DIR` it puts the estimates beside what `probexit bench savings` measured with early exit
actually on for the same problems and seeds (its DIR/runs.jsonl).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from probexit.benchmarks.savings import BASELINE, Runner, Setting, cached_runs, served_by
from probexit.probes.equivalence import MathEquivalence
from probexit.probes.rules import REQUEST_SETTING
from probexit.training.problem_files import ProblemRecord

PREFIX = "probexit:shadow_"
Z95 = 1.959964
SHADOW = Setting("shadow", "-", {"shadow": True})


def read_counters(base_url: str, api_key: str | None = None) -> dict:
    """The shadow counters of a server's /metrics: {name: {setting or "": value}}, summed over models."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        text = httpx.get(base_url.rstrip("/") + "/metrics", headers=headers, timeout=30).raise_for_status().text
    except httpx.HTTPError as error:
        raise ValueError(f"cannot read {base_url}/metrics: {error}") from None
    counters: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(PREFIX) and sample.name.endswith("_total"):
                name = sample.name.removeprefix(PREFIX).removesuffix("_total")
                setting = sample.labels.get("setting", "")
                counters.setdefault(name, {})[setting] = counters.get(name, {}).get(setting, 0.0) + sample.value
    return counters


def difference(after: dict, before: dict) -> dict:
    """Counters accumulated between two reads."""
    return {
        name: {key: value - before.get(name, {}).get(key, 0.0) for key, value in values.items()}
        for name, values in after.items()
    }


def estimates(counters: dict) -> dict:
    """Per setting: would-exit rate, saved share of thinking and answer-change rate, each with a 95% interval."""
    n = counters.get("requests", {}).get("", 0.0)
    thinking = counters.get("thinking_tokens", {}).get("", 0.0)
    thinking_sq = counters.get("thinking_tokens_squared", {}).get("", 0.0)
    result = {"shadow_requests": int(n), "thinking_tokens": int(thinking), "settings": {}}
    if n < 1 or thinking <= 0:
        return result
    for setting in sorted(counters.get("would_exit", {})):
        value = defaultdict(float, {name: by_setting.get(setting, 0.0) for name, by_setting in counters.items()})
        saved = value["saved_tokens"]
        share = saved / thinking
        result["settings"][setting] = {
            "would_exit_rate": _rate(value["would_exit"], n),
            "saved_share_pct": {
                "value": 100 * share,
                "ci95": [
                    100 * bound
                    for bound in _ratio_interval(
                        n, saved, thinking, value["saved_tokens_squared"], thinking_sq, value["saved_thinking_product"]
                    )
                ],
            },
            "answer_change_rate_pct": _rate(value["answer_changed"], n),
        }
    return result


def _rate(count: float, n: float) -> dict:
    """A share in percent with its Wilson 95% interval."""
    p = count / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return {
        "value": 100 * p,
        "ci95": [100 * max(0.0, centre - half), 100 * min(1.0, centre + half)],
        "count": int(count),
    }


def _ratio_interval(n: float, s: float, t: float, ss: float, tt: float, st: float) -> list[float]:
    """95% interval of sum(s)/sum(t) over n requests, by the delta method on per-request sums."""
    ratio, mean_t = s / t, t / n
    variance = (ss - 2 * ratio * st + ratio * ratio * tt) / n  # mean of (s_i - R t_i)^2
    half = Z95 * math.sqrt(max(variance, 0.0) / n) / mean_t
    return [max(0.0, ratio - half), min(1.0, ratio + half)]


async def send_shadow(
    base_url: str, api_key: str, problems: list[ProblemRecord], sampling: dict, concurrency: int
) -> list[dict]:
    """The problems through the server in shadow mode, with the savings benchmark's prompts and seeds."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key, max_retries=2, timeout=600)
    model = (await client.models.list()).data[0].id
    return await Runner(client, model, problems, sampling, concurrency).run(SHADOW)


async def served(base_url: str, api_key: str) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key, max_retries=2, timeout=60)
    return served_by((await client.models.list()).data[0])


def measured_with_early_exit(savings_dir: Path, sampling: dict, problems: list[ProblemRecord], served: dict) -> dict:
    """What `probexit bench savings` measured with early exit on (its runs.jsonl), per probe threshold: the saved
    share of thinking and the share of problems whose answer differs from the run without early exit."""
    runs = cached_runs(savings_dir / "runs.jsonl", sampling, problems, served)
    if BASELINE.key not in runs:
        raise ValueError(
            f"{savings_dir}/runs.jsonl has no baseline run of these problems, settings, model and "
            "probe: run `probexit bench savings` with the same --problems and sampling first"
        )
    baseline = runs[BASELINE.key]
    equivalence, measured = MathEquivalence(), {}
    thinking = sum(r["reasoning_tokens"] for r in baseline)
    for key, results in runs.items():
        name, _, param = key.partition(":")
        if name != "probe" or not (param.startswith("threshold=") or param == "default"):
            continue
        # the shadow requests ask for nothing but shadow mode: their own setting is the server's default
        param = REQUEST_SETTING if param == "default" else param
        changed = sum(
            not (a["answer"] and b["answer"] and equivalence.same(a["answer"], b["answer"]))
            for a, b in zip(results, baseline)
        )
        measured[param] = {
            "saved_share_pct": 100 * (1 - sum(r["reasoning_tokens"] for r in results) / thinking),
            "answer_change_rate_pct": 100 * changed / len(results),
        }
    return measured


def side_by_side(estimated: dict, measured: dict) -> list[dict]:
    rows = []
    for setting, actual in sorted(measured.items()):
        shadow = estimated["settings"].get(setting)
        if shadow is None:
            continue
        rows.append(
            {
                "setting": setting,
                "saved_share_pct": {
                    "shadow": shadow["saved_share_pct"]["value"],
                    "shadow_ci95": shadow["saved_share_pct"]["ci95"],
                    "early_exit_on": actual["saved_share_pct"],
                },
                "answer_change_rate_pct": {
                    "shadow": shadow["answer_change_rate_pct"]["value"],
                    "shadow_ci95": shadow["answer_change_rate_pct"]["ci95"],
                    "early_exit_on": actual["answer_change_rate_pct"],
                },
            }
        )
    return rows


def summary_lines(report: dict) -> list[str]:
    lines = [
        f"{report['estimates']['shadow_requests']} shadow requests; per setting: would exit, saved share of "
        "thinking, answer changed (95% intervals)"
    ]
    for setting, row in report["estimates"]["settings"].items():
        lines.append(
            f"  {setting:16s} "
            + "  ".join(
                f"{row[key]['value']:5.1f}% [{row[key]['ci95'][0]:.1f}, {row[key]['ci95'][1]:.1f}]"
                for key in ("would_exit_rate", "saved_share_pct", "answer_change_rate_pct")
            )
        )
    for row in report.get("compared_with_early_exit_on", []):
        lines.append(
            f"  {row['setting']:16s} saved {row['saved_share_pct']['shadow']:.1f}% (shadow) vs "
            f"{row['saved_share_pct']['early_exit_on']:.1f}% (on); answers changed "
            f"{row['answer_change_rate_pct']['shadow']:.1f}% vs {row['answer_change_rate_pct']['early_exit_on']:.1f}%"
        )
    return lines


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "shadow.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
