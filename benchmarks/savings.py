"""`probexit bench savings`: accuracy against thinking tokens, the probe against every peer and the oracle.

Every policy runs live on the same server, the same problems and the same seeds, through the official
`openai` client: `none` (no early exit), `probe` (thresholds, certified risk levels, and the server's
default: a request that sends no `early_exit` object at all, what a user gets without asking), `budget` (a
thinking-token budget), `consistency` (the last k intermediate answers agree: Dynasor's certainty rule
in text form), `confidence` (the chunk's lowest token probability: DEER's confidence family without its
trial generation), `first` (the first intermediate answer) and `oracle` (the first right intermediate
answer, given the gold one: the upper bound). With the same seed a request's tokens are the same under
every policy up to the point where that policy ends the thinking, so the curves differ only by where
each rule stops. Each row also counts, problem by problem against `none`, the answers early exit turned
from right into wrong (harm, the risk `max_risk` bounds) and from wrong into right. Runs are appended to
DIR/runs.jsonl as they finish; a rerun skips finished ones, but only those of the same problems,
sampling, and served model and probe (the fingerprints in /v1/models).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import beta
from tqdm import tqdm

from probexit.probes.answers import final_answer
from probexit.probes.equivalence import MathEquivalence
from probexit.probes.fingerprint import json_digest
from probexit.training.problem_files import ProblemRecord

PROBE_THRESHOLDS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
PROBE_RISKS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
CONSISTENCY_KS = (2, 3, 4)
CONFIDENCE_THRESHOLDS = (0.2, 0.4, 0.6, 0.8, 0.9)
BUDGET_FRACTIONS = (0.2, 0.35, 0.5, 0.65, 0.8)  # of the baseline's mean reasoning tokens
NO_LOSS_POINTS = 1.0


@dataclass(frozen=True)
class Setting:
    name: str  # the policy family
    param: str  # the swept value, as text
    early_exit: dict | None  # the request's early_exit object (None: none is sent; the oracle's is per problem)

    @property
    def key(self) -> str:
        return f"{self.name}:{self.param}"


def peer_settings(baseline_reasoning_tokens: float) -> list[Setting]:
    settings = [DEFAULT]
    settings += [Setting("probe", f"threshold={t}", {"rule": "probe", "threshold": t}) for t in PROBE_THRESHOLDS]
    settings += [Setting("probe", f"max_risk={r}", {"rule": "probe", "max_risk": r}) for r in PROBE_RISKS]
    budgets = sorted({max(1, int(f * baseline_reasoning_tokens)) for f in BUDGET_FRACTIONS})
    settings += [Setting("budget", f"tokens={b}", {"rule": "budget", "budget": b}) for b in budgets]
    settings += [Setting("consistency", f"k={k}", {"rule": "consistency", "k": k}) for k in CONSISTENCY_KS]
    settings += [
        Setting("confidence", f"min_prob={c}", {"rule": "confidence", "threshold": c}) for c in CONFIDENCE_THRESHOLDS
    ]
    settings += [Setting("first", "-", {"rule": "first"}), ORACLE]
    return settings


BASELINE = Setting("none", "-", {"enabled": False})
COMPARED = "compared_probe"  # the rows of a second probe, run on its own server over the same problems and seeds
DEFAULT = Setting("probe", "default", None)  # the server's own setting: the request says nothing about early exit
ORACLE = Setting("oracle", "-", None)  # exits at the first boundary whose answer, as the server reads it, is gold


class Runner:
    """Sends one setting's requests with bounded concurrency and grades the answers."""

    def __init__(self, client, model: str, problems: list[ProblemRecord], sampling: dict, concurrency: int):
        self.client, self.model, self.problems = client, model, problems
        self.sampling, self.concurrency = sampling, concurrency
        self.equivalence = MathEquivalence()

    async def run(self, setting: Setting) -> list[dict]:
        semaphore = asyncio.Semaphore(self.concurrency)
        progress = tqdm(total=len(self.problems), desc=setting.key, unit="req", leave=False)

        async def one(index: int) -> dict:
            async with semaphore:
                result = await self.request(index, setting)
                progress.update()
                return result

        try:
            return await asyncio.gather(*(one(i) for i in range(len(self.problems))))
        finally:
            progress.close()

    async def request(self, index: int, setting: Setting) -> dict:
        problem = self.problems[index]
        early_exit = {"rule": "oracle", "answer": problem.answer} if setting.name == "oracle" else setting.early_exit
        started = time.monotonic()
        response = await self.client.chat.completions.create(
            model=self.model,
            messages=[{"role": "user", "content": problem.question}],
            seed=self.sampling["seed"] + index,
            temperature=self.sampling["temperature"],
            top_p=self.sampling["top_p"],
            max_tokens=self.sampling["max_tokens"],
            extra_body=None if early_exit is None else {"early_exit": early_exit},
        )
        wall = time.monotonic() - started
        choice = response.choices[0]
        report = (choice.model_extra or {}).get("early_exit") or {}
        answer = final_answer(choice.message.content or "")
        return {
            "problem": index,
            "correct": bool(answer) and self.equivalence.same(answer, problem.answer),
            "answer": answer,
            "reasoning_tokens": int(report.get("reasoning_tokens", 0)),
            "completion_tokens": response.usage.completion_tokens,
            "triggered": bool(report.get("triggered")),
            "wall_s": wall,
        }


