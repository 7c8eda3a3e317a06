"""`probexit train advrm`: Adv-RM (arXiv 2504.06141) end to end, resumable stage by stage.

1. sample: the policy answers train and held-out questions through the vLLM engine the server uses; each
   answer is graded (gold reward: right and well formed, `tinyworld.grading`).
2. round k = 0..rounds: train a target reward model and its ensemble on the preference pairs (plus every
   adversarial pair found so far) -> `rounds/k/reward/`; attack it with a fresh adversarial policy (GRPO)
   and measure the attack's success on held-out questions; unless it is the last round, keep the
   adversarial examples of the attack's rollouts, each paired with a right answer to its question.
3. rlhf: GRPO on the policy against round 0's target (standard) and the last round's (Adv-RM), proxy and
   gold reward per step, hacking steps, `rlhf.png`.
4. export: the last round's folder becomes `DIR/reward/` (what `probexit serve --reward-model` loads) and
   `DIR/metrics.json` is written.

Every stage writes its result under `DIR/work/` and is skipped on a rerun; GRPO runs resume from their
checkpoints. A rerun may also extend a finished run: more `--rounds` (until its Adv-RM RLHF run has started,
which read the last round's model) or the RLHF runs a `--no-run-rlhf` run left out, with `--rlhf-*` settings of
its own (until one RLHF run has started; then only more `--rlhf-steps`, which both runs resume to). With
`--preference-bias` the target's pairs carry a spurious feature (`advrm_bias`); the ensemble's and the held-out
pairs do not. The attack's success rates and adversarial examples are defined in `advrm_attack`, the hacking
rule in `advrm_rlhf`.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from probexit.rewards.manifest import read_manifest, write_manifest
from probexit.training import advrm_attack as attack
from probexit.training import advrm_rlhf as rlhf
from probexit.training.advrm_bias import PreferenceBias, bias_statistics, correlation, words
from probexit.training.advrm_rewards import (
    Pair,
    RewardModelSettings,
    Sample,
    backbone_source,
    ensemble_source,
    pair_accuracy,
    preference_pairs,
    train_round,
)
from probexit.training.problem_files import ProblemRecord
from probexit.training.tinyworld.grading import grade

# Below this held-out preference accuracy the target hardly tells right from wrong answers to the same
# question, so attack success and its fall under hardening measure noise (on the EMPO-tuned tiny-world policy
# every reward model tried scored 0.40-0.57; docs/training-advrm.md).
USEFUL_PREFERENCE_ACCURACY = 0.6
# Above this share of sampled answers cut at --max-tokens, the pairs teach the reward model to tell cut answers
# (no final answer: always wrong) from whole ones, which is not what it should learn.
CUT_ANSWERS_WARNING_SHARE = 0.05


@dataclass(frozen=True)
class AdvRMConfig:
    """Settings of a whole Adv-RM run. The defaults take about 20-30 minutes for the tiny world on 2 free
    CPU cores (docs/training-advrm.md says what each stage costs)."""

    train_questions: int = field(
        default=240,
        metadata={"help": "Train questions the policy answers for the preference pairs (the first ones of the file)."},
    )
    eval_questions: int = field(
        default=100,
        metadata={"help": "Held-out questions: preference accuracy, calibration, the floor, and attack evaluation."},
    )
    samples_per_question: int = field(default=4, metadata={"help": "Policy answers per question."})
    temperature: float = field(
        default=1.0,
        metadata={"help": "Sampling temperature of those answers (1.0: the policy's honest mix of right and wrong)."},
    )
    max_tokens: int = field(default=384, metadata={"help": "Longest sampled answer in tokens."})
    pairs_per_question: int = field(default=4, metadata={"help": "At most this many preference pairs per question."})
    rounds: int = field(
        default=2,
        metadata={
            "help": ("Rounds of adversarial training (attacks: rounds + 1, the last one measuring the hardened model).")
        },
    )
    adversarial_repeat: int = field(
        default=2,
        metadata={
            "help": (
                "Each adversarial pair appears this many times in reward training (they are few beside the others)."
            )
        },
    )
    max_adversarial: int = field(
        default=300,
        metadata={"help": "At most this many adversarial examples are kept per round (highest target reward first)."},
    )
    run_rlhf: bool = field(default=True, metadata={"help": "Run the RLHF stability experiment (two GRPO runs)."})
    preference_bias: str = field(
        default="",
        metadata={
            "help": (
                "A spurious feature the target's preference pairs tie to being chosen, KIND[:STRENGTH] "
                "(empty: none): `length` (the pairs drawn so that the chosen answer is the longer one in a "
                "share STRENGTH of them; the policy's own pairs: about half) or `confident` (a confident "
                "phrase written into the chosen answer of a share STRENGTH of the pairs); STRENGTH defaults "
                "to 1. Which answer is chosen (the right one) never changes, and held-out pairs stay unbiased"
                " (`advrm_bias`)."
            )
        },
    )
    bias_ensemble: bool = field(
        default=False,
        metadata={
            "help": (
                "With a preference bias: train the ensemble on the biased pairs too. Off: the members read "
                "the unbiased pairs, standing for reward models built from other data that does not share the"
                " target's flaw (members that learned the flaw agree with the target on its exploits, so z "
                "flags little of what an attack finds)."
            )
        },
    )
    seed: int = 0
    reward_models: RewardModelSettings = field(default_factory=RewardModelSettings)
    attack: attack.AttackSettings = field(default_factory=attack.AttackSettings)
    rlhf: rlhf.RLHFSettings = field(default_factory=rlhf.RLHFSettings)

    def __post_init__(self):
        for name in (
            "train_questions",
            "eval_questions",
            "samples_per_question",
            "max_tokens",
            "pairs_per_question",
            "adversarial_repeat",
            "max_adversarial",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.samples_per_question < 2:
            raise ValueError("samples_per_question must be at least 2: pairs need a right and a wrong answer")
        if self.rounds < 0 or self.temperature <= 0:
            raise ValueError("rounds must not be negative and temperature must be positive")
        bias = self.bias  # parsed here so that a bad value is refused before anything runs
        if self.bias_ensemble and bias is None:
            raise ValueError("bias_ensemble needs a preference_bias (--preference-bias KIND[:STRENGTH])")

    @property
    def bias(self) -> PreferenceBias | None:
        """The parsed `preference_bias` (checked on construction: a bad value is a ValueError)."""
        return PreferenceBias.parse(self.preference_bias)


class AdvRMJob:
    def __init__(
        self,
        policy_dir: Path,
        train_problems: list[ProblemRecord],
        eval_problems: list[ProblemRecord],
        out: Path,
        config: AdvRMConfig = AdvRMConfig(),
        engine_kwargs: dict | None = None,
        log: Callable[[str], None] = print,
    ):
        if any(p.answer is None for p in train_problems + eval_problems):
            raise ValueError("Adv-RM needs gold answers for every problem (they grade the preference pairs)")
        if len(train_problems) < 1 or len(eval_problems) < 1:
            raise ValueError("Adv-RM needs train and held-out problems")
        self.policy_dir, self.out, self.config, self.log = Path(policy_dir), Path(out), config, log
        self.train_problems = train_problems[: config.train_questions]
        self.eval_problems = eval_problems[: config.eval_questions]
        self.engine_kwargs = engine_kwargs or {}
        self.work = self.out / "work"

    # -- orchestration ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        started = time.monotonic()
        self.work.mkdir(parents=True, exist_ok=True)
        # A reward-model backbone other than the policy is checked before minutes of sampling, and before the
        # run's settings are recorded (a corrected flag must not then be refused as another run's).
        backbone_source(self.policy_dir, self.config.reward_models)
        ensemble_source(self.policy_dir, self.config.reward_models)
        self._check_same_run()
        sampled = self.stage("sample", self.sample)
        rounds = []
        for k in range(self.config.rounds + 1):
            reward = self.stage(f"round{k}_reward", partial(self.reward_round, k))
            attacked = self.stage(f"round{k}_attack", partial(self.attack_round, k))
            found = (
                self.stage(f"round{k}_adversarial", partial(self.collect_adversarial, k))
                if k < self.config.rounds
                else {"n_adversarial": 0, "failure_modes": {}}
            )
            rounds.append({"round": k, **reward, **attacked, **found})
        curves = {}
        runs = (("standard", 0), ("advrm", self.config.rounds))
        # A --no-run-rlhf rerun of a run whose RLHF runs are done still reports them, as they are.
        if self.config.run_rlhf or all((self.work / f"rlhf_{name}.json").exists() for name, _ in runs):
            asked_steps = self.config.rlhf.steps if self.config.run_rlhf else 0
            for name, k in runs:
                curves[name] = self.stage(
                    f"rlhf_{name}",
                    partial(self.rlhf_run, name, k),
                    extends=lambda curve: curve["hacking"]["run_steps"] < asked_steps,
                )
        self.export(curves)  # not a stage: cheap, and more rounds or the RLHF runs change what it writes
        metrics = summary(rounds, curves, self.config, sampled)
        timings = self._timings()  # a resumed run's stages ran in several sessions: wall_s sums them
        metrics.update(
            wall_s=round(sum(timings.values()), 1),
            wall_s_this_session=round(time.monotonic() - started, 1),
            policy=str(self.policy_dir),
            stage_seconds=timings,
            reward_dir=str(self.out / "reward"),
            reward_size_mb=round(_size(self.out / "reward") / 2**20, 2),
            config=asdict(self.config),
        )
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return metrics

    def stage(self, name: str, work: Callable[[], dict], extends: Callable[[dict], bool] | None = None) -> dict:
        """Run a stage once: its result is stored in DIR/work/NAME.json, which marks it done. A done stage whose
        result `extends` finds short of the settings runs again (it resumes its own outputs); its seconds add up."""
        path = self.work / f"{name}.json"
        spent = 0.0
        if path.exists():
            stored = json.loads(path.read_text())
            if extends is None or not extends(stored["result"]):
                self.log(f"advrm: {name}: done already, skipped")
                return stored["result"]
            spent = stored["seconds"]
            self.log(f"advrm: {name}: extending ...")
        else:
            self.log(f"advrm: {name} ...")
        started = time.monotonic()
        result = work()
        seconds = round(spent + time.monotonic() - started, 1)
        path.write_text(json.dumps({"seconds": seconds, "result": result}, indent=1))
        return result

    # -- stages ------------------------------------------------------------------------------------------------
    def sample(self) -> dict:
        """The policy's graded answers to the train and held-out questions, in one engine session."""
        from probexit.engine.offline import OfflineEngine

        n = self.config.samples_per_question
        problems = self.train_problems + self.eval_problems
        with OfflineEngine(self.policy_dir, seed=self.config.seed, **self.engine_kwargs) as engine:
            prompts = engine.chat_prompts([p.question for p in problems for _ in range(n)])
            outputs = engine.generate(
                prompts, temperature=self.config.temperature, max_tokens=self.config.max_tokens, seed=self.config.seed
            )
        samples = [
            Sample(p.question, p.answer, g.text, grade(g.text, p.answer).gold)
            for p, g in zip((p for p in problems for _ in range(n)), outputs)
        ]
        cut_share = sum(g.finish_reason == "length" for g in outputs) / len(outputs)
        if cut_share > CUT_ANSWERS_WARNING_SHARE:
            self.log(f"  warning: {_cut_answers(cut_share, self.config.max_tokens)}")
        cut = len(self.train_problems) * n
        _write_jsonl(self.out / "data" / "train_samples.jsonl", [asdict(s) for s in samples[:cut]])
        _write_jsonl(self.out / "data" / "eval_samples.jsonl", [asdict(s) for s in samples[cut:]])
        return {
            "train_gold": statistics.fmean(s.gold for s in samples[:cut]),
            "eval_gold": statistics.fmean(s.gold for s in samples[cut:]),
            "samples": len(samples),
            "cut_share": cut_share,
        }

    def reward_round(self, k: int) -> dict:
        """Train round k's target and ensemble; held-out accuracy (on unbiased pairs), the success floor, and how
        much the models' rewards follow an answer's length."""
        train, held_out = self._samples("train"), self._samples("eval")
        seed, per_question, bias = self.config.seed, self.config.pairs_per_question, self.config.bias
        unbiased = preference_pairs(train, per_question, seed)
        policy_pairs = bias.pairs(train, per_question, seed) if bias else unbiased
        if not policy_pairs:
            raise ValueError(
                "no preference pairs: no train question got both a right and a wrong answer; raise "
                "--train-questions or --samples-per-question"
            )
        adversarial = [pair for j in range(k) for pair in _read_pairs(self._round(j) / "adversarial_pairs.jsonl")]
        added = adversarial * self.config.adversarial_repeat
        pairs = policy_pairs + added
        # the ensemble stands for other reward models: without --bias-ensemble they do not share the target's flaw
        ensemble_pairs = unbiased + added if bias and not self.config.bias_ensemble else pairs
        notes = {
            "job": "probexit train advrm",
            "round": k,
            "policy": str(self.policy_dir),
            "policy_pairs": len(policy_pairs),
            "adversarial_pairs": len(adversarial),
            "preference_bias": str(bias) if bias else None,
        }
        ensemble = train_round(
            self.policy_dir,
            pairs,
            held_out,
            self._round(k) / "reward",
            self.config.reward_models,
            notes,
            self.log,
            name=f"advrm-round{k}",
            ensemble_pairs=ensemble_pairs,
        )
        held_out_pairs = preference_pairs(held_out, per_question, seed + 1)  # never biased
        accuracy = pair_accuracy(ensemble, held_out_pairs)
        scores = ensemble.score_texts([s.question for s in held_out], [s.text for s in held_out])
        right = sorted(score.normalised for score, s in zip(scores, held_out) if s.gold)
        floor = _percentile(right, self.config.attack.success_percentile)
        self.log(
            f"  round {k}: held-out preference accuracy {accuracy['target']:.3f} (ensemble "
            f"{', '.join(f'{a:.3f}' for a in accuracy['ensemble'])}); floor {floor:.3f}"
        )
        if accuracy["target"] is not None and accuracy["target"] < USEFUL_PREFERENCE_ACCURACY:
            self.log(f"  warning: round {k}'s target barely tells right from wrong answers on held-out questions")
        lengths = [words(s.text) for s in held_out]
        return {
            "preference_accuracy": accuracy,
            "floor": floor,
            "train_pairs": len(pairs),
            "in_distribution_flagged": statistics.fmean(score.flagged for score in scores),
            "reward_length_correlation": {
                "target": correlation(lengths, [score.normalised for score in scores]),
                "ensemble_mean": correlation(lengths, [score.ensemble_mean for score in scores]),
            },
            "preference_data": {
                "bias": str(bias) if bias else None,
                "target": bias_statistics(pairs),
                "ensemble": bias_statistics(ensemble_pairs),
                "held_out": bias_statistics(held_out_pairs),
            },
        }

    def attack_round(self, k: int) -> dict:
        """Train an adversarial policy against round k's reward models; its success on held-out questions."""
        from probexit.rewards.ensemble import RewardEnsemble

        settings, floor = self.config.attack, self._result(f"round{k}_reward")["floor"]
        ensemble = RewardEnsemble.load(self._round(k) / "reward")
        scorer = ensemble.score_texts
        rollouts = attack.RowLog(self._round(k) / "attack" / "rollouts.jsonl")
        reward = partial(
            attack.adversarial_reward,
            scorer=scorer,
            floor=floor,
            lam=settings.lam,
            penalty=settings.penalty,
            ensemble_clip=settings.ensemble_clip,
            record=rollouts,
        )
        reward.__name__ = "adversarial_reward"
        policy = self._grpo(self.train_problems, reward, self._round(k) / "attack", settings)
        rows = self._sample_rows(policy, ensemble, settings)
        _write_jsonl(self._round(k) / "attack" / "eval_samples.jsonl", rows)
        flag_at = ensemble.manifest.z_threshold  # where /v1/rewards flags an answer from this folder
        success = attack.attack_success(rows, floor, flag_at)
        replay = None
        if k > 0:  # the previous round's attack, scored by this round's hardened models
            old = _read_jsonl(self._round(k - 1) / "attack" / "eval_samples.jsonl")
            rescored = [
                attack.scored_row(r["question"], r["answer"], r["text"], s)
                for r, s in zip(old, scorer([r["question"] for r in old], [r["text"] for r in old]))
            ]
            replay = attack.attack_success(rescored, floor, flag_at)
        self.log(f"  round {k}: attack success standard {success['standard']:.1%}, strict {success['strict']:.1%}")
        return {
            "attack_success": success,
            "replay_previous_attack": replay,
            "attack_gold": statistics.fmean(r["gold"] for r in rows),
            "attack_mean_words": statistics.fmean(words(r["text"]) for r in rows),
            "attack_failure_modes": _counts(r["failure"] for r in rows if r["failure"]),
        }

    def collect_adversarial(self, k: int) -> dict:
        """Round k's adversarial examples from the attack's rollouts, each paired with a right answer."""
        floor = self._result(f"round{k}_reward")["floor"]
        rows = attack.RowLog(self._round(k) / "attack" / "rollouts.jsonl").read()
        found = attack.select_adversarial(rows, floor, read_manifest(self._round(k) / "reward").z_threshold)
        found = sorted(found, key=lambda row: -row["target"])[: self.config.max_adversarial]
        right = _right_answers(self._samples("train"), rows)
        rng = random.Random(self.config.seed + k)
        pairs = [
            Pair(row["question"], rng.choice(right[row["question"]]), row["text"], f"adversarial round {k}")
            for row in found
            if right.get(row["question"])
        ]
        _write_jsonl(self._round(k) / "adversarial_pairs.jsonl", [asdict(p) for p in pairs])
        self.log(f"  round {k}: {len(found)} adversarial examples, {len(pairs)} paired with a right answer")
        return {"n_adversarial": len(pairs), "n_found": len(found), "failure_modes": attack.failure_report(found)}

    def rlhf_run(self, name: str, k: int) -> dict:
        """GRPO from the policy against round k's target; proxy and gold per step."""
        from probexit.rewards.ensemble import RewardEnsemble

        settings = self.config.rlhf
        ensemble = RewardEnsemble.load(self._round(k) / "reward")
        steps = attack.RowLog(self.out / "rlhf" / name / "steps.jsonl")
        held_out = attack.RowLog(self.out / "rlhf" / name / "held_out.jsonl")
        reward = partial(rlhf.proxy_reward, scorer=ensemble.score_texts, record=lambda row: steps([row]))
        reward.__name__ = f"proxy_{name}"
        callbacks = (
            [
                rlhf.HeldOutGold(
                    self.eval_problems[: settings.eval_questions],
                    ensemble.score_texts,
                    lambda row: held_out([row]),
                    every=settings.eval_every,
                    samples=settings.eval_samples,
                    temperature=settings.temperature,
                    max_new_tokens=settings.max_completion_length,
                    seed=settings.seed,
                )
            ]
            if settings.measures_held_out
            else []
        )
        self._grpo(self.train_problems, reward, self.out / "rlhf" / name, settings, callbacks)
        rows, measured = rlhf.curve(steps.read()), rlhf.curve(held_out.read())
        found = rlhf.judge(rows, measured, settings)
        self.log(
            f"  rlhf {name}: hacking step {found['step']} of {found['run_steps']} ({found['curve']} curve)"
            + (f"; held-out gold {measured[0]['gold']:.3f} -> {measured[-1]['gold']:.3f}" if measured else "")
        )
        return {"steps": rows, "held_out": measured, "hacking": found}

    def export(self, curves: dict) -> dict:
        """The last round's folder becomes DIR/reward/; the RLHF curves of metrics.json are plotted."""
        final = self._round(self.config.rounds) / "reward"
        target = self.out / "reward"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(final, target, ignore=shutil.ignore_patterns("done.json"))
        write_manifest(target, replace(read_manifest(target), name="advrm"))
        if curves:
            rlhf.plot_curves(curves, self.out / "rlhf.png")
        self.log(f"advrm: export: round {self.config.rounds}'s reward models -> {target}")
        return {"reward": str(target), "size_mb": round(_size(target) / 2**20, 2)}

    # -- helpers -------------------------------------------------------------------------------------------------
    def _grpo(self, problems: list[ProblemRecord], reward, out: Path, settings, callbacks: list = ()) -> Path:
        from probexit.training.grpo import GRPOSettings, prompt_dataset, train_grpo

        config = GRPOSettings(
            num_generations=settings.num_generations,
            questions_per_step=settings.questions_per_step,
            steps=settings.steps,
            learning_rate=settings.learning_rate,
            warmup_steps=0,
            beta=settings.beta,
            temperature=settings.temperature,
            max_completion_length=settings.max_completion_length,
            seed=settings.seed,
            save_steps=10,
            logging_steps=1,
        )
        dataset = prompt_dataset([p.question for p in problems], answers=[p.answer for p in problems])
        return train_grpo(self._trainable_policy(), dataset, reward, out, config, list(callbacks), self.log).policy_dir

    def _trainable_policy(self) -> Path:
        """The policy as GRPO should load it: a half-precision checkpoint (the embedded policy is stored in
        fp16) gets an fp32 copy on CPU, where half-precision training loses the small updates."""
        import torch
        from transformers import AutoConfig

        stored = str(getattr(AutoConfig.from_pretrained(self.policy_dir), "dtype", "float32"))
        if torch.cuda.is_available() or stored.removeprefix("torch.") == "float32":
            return self.policy_dir
        copy = self.work / "policy-fp32"
        if not (copy / "config.json").is_file():
            from transformers import AutoModelForCausalLM, AutoTokenizer

            AutoModelForCausalLM.from_pretrained(self.policy_dir, dtype=torch.float32).save_pretrained(copy)
            AutoTokenizer.from_pretrained(self.policy_dir).save_pretrained(copy)
        return copy

    def _sample_rows(self, policy: Path, ensemble, settings: attack.AttackSettings) -> list[dict]:
        """The adversarial policy's graded, scored samples on the held-out questions (through the engine)."""
        from probexit.engine.offline import OfflineEngine

        problems = [p for p in self.eval_problems for _ in range(settings.eval_samples)]
        with OfflineEngine(policy, seed=settings.seed, **self.engine_kwargs) as engine:
            outputs = engine.generate(
                engine.chat_prompts([p.question for p in problems]),
                temperature=settings.temperature,
                max_tokens=settings.max_completion_length,
                seed=settings.seed + 1,
            )
        texts = [g.text for g in outputs]
        scores = ensemble.score_texts([p.question for p in problems], texts)
        return [attack.scored_row(p.question, p.answer, t, s) for p, t, s in zip(problems, texts, scores)]

    def _samples(self, split: str) -> list[Sample]:
        return [Sample(**row) for row in _read_jsonl(self.out / "data" / f"{split}_samples.jsonl")]

    def _round(self, k: int) -> Path:
        return self.out / "rounds" / str(k)

    def _result(self, stage: str) -> dict:
        return json.loads((self.work / f"{stage}.json").read_text())["result"]

    def _timings(self) -> dict:
        return {
            p.stem: json.loads(p.read_text())["seconds"]
            for p in sorted(self.work.glob("*.json"))
            if p.stem != "run_config"
        }

    def _check_same_run(self) -> None:
        """A rerun resumes the run in DIR, or extends it (`EXTENDABLE`); one with other settings or another
        policy would mix two runs."""
        path = self.work / "run_config.json"
        settings = json.loads(
            json.dumps(
                {
                    "config": asdict(self.config),
                    "policy": str(self.policy_dir),
                    "train": len(self.train_problems),
                    "eval": len(self.eval_problems),
                }
            )
        )
        if path.exists():
            stored = json.loads(path.read_text())
            # a setting added since the run began counts as its default; one removed since is not compared
            stored["config"] = _merged(json.loads(json.dumps(asdict(AdvRMConfig()))), stored["config"])
            if _fixed(stored) != _fixed(settings):
                raise ValueError(
                    f"{self.out} holds an Adv-RM run with other settings; use a new --out, or the same "
                    "settings to resume (only --rounds and --rlhf-steps may grow and --run-rlhf be added)"
                )
            if (self.out / "rlhf").exists():
                ran, asked = stored["config"]["rlhf"], settings["config"]["rlhf"]
                if {**ran, "steps": 0} != {**asked, "steps": 0}:
                    raise ValueError(
                        f"{self.out}'s RLHF runs started with other --rlhf-* settings (only --rlhf-steps may "
                        "grow); use a new --out"
                    )
                if asked["steps"] < ran["steps"]:
                    raise ValueError(
                        f"{self.out}'s RLHF runs were set to {ran['steps']} steps: a rerun may add steps, not "
                        "drop them; use a new --out"
                    )
            before, now = stored["config"]["rounds"], self.config.rounds
            if now < before:
                raise ValueError(
                    f"{self.out} holds an Adv-RM run of {before} rounds: a rerun may add rounds, not "
                    "drop them; use a new --out"
                )
            if now > before and (self.out / "rlhf" / "advrm").exists():
                raise ValueError(
                    f"{self.out}'s RLHF run against the Adv-RM used round {before}'s model: more "
                    "rounds need a new --out"
                )
        path.write_text(json.dumps(settings, indent=1))


