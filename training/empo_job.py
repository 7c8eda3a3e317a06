"""`probexit train empo`: evaluate the base policy, train it with EMPO, evaluate again, and train and
evaluate a supervised GRPO baseline with the same settings; write DIR/metrics.json.

Layout of DIR: `checkpoints/` (EMPO's, a rerun resumes from the last), `policy/` (the EMPO-tuned model,
loadable by vLLM), `train_log.json`, `eval/{before,after,supervised_grpo}.json` (cached: a rerun with the
same policy and settings reuses them), `supervised/` (the baseline's checkpoints, policy and log) and
`metrics.json`. EMPO reads only the questions of the problem file; the baseline is the one place that
reads gold answers, and only when every problem has one.
"""

from __future__ import annotations

import gc
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from transformers import TrainerCallback

from probexit.probes.equivalence import Equivalence, make_equivalence
from probexit.probes.fingerprint import json_digest
from probexit.training.empo import (
    EMPOConfig,
    RewardStats,
    TrainingCollapsed,
    collapse_reason,
    gold_reward,
    semantic_cluster_reward,
)
from probexit.training.empo_eval import EvalConfig, evaluate_policy
from probexit.training.grpo import TrainedPolicy, is_main_process, prompt_dataset, train_grpo, wait_for_everyone
from probexit.training.problem_files import ProblemRecord

# Settings a rerun may change and still continue the same run.
RESUMABLE = (
    "steps",
    "save_steps",
    "logging_steps",
    "collapse_window",
    "collapse_min_format_valid",
    "collapse_min_answer_diversity",
    "use_vllm",
    "vllm_gpu_memory_utilization",
    "gradient_checkpointing",
)