def summarize(setting: Setting, results: list[dict], baseline: dict | None, seed: int = 0) -> dict:
    correct = np.array([r["correct"] for r in results], dtype=float)
    reasoning = float(np.mean([r["reasoning_tokens"] for r in results]))
    completion = float(np.mean([r["completion_tokens"] for r in results]))
    row = {
        "name": setting.name,
        "param": setting.param,
        "accuracy": float(correct.mean()),
        "accuracy_ci": bootstrap_ci(correct, seed),
        "mean_reasoning_tokens": reasoning,
        "mean_completion_tokens": completion,
        "wall_s": float(np.mean([r["wall_s"] for r in results])),
        "exits": int(sum(r["triggered"] for r in results)),
        "n": len(results),
    }
    if setting.early_exit and "max_risk" in setting.early_exit:
        row["max_risk"] = setting.early_exit["max_risk"]
    if baseline is not None:
        row["tokens_saved_pct"] = 100.0 * (1 - reasoning / baseline["mean_reasoning_tokens"])
        row["completion_tokens_saved_pct"] = 100.0 * (1 - completion / baseline["mean_completion_tokens"])
        row["accuracy_delta_pts"] = 100.0 * (row["accuracy"] - baseline["accuracy"])
        row["wall_saved_pct"] = 100.0 * (1 - row["wall_s"] / baseline["wall_s"])
    return row


def changed_answers(results: list[dict], baseline_results: list[dict]) -> dict:
    """Problem by problem against the same request without early exit: the answers turned from right into wrong
    (harm) and from wrong into right, as counts, shares of all problems and exact 95% intervals."""
    before = {r["problem"]: r["correct"] for r in baseline_results}
    harms = sum(before[r["problem"]] and not r["correct"] for r in results)
    helps = sum(r["correct"] and not before[r["problem"]] for r in results)
    n = len(results)
    return {
        "harms": harms,
        "harm_rate": harms / n,
        "harm_ci": clopper_pearson(harms, n),
        "helps": helps,
        "help_rate": helps / n,
        "help_ci": clopper_pearson(helps, n),
    }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> list[float]:
    """The exact binomial interval for k successes in n (it stays honest at k = 0, where a bootstrap gives [0, 0]).

    >>> [round(x, 4) for x in clopper_pearson(0, 300)]
    [0.0, 0.0122]
    """
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - tail, k + 1, n - k))
    return [low, high]