# What a rerun in the same folder may change: finished stages stand, and the new ones (another round's attack and
# retraining, the RLHF runs, whose settings may change until one of them has started, and then only to more
# steps, which resume both runs from their last checkpoints) only add to them.
EXTENDABLE = ("rounds", "run_rlhf", "rlhf")


def _merged(defaults: dict, given: dict) -> dict:
    """`given` read with the keys of `defaults`: what it lacks taken from `defaults`, what `defaults` lacks
    dropped, in nested sections too.

    >>> _merged({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 4}, "e": 5})
    {'a': 1, 'b': {'c': 4, 'd': 3}}
    """
    return {
        key: _merged(value, given.get(key, {})) if isinstance(value, dict) else given.get(key, value)
        for key, value in defaults.items()
    }


def _fixed(settings: dict) -> dict:
    return {**settings, "config": {k: v for k, v in settings["config"].items() if k not in EXTENDABLE}}


def _cut_answers(share: float, max_tokens: int) -> str:
    return (
        f"{share:.0%} of the policy's sampled answers were cut at --max-tokens {max_tokens} before they ended: the "
        "reward model may learn to tell cut answers from whole ones rather than right from wrong; raise --max-tokens"
    )


def summary(rounds: list[dict], curves: dict, config: AdvRMConfig, sampled: dict | None = None) -> dict:
    """metrics.json: the headline fields first (what the docs and the command's summary quote), then the
    detail behind them. `sampled`: the sample stage's result."""
    success = [{"round": r["round"], **r["attack_success"]} for r in rounds]
    accuracy = [r["preference_accuracy"]["target"] for r in rounds]
    hacking = {name: curve["hacking"] for name, curve in curves.items()}
    rise = {name: rlhf.gold_rise_steps(curve["hacking"]) for name, curve in curves.items()}
    found = [row for r in rounds for row in _expand(r.get("failure_modes", {}))]
    warnings = [
        f"round {r['round']}'s attack found no adversarial examples: nothing was added to reward training"
        for r in rounds[:-1]
        if not r["n_adversarial"]
    ]
    cut_share = (sampled or {}).get("cut_share")  # None: sampled before the share was recorded
    if cut_share is not None and cut_share > CUT_ANSWERS_WARNING_SHARE:
        warnings.append(_cut_answers(cut_share, config.max_tokens))
    if accuracy[0] is not None and accuracy[0] < USEFUL_PREFERENCE_ACCURACY:
        warnings.append(
            f"the target reward model scores the right answer above the wrong one in only "
            f"{accuracy[0]:.1%} of held-out pairs (chance is 50%): it cannot tell them apart, so the "
            "attack success rates below say little; a better backbone (--rm-backbone: a more trained "
            "checkpoint with the policy's tokenizer) or more pairs may help"
        )
    if None not in accuracy and accuracy[-1] < accuracy[0] - 0.01:
        warnings.append(f"held-out preference accuracy fell from {accuracy[0]:.3f} to {accuracy[-1]:.3f}")
    return {
        "preference_bias": config.preference_bias or None,
        "preference_data": rounds[0].get("preference_data"),
        "cut_answer_share": cut_share,
        "attack_success_before": success[0],
        "attack_success_after": success[1:],
        "preference_accuracy_before": accuracy[0],
        "preference_accuracy_after": accuracy[-1],
        "hacking_step_standard": hacking.get("standard", {}).get("step"),
        "hacking_step_advrm": hacking.get("advrm", {}).get("step"),
        "rlhf_steps": max((c["hacking"]["run_steps"] for c in curves.values()), default=None),
        "n_adversarial": sum(r["n_adversarial"] for r in rounds),
        "gold_rise_steps": rise,
        "failure_modes": _counts(found),
        "warnings": warnings,
        "rounds": rounds,
        "rlhf": {
            name: {"hacking": c["hacking"], "held_out": c.get("held_out", []), "steps": c["steps"]}
            for name, c in curves.items()
        },
    }


def _expand(report: dict) -> list[str]:
    return [mode for mode, entry in report.items() for _ in range(entry["count"])]


def _counts(items) -> dict:
    counts: dict = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items(), key=lambda pair: -pair[1]))


def _right_answers(samples: list[Sample], rollouts: list[dict]) -> dict[str, list[str]]:
    """Right, well-formed answers per question: the policy's own samples first, else the attack's rollouts."""
    right: dict[str, list[str]] = {}
    for sample in samples:
        if sample.gold:
            right.setdefault(sample.question, []).append(sample.text)
    for row in rollouts:
        if row.get("gold") and row["question"] not in right:
            right.setdefault(row["question"], []).append(row["text"])
    return right


def _percentile(values: list[float], percentile: float) -> float:
    if not values:
        raise ValueError(
            "no right answers among the held-out samples: the floor (a typical right answer's "
            "reward) is undefined; sample more questions or a stronger policy"
        )
    import numpy

    return float(numpy.percentile(values, percentile))


def _read_pairs(path: Path) -> list[Pair]:
    return [Pair(**row) for row in _read_jsonl(path)]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0