@dataclass
class EMPOJob:
    """One `probexit train empo` run; `run()` returns the metrics it writes."""

    model_dir: Path
    problems: list[ProblemRecord]
    out: Path
    config: EMPOConfig = EMPOConfig()
    eval_problems: list[ProblemRecord] | None = None
    eval_config: EvalConfig = EvalConfig()
    engine_kwargs: dict | None = None
    supervised_baseline: bool = True
    judge_api_key: str = "EMPTY"
    log: Callable[[str], None] = print

    def run(self) -> dict:
        started = time.monotonic()
        try:
            return self._run(started)
        finally:  # also when interrupted: a resumed job's wall_s then covers every piece of it
            if is_main_process():
                self._elapsed_file().write_text(
                    json.dumps({"seconds": self._earlier_seconds() + time.monotonic() - started}) + "\n"
                )

    def _elapsed_file(self) -> Path:
        return self.out / "elapsed.json"

    def _earlier_seconds(self) -> float:
        path = self._elapsed_file()
        return float(json.loads(path.read_text())["seconds"]) if path.is_file() else 0.0

    def _run(self, started: float) -> dict:
        # TRL 1.16 warns on import that it was tested up to vLLM 0.31; the offline engine here is 0.32.
        warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
        self.out.mkdir(parents=True, exist_ok=True)
        self._check_same_run()
        equivalence = make_equivalence(
            self.config.equivalence, self.config.judge_url, self.config.judge_model, self.judge_api_key
        )
        before = self.evaluate("before", self.model_dir, equivalence)
        empo = self.train_empo(equivalence)
        after = self.evaluate("after", empo.policy_dir, equivalence, empo.steps)
        supervised, status = None, self._supervised_status()
        if status == "trained":
            supervised = self.train_supervised(equivalence)
        baseline = (
            self.evaluate("supervised_grpo", supervised.policy_dir, equivalence, supervised.steps)
            if supervised
            else None
        )
        metrics = summary(before, after, baseline, empo, supervised, status)
        this_run = time.monotonic() - started
        metrics.update(
            wall_s=round(self._earlier_seconds() + this_run, 1),
            wall_s_this_run=round(this_run, 1),
            model=str(self.model_dir),
            n_train_problems=len(self.problems),
            config=asdict(self.config),
            eval_config=asdict(self.eval_config) if self.eval_problems else None,
        )
        if is_main_process():
            (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics

    # -- training ----------------------------------------------------------------------------------------
    def train_empo(self, equivalence: Equivalence) -> TrainedPolicy:
        questions = [problem.question for problem in self.problems]  # all EMPO ever reads of the file
        stats = RewardStats()
        reward = partial(
            semantic_cluster_reward,
            num_generations=self.config.num_generations,
            equivalence=equivalence,
            think_end=self.config.think_end,
            min_entropy_ratio=self.config.min_entropy_ratio,
            max_entropy_ratio=self.config.max_entropy_ratio,
            stats=stats,
        )
        guard = CollapseGuard(stats, self.config)
        trained = train_grpo(
            self.model_dir, prompt_dataset(questions), reward, self.out, self.config, [guard], self.log
        )
        if guard.reason is not None:
            if is_main_process():
                (self.out / "collapse.json").write_text(json.dumps({"step": guard.step, "reason": guard.reason}) + "\n")
            raise TrainingCollapsed(
                f"EMPO stopped at step {guard.step}: {guard.reason} (checkpoints in "
                f"{self.out / 'checkpoints'}; try a lower learning rate or a stricter entropy filter)"
            )
        return trained

    def train_supervised(self, equivalence: Equivalence) -> TrainedPolicy:
        self.log("supervised GRPO baseline: the same settings, rewarded by the gold answers")
        dataset = prompt_dataset([p.question for p in self.problems], answers=[p.answer for p in self.problems])
        reward = partial(gold_reward, equivalence=equivalence, think_end=self.config.think_end)
        return train_grpo(self.model_dir, dataset, reward, self.out / "supervised", self.config, [], self.log)

    def _supervised_status(self) -> str:
        if not self.supervised_baseline:
            return "skipped: --no-supervised-baseline"
        if any(problem.answer is None for problem in self.problems):
            return "skipped: the problem file has no gold answers"
        return "trained"

    def _check_same_run(self) -> None:
        """A rerun continues the run in DIR; one with other training settings would mix two runs."""
        path = self.out / "run_config.json"
        settings = {k: v for k, v in asdict(self.config).items() if k not in RESUMABLE}
        settings["model"] = str(self.model_dir)
        if path.exists():
            previous = json.loads(path.read_text())
            changed = sorted(k for k in settings.keys() | previous.keys() if settings.get(k) != previous.get(k))
            if changed:
                raise ValueError(
                    f"{self.out} holds a run with other settings ({', '.join(changed)} differ); "
                    "use a new --out, or the same settings to resume"
                )
        elif is_main_process():
            path.write_text(json.dumps(settings, indent=2) + "\n")

    # -- evaluation --------------------------------------------------------------------------------------
    def evaluate(self, name: str, model_dir: Path, equivalence: Equivalence, steps: int = 0) -> dict | None:
        """The policy's scorecard through the vLLM engine (main process only), cached in DIR/eval/."""
        if not self.eval_problems:
            return None
        key = {
            "model": str(model_dir),
            "steps": steps,
            "config": asdict(self.eval_config),
            "problems": json_digest([(p.question, p.answer) for p in self.eval_problems]),
            "equivalence": self.config.equivalence,
        }
        path = self.out / "eval" / f"{name}.json"
        if path.exists() and json.loads(path.read_text()).get("key") == key:
            self.log(f"evaluation {name}: cached in {path}")
            return json.loads(path.read_text())["card"]
        card = None
        if is_main_process():
            from probexit.engine.offline import OfflineEngine

            self.log(
                f"evaluation {name}: {model_dir} on {min(len(self.eval_problems), self.eval_config.limit or 10**9)} "
                "held-out problems"
            )
            _release_memory()
            with OfflineEngine(model_dir, seed=self.eval_config.seed, **(self.engine_kwargs or {})) as engine:
                card = evaluate_policy(engine, self.eval_problems, equivalence, self.eval_config)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "card": card}, indent=2) + "\n")
        wait_for_everyone()
        return card if card is not None else json.loads(path.read_text())["card"]