def bootstrap_ci(correct: np.ndarray, seed: int, reps: int = 2000) -> list[float]:
    rng = np.random.default_rng(seed)
    means = rng.choice(correct, size=(reps, len(correct)), replace=True).mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def best_at_no_loss(rows: list[dict], baseline: dict, family: str = "probe") -> dict | None:
    """The probe setting (of `family`) with the largest saving whose accuracy falls by at most one point."""
    # the tolerance: a change of exactly one point, computed in floating point, must count as one point
    eligible = [r for r in rows if r["name"] == family and r["accuracy_delta_pts"] >= -NO_LOSS_POINTS - 1e-9]
    return max(eligible, key=lambda r: r["tokens_saved_pct"], default=None)


def dominance(rows: list[dict], baseline: dict) -> dict:
    """For each peer point, whether the probe's curve (with the baseline as its last point) reaches at least
    the peer's accuracy at the peer's token level, interpolating linearly between probe points."""
    probe = sorted(
        [(r["mean_reasoning_tokens"], r["accuracy"]) for r in rows if r["name"] == "probe"]
        + [(baseline["mean_reasoning_tokens"], baseline["accuracy"])]
    )
    xs, ys = [p[0] for p in probe], [p[1] for p in probe]
    # The curve's upper envelope: at a token level, the best accuracy of any probe setting using no more.
    envelope = np.maximum.accumulate(ys)
    verdict = {}
    for family in ("budget", "consistency", "confidence", "first"):
        points = [(r["mean_reasoning_tokens"], r["accuracy"], r["param"]) for r in rows if r["name"] == family]
        checks = []
        for tokens, accuracy, param in points:
            # below the probe's cheapest setting a point is not comparable on this sweep
            probe_accuracy = None if tokens < xs[0] else float(np.interp(tokens, xs, envelope))
            checks.append(
                {
                    "param": param,
                    "tokens": tokens,
                    "accuracy": accuracy,
                    "probe_accuracy": probe_accuracy,
                    "probe_at_least_as_good": None if probe_accuracy is None else probe_accuracy >= accuracy - 1e-9,
                }
            )
        verdict[family] = {
            "points": checks,
            "probe_above_everywhere": all(c["probe_at_least_as_good"] is not False for c in checks),
        }
    return verdict


