"""What early exit costs inside the engine: the same prompts and seeds with early exit enabled but never firing
(probe rule, threshold 1.01) against early exit disabled, on one offline vLLM engine, in one run.

Three numbers: the median and p99 of the early-exit work per decode step (what the logits processor
times around the runtime: boundary tracking, the probe on the boundary rows, the decisions), that work's share
of the enabled runs' time (precise, but blind to costs outside the timed call), and the ratio of output tokens
per second, enabled-never-firing over disabled (everything counted, but as noisy as the machine). Rounds
alternate their order (enabled first, then disabled first) so that a slow spell of a shared machine does not
land on one side; the ratio is taken over the totals. A never-firing probe must not change a single token: the
run checks that too.

    probexit bench engine-overhead --out DIR   # the embedded default; DIR/engine_overhead.json
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from probexit.benchmarks import display_path
from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P


def run_engine_overhead(
    model: Path,
    probe: Path,
    questions: list[str],
    out: Path,
    *,
    rounds: int = 3,
    max_tokens: int = 256,
    seed: int = 0,
    engine_kwargs: dict | None = None,
) -> dict:
    from probexit.engine.offline import OfflineEngine
    from probexit.probes.rules import NEVER, ExitSettings

    step_seconds: list[float] = []
    never = ExitSettings(rule="probe", threshold=NEVER)
    totals = {"enabled_never_firing": [0, 0.0], "disabled": [0, 0.0]}  # tokens, seconds
    identical = True
    round_ratios = []  # each round's own ratio: how far one short round can stray on a shared machine
    with OfflineEngine(model, probe, on_step=step_seconds.append, **(engine_kwargs or {})) as engine:
        prompts = engine.chat_prompts(questions)
        sample = dict(temperature=EVAL_TEMPERATURE, top_p=EVAL_TOP_P, max_tokens=max_tokens, seed=seed, progress=False)
        engine.generate(prompts[:8], **sample)  # warm-up, not timed
        for index in range(rounds):
            order = ("enabled_never_firing", "disabled") if index % 2 == 0 else ("disabled", "enabled_never_firing")
            outputs, rates = {}, {}
            for mode in order:
                started = time.perf_counter()
                outputs[mode] = engine.generate(prompts, settings=never if mode != "disabled" else None, **sample)
                seconds, tokens = time.perf_counter() - started, sum(len(g.token_ids) for g in outputs[mode])
                totals[mode][0] += tokens
                totals[mode][1] += seconds
                rates[mode] = tokens / seconds
            round_ratios.append(rates["enabled_never_firing"] / rates["disabled"])
            identical &= all(
                a.token_ids == b.token_ids for a, b in zip(outputs["enabled_never_firing"], outputs["disabled"])
            )
        time.sleep(1.0)  # the workers flush their last step timings at most a second late
    tokens_per_s = {mode: tokens / seconds for mode, (tokens, seconds) in totals.items()}
    micro = sorted(1e6 * s for s in step_seconds)
    report = {
        "model": display_path(model),
        "probe": display_path(probe),
        "prompts": len(questions),
        "rounds": rounds,
        "max_tokens": max_tokens,
        "seed": seed,
        "tokens_per_s": tokens_per_s,
        "ratio_enabled_over_disabled": tokens_per_s["enabled_never_firing"] / tokens_per_s["disabled"],
        "slowdown_pct": 100 * (1 - tokens_per_s["enabled_never_firing"] / tokens_per_s["disabled"]),
        "token_identical": identical,
        "round_ratios": {
            "min": min(round_ratios),
            "median": statistics.median(round_ratios),
            "max": max(round_ratios),
            # the noise to read the ratio against: the round ratios' standard error of the mean
            "sem": statistics.stdev(round_ratios) / len(round_ratios) ** 0.5 if len(round_ratios) > 1 else None,
            "all": [round(r, 4) for r in round_ratios],
        },
        "step_work_share_pct": 100 * sum(step_seconds) / totals["enabled_never_firing"][1],
        "probe_step_us": {
            "steps": len(micro),
            "median": statistics.median(micro) if micro else None,
            "p99": micro[int(0.99 * (len(micro) - 1))] if micro else None,
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "engine_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_lines(report: dict) -> list[str]:
    step = report["probe_step_us"]
    work = (
        f"early-exit work per step: median {step['median']:.0f} us, p99 {step['p99']:.0f} us over "
        f"{step['steps']} steps, {report['step_work_share_pct']:.2f}% of the enabled runs' time"
        if step["steps"]
        else "no step timings arrived from the engine's workers"
    )
    sem = report["round_ratios"]["sem"]
    noise = f", round ratios' standard error {100 * sem:.1f} points" if sem is not None else ""
    return [
        f"early exit never firing vs disabled: {report['ratio_enabled_over_disabled']:.3f}x tokens/s "
        f"({report['slowdown_pct']:+.1f}% slower{noise}), token-identical: {report['token_identical']}; {work}"
    ]