class CollapseGuard(TrainerCallback):
    """Stops training when the EMPO reward's running statistics say the policy collapsed."""

    def __init__(self, stats: RewardStats, config: EMPOConfig):
        self.stats, self.config = stats, config
        self.reason: str | None = None
        self.step: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        reason = collapse_reason(self.stats.window(self.config.collapse_window), self.config)
        if reason is not None:
            self.reason, self.step = reason, state.global_step
            control.should_training_stop = True
        return control


def summary(
    before: dict | None,
    after: dict | None,
    baseline: dict | None,
    empo: TrainedPolicy,
    supervised: TrainedPolicy | None,
    supervised_status: str,
) -> dict:
    """metrics.json: the headline fields first (what the docs and the command's summary quote), then the
    detail behind them."""
    get = lambda card, key: None if card is None else card[key]  # noqa: E731
    metrics = {
        "accuracy_before": get(before, "accuracy_greedy"),
        "accuracy_after": get(after, "accuracy_greedy"),
        "accuracy_supervised_grpo": get(baseline, "accuracy_greedy"),
        "accuracy_sampled_before": get(before, "accuracy_sampled"),
        "accuracy_sampled_after": get(after, "accuracy_sampled"),
        "accuracy_sampled_supervised_grpo": get(baseline, "accuracy_sampled"),
        "entropy_before": get(before, "semantic_entropy"),
        "entropy_after": get(after, "semantic_entropy"),
        "format_valid_after": get(after, "format_valid"),
        "steps": empo.steps,
        "supervised_grpo": supervised_status,
        "gain_vs_supervised": _gain_ratio(before, after, baseline, "accuracy_greedy"),
        "gain_vs_supervised_sampled": _gain_ratio(before, after, baseline, "accuracy_sampled"),
        "warnings": after_training_warnings(before, after),
        "evaluation": {"before": before, "after": after, "supervised_grpo": baseline}
        if before
        else "skipped: no --eval-problems",
        "training": {"empo": asdict(empo), "supervised_grpo": asdict(supervised) if supervised else None},
    }
    return json.loads(json.dumps(metrics, default=str))


def after_training_warnings(before: dict | None, after: dict | None) -> list[str]:
    """The collapse signs only gold answers reveal, read from the scorecards once training is over.

    >>> after_training_warnings({"semantic_entropy": 1.2, "accuracy_sampled": 0.3, "format_valid": 1.0},
    ...                         {"semantic_entropy": 0.9, "accuracy_sampled": 0.15, "format_valid": 1.0})
    ... # doctest: +NORMALIZE_WHITESPACE
    ['entropy fell (1.20 -> 0.90) while sampled accuracy fell (30.0% -> 15.0%): EMPO reinforced wrong
      consensus answers']
    """
    if not before or not after:
        return []
    found = []
    accuracy = before["accuracy_sampled"], after["accuracy_sampled"]
    if after["semantic_entropy"] < before["semantic_entropy"] and None not in accuracy and accuracy[1] < accuracy[0]:
        found.append(
            f"entropy fell ({before['semantic_entropy']:.2f} -> {after['semantic_entropy']:.2f}) while sampled "
            f"accuracy fell ({accuracy[0]:.1%} -> {accuracy[1]:.1%}): EMPO reinforced wrong consensus answers"
        )
    if after["format_valid"] < before["format_valid"] - 0.1:
        found.append(f"format validity fell ({before['format_valid']:.1%} -> {after['format_valid']:.1%})")
    return found


def _gain_ratio(before: dict | None, after: dict | None, baseline: dict | None, key: str) -> float | None:
    """EMPO's gain in the scorecards' `key` (greedy or sampled accuracy) as a share of the supervised
    baseline's (None when undefined)."""
    values = [card and card.get(key) for card in (before, after, baseline)]
    if any(v is None for v in values) or values[2] == values[0]:
        return None
    return (values[1] - values[0]) / (values[2] - values[0])


def _release_memory() -> None:
    """Free what training held before an engine starts (GPU memory above all)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