def pareto_plot(rows: list[dict], baseline: dict, oracle: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    styles = {
        "probe": ("tab:red", "o-"),
        "budget": ("tab:grey", "s--"),
        "consistency": ("tab:blue", "^--"),
        "confidence": ("tab:green", "v--"),
        "first": ("tab:purple", "P"),
        COMPARED: ("tab:orange", "o-"),
    }
    for family, (colour, style) in styles.items():
        points = sorted((r["mean_reasoning_tokens"], r["accuracy"]) for r in rows if r["name"] == family)
        if points:
            axes.plot(*zip(*points), style, color=colour, label=family, markersize=6, linewidth=1.5)
    default = next((r for r in rows if (r["name"], r["param"]) == (DEFAULT.name, DEFAULT.param)), None)
    if default is not None:
        axes.plot(
            default["mean_reasoning_tokens"],
            default["accuracy"],
            "o",
            color="tab:red",
            markersize=13,
            markerfacecolor="none",
            markeredgewidth=2,
            label="probe: the server's default",
        )
    axes.plot(baseline["mean_reasoning_tokens"], baseline["accuracy"], "k*", markersize=14, label="no early exit")
    axes.plot(
        oracle["mean_reasoning_tokens"],
        oracle["accuracy"],
        "D",
        color="gold",
        markeredgecolor="black",
        markersize=10,
        label="oracle",
    )
    axes.set_xlabel("mean reasoning tokens per problem")
    axes.set_ylabel("accuracy")
    axes.set_title("Accuracy against thinking tokens (up and left is better)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_report(runs: dict[str, tuple[Setting, list[dict]]], sampling: dict, problems_file: str) -> dict:
    baseline_results = runs[BASELINE.key][1]
    baseline = summarize(BASELINE, baseline_results, None, sampling["seed"])
    rows = [
        summarize(setting, results, baseline, sampling["seed"]) | changed_answers(results, baseline_results)
        for key, (setting, results) in runs.items()
        if key != BASELINE.key
    ]
    oracle = next((r for r in rows if r["name"] == "oracle"), None)
    if oracle is None:
        raise ValueError("the oracle run is missing: the report needs it as the upper bound")
    policies = [r for r in rows if r["name"] != "oracle"]
    best = best_at_no_loss(policies, baseline)
    share = (
        None if not best or oracle["tokens_saved_pct"] <= 0 else best["tokens_saved_pct"] / oracle["tokens_saved_pct"]
    )
    return {
        "problems": problems_file,
        "n_problems": baseline["n"],
        "sampling": sampling,
        "baseline": baseline,
        "policies": policies,
        "oracle": oracle,
        "best_at_no_loss": best,
        "best_share_of_oracle_saving": share,
        "dominance": dominance(policies, baseline),
    }


def served_by(card) -> dict:
    """What a /v1/models entry says is served: its name and probexit's fingerprints of the weights and probe, or
    its root (a hub id) when the weights have none; a local folder's path says nothing a fingerprint does not."""
    fingerprints = getattr(card, "probexit", None) or {}
    if fingerprints.get("model_fingerprint"):
        return {"id": card.id, **fingerprints}
    return {"id": card.id, "root": getattr(card, "root", None), **fingerprints}


def cached_runs(
    log: Path, sampling: dict, problems: list[ProblemRecord], served: dict, prefix: str = ""
) -> dict[str, list[dict]]:
    """The finished runs of `log` made with these sampling settings, problems and served model and probe.
    Runs of anything else (or of an older format that did not record it) are not reused: they would
    silently describe another model."""
    done, skipped = {}, 0
    if not log.exists():
        return done
    digest = _problems_digest(problems)
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["key"].startswith(COMPARED + ":") != bool(prefix):
            continue  # the other server's runs
        if (
            record.get("sampling") == sampling
            and record.get("n") == len(problems)
            and record.get("problems") == digest
            and record.get("served") == served
        ):
            done[record["key"]] = record["results"]
        else:
            skipped += 1
    if skipped:
        print(f"{log}: {skipped} earlier runs came from other problems, settings, model or probe; not reused")
    return done


def _problems_digest(problems: list[ProblemRecord]) -> str:
    return json_digest([[p.question, p.answer] for p in problems])


async def run_benchmark(
    base_url: str,
    api_key: str,
    problems: list[ProblemRecord],
    out: Path,
    sampling: dict,
    concurrency: int,
    problems_file: str,
    settings: list[Setting] | None = None,
) -> dict:
    """Run the baseline and every setting (default: the full sweep), write report.json and pareto.png."""
    out.mkdir(parents=True, exist_ok=True)
    unavailable: dict[str, str] = {}
    ensure = await _run_cache(base_url, api_key, problems, out, sampling, concurrency, unavailable)
    baseline_results = await ensure(BASELINE)
    if baseline_results is None:
        raise ValueError(f"the server refused the baseline (no early exit): {unavailable[BASELINE.key]}")
    runs = {BASELINE.key: (BASELINE, baseline_results)}
    base_reasoning = float(np.mean([r["reasoning_tokens"] for r in baseline_results]))
    for setting in tqdm(settings or peer_settings(base_reasoning), desc="policies", unit="setting"):
        results = await ensure(setting)
        if results is not None:
            runs[setting.key] = (setting, results)
    report = build_report(runs, sampling, problems_file)
    report["unavailable"] = unavailable
    _write(report, out)
    return report


async def add_compared_probe(
    base_url: str,
    api_key: str,
    problems: list[ProblemRecord],
    out: Path,
    sampling: dict,
    concurrency: int,
    report: dict,
    settings: list[Setting] | None = None,
) -> dict:
    """Run another probe's default and sweep on a server that serves it (same model, problems and seeds) and add
    them to `report` as the rows named COMPARED, each against the same baseline, with that probe's best setting
    within a point of it; rewrites report.json and pareto.png."""
    unavailable = report.setdefault("unavailable", {})
    ensure = await _run_cache(base_url, api_key, problems, out, sampling, concurrency, unavailable, COMPARED)
    baseline_results = await ensure(BASELINE)
    if baseline_results is None:
        raise ValueError(f"the compared server refused the baseline: {unavailable[COMPARED + ':' + BASELINE.key]}")
    baseline = report["baseline"]
    rows = []
    for setting in tqdm(settings or compared_settings(), desc="compared probe", unit="setting"):
        results = await ensure(setting)
        if results is not None:
            rows.append(
                summarize(setting, results, baseline, sampling["seed"]) | changed_answers(results, baseline_results)
            )
    report["policies"] = [r for r in report["policies"] if r["name"] != COMPARED] + rows
    best = best_at_no_loss(rows, baseline, COMPARED)
    oracle_saving = report["oracle"]["tokens_saved_pct"]
    # The oracle again, on the compared server: it can exit only where that server's boundaries and reader see the
    # gold answer, so the saving it loses is what sits beyond that probe's reach whatever the probe learns.
    reader_oracle = await ensure(ORACLE)
    reader_saving = summarize(ORACLE, reader_oracle, baseline)["tokens_saved_pct"] if reader_oracle else None
    report["compared_probe"] = {
        "served": ensure.served,
        "baseline_accuracy": summarize(BASELINE, baseline_results, None)["accuracy"],
        "best_at_no_loss": best,
        "best_share_of_oracle_saving": best["tokens_saved_pct"] / oracle_saving if best and oracle_saving > 0 else None,
        "oracle_tokens_saved_pct": reader_saving,
        "oracle_share_beyond_its_reach": (
            1 - reader_saving / oracle_saving if reader_saving is not None and oracle_saving > 0 else None
        ),
    }
    _write(report, out)
    return report


def compared_settings() -> list[Setting]:
    """The probe's own settings (the server's default, the thresholds, the risk levels) under the COMPARED name."""
    probe = [DEFAULT] + [s for s in peer_settings(1.0) if s.name == "probe" and s != DEFAULT]
    return [Setting(COMPARED, s.param, s.early_exit) for s in probe]


async def _run_cache(base_url, api_key, problems, out, sampling, concurrency, unavailable, prefix: str = ""):
    """A function running a setting on the server at `base_url` once: finished runs of this server's model and probe
    come from DIR/runs.jsonl, new ones are appended to it as they finish. It carries the server's `served`."""
    from openai import APIConnectionError, AsyncOpenAI, BadRequestError

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=2, timeout=600)
    try:
        card = (await client.models.list()).data[0]
    except APIConnectionError:
        raise ValueError(
            f"cannot reach a server at {base_url}; start one with `probexit serve` or drop --server"
        ) from None
    served = served_by(card)
    runner = Runner(client, card.id, problems, sampling, concurrency)
    log = out / "runs.jsonl"
    done = cached_runs(log, sampling, problems, served, prefix)

    async def ensure(setting: Setting) -> list[dict] | None:
        key = f"{prefix}:{setting.key}" if prefix else setting.key
        if key not in done:
            try:
                done[key] = await runner.run(setting)
            except BadRequestError as error:  # e.g. max_risk on a probe without a calibration table
                unavailable[key] = error.message
                return None
            record = {
                "key": key,
                "sampling": sampling,
                "n": len(problems),
                "problems": _problems_digest(problems),
                "served": served,
                "results": done[key],
            }
            with open(log, "a") as handle:  # kept if the run is interrupted later
                handle.write(json.dumps(record) + "\n")
        return done[key]

    ensure.served = served
    return ensure


def _write(report: dict, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    pareto_plot(report["policies"], report["baseline"], report["oracle"], out / "pareto.png")
