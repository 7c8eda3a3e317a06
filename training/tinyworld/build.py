"""`probexit tinyworld build`: the embedded default, rebuilt from nothing, deterministically and resumably.

The stages: problems, tokenizer, the policy's SFT (stopped early on purpose, so that it still slips), EMPO
on the SFT policy (no gold answer read: the served policy is the EMPO-tuned one), the policy card, and the
probe trained on the served policy's own traces. Each stage writes its outputs under the build folder and a
marker in `DIR/work/`; a rerun skips finished stages, SFT and EMPO resume from their last checkpoints, and a
stage that runs again invalidates every later one (their inputs changed). The manifest records the seeds,
the versions, how long each stage took and a checksum of every file, so that anyone can see how each served
artifact was made.
"""

from __future__ import annotations

import hashlib
import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from probexit.assets import EMBEDDED_OFFLINE_ENGINE
from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P
from probexit.probes.boundary import PARAGRAPH, BoundaryPolicyConfig
from probexit.probes.features import ANSWER_HISTORY, END_OF_THINKING
from probexit.probes.probe import FORCED_LABELS
from probexit.training.empo import EMPOConfig
from probexit.training.tinyworld.policy import PolicyConfig
from probexit.training.tinyworld.problems import Problem, generate_splits, parse_question, write_jsonl
from probexit.training.tinyworld.traces import TRACE_MAX_TOKENS, TraceStyle, sample_trace

SPLIT_SIZES = {"train": 50_000, "validation": 1_000, "test": 1_000}
CARD_PROBLEMS = 500
# EMPO for the tiny world: 60 steps of 8 questions x 8 answers, sampled at the evaluation's temperature
# (about 30 s a step on 2 AVX2 cores; docs/training-empo.md).
TINY_EMPO = EMPOConfig(
    steps=60, learning_rate=3e-5, warmup_steps=3, temperature=EVAL_TEMPERATURE, save_steps=5, max_completion_length=768
)


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    split_sizes: dict = field(default_factory=lambda: dict(SPLIT_SIZES))
    tokenizer_vocab_size: int = 512
    tokenizer_corpus_traces: int = 10_000
    style: TraceStyle = field(default_factory=TraceStyle)
    # SFT runs its 900-step schedule, then 450 more steps at the schedule's floor learning rate, in fp32: on 100
    # validation problems, greedy / sampled (0.6) accuracy was 0.94 / 0.88 at step 900, 0.915 / 0.86 at 1050 and
    # 0.93 / 0.90 at 1200, so longer SFT buys nothing measurable; EMPO then lifts the sampled accuracy towards the
    # majority answer's (docs/training-empo.md).
    policy: PolicyConfig = field(
        default_factory=lambda: PolicyConfig(steps=900, stop_at=1350, batch_size=64, compile=False, bf16=False)
    )
    empo: EMPOConfig = TINY_EMPO
    empo_questions: int = 1000  # the train split's last questions (the probe samples its first ones)
    empo_eval_problems: int = 200  # the validation split's first problems: the scorecards before and after
    empo_baseline: bool = False  # also train the supervised GRPO baseline (+29 min on 2 cores)
    card_problems: int = CARD_PROBLEMS
    probe_problems: int = 2000  # training-split problems the probe's traces are sampled on
    probe_samples: int = 4  # traces per problem
    # The served probe is asked at every paragraph break and trained on what the user gets when it exits there, so
    # no exit waits for a reader to recognise how a conclusion is worded.
    probe_boundaries: BoundaryPolicyConfig = field(default_factory=lambda: BoundaryPolicyConfig(mode=PARAGRAPH))
    probe_labels: str = FORCED_LABELS
    # Beside the hidden state, the probe reads the model's own P(</think>) and the history of the answers stated
    # so far: of the input sets fitted on the same traces, this one had the lowest validation log-loss.
    probe_inputs: tuple[str, ...] = (END_OF_THINKING, ANSWER_HISTORY)


class Build:
    def __init__(self, out: Path, config: BuildConfig, log: Callable[[str], None] = print):
        self.out, self.config, self.log = Path(out), config, log
        self.work = self.out / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = self._load_json(self.work / "timings.json", {})
        self._earlier_seconds: dict[str, float] = {}  # time a stage spent before it was interrupted

    # -- stages ------------------------------------------------------------------------------------------
    def problems(self) -> None:
        splits = generate_splits(self.config.split_sizes, seed=self.config.seed)
        for name, problems in splits.items():
            write_jsonl(problems, self.out / "problems" / f"{name}.jsonl")

    def tokenizer(self) -> None:
        from probexit.training.tinyworld.tokenizer import train_tokenizer

        train = self.load_split("train")
        rng = random.Random(self.config.seed + 1)
        corpus = []
        for _ in range(self.config.tokenizer_corpus_traces):
            problem = rng.choice(train)
            corpus.append(_chat_text(problem, sample_trace(problem, self.config.style, rng).completion))
        train_tokenizer(corpus, self.config.tokenizer_vocab_size, self.out / "policy")

    def sft(self) -> None:
        from transformers import AutoTokenizer

        from probexit.training.tinyworld.policy import train_policy

        tokenizer = AutoTokenizer.from_pretrained(self.out / "policy")
        model, stats = train_policy(
            tokenizer, self.load_split("train"), self.config.style, self.config.policy, self.work
        )
        self._save_policy(model)
        (self.out / "policy_sft.json").write_text(json.dumps(stats, indent=2) + "\n")
        self._earlier_seconds["sft"] = stats["resumed_after_seconds"]  # an interrupted run's time counts too

    def empo(self) -> None:
        """EMPO on the SFT policy from the train split's questions alone; the tuned policy replaces it."""
        import shutil

        from transformers import AutoModelForCausalLM

        from probexit.training.empo_eval import EvalConfig
        from probexit.training.empo_job import EMPOJob
        from probexit.training.problem_files import ProblemRecord

        base = self.work / "empo_base"  # the SFT policy, kept: EMPO resumes from it and is scored against it
        if not base.exists():
            shutil.copytree(self.out / "policy", base)
        train = self.load_split("train")[-self.config.empo_questions :]
        validation = self.load_split("validation")[: self.config.empo_eval_problems]
        job_dir = self.work / "empo_job"
        # EMPO itself reads only the questions; the answers are there for the supervised baseline alone.
        answers = [str(p.answer) if self.config.empo_baseline else None for p in train]
        job = EMPOJob(
            base,
            [ProblemRecord(p.question, a) for p, a in zip(train, answers)],
            job_dir,
            self.config.empo,
            eval_problems=[ProblemRecord(p.question, str(p.answer)) for p in validation],
            # scored with the traces' own budget: a shorter cap would count long right answers as wrong
            eval_config=EvalConfig(max_tokens=TRACE_MAX_TOKENS),
            engine_kwargs=tiny_engine_kwargs(),
            supervised_baseline=self.config.empo_baseline,
            log=self.log,
        )
        metrics = job.run()
        self._earlier_seconds["empo"] = metrics["wall_s"] - metrics["wall_s_this_run"]  # an interrupted job's time
        self._save_policy(AutoModelForCausalLM.from_pretrained(job_dir / "policy", dtype="float32"))
        (self.out / "empo_metrics.json").write_text(json.dumps(_relative(metrics, self.out), indent=2) + "\n")

    def _save_policy(self, model) -> None:
        import torch
        from transformers import AutoTokenizer, GenerationConfig

        from probexit.training.tinyworld.tokenizer import END_OF_TEXT, IM_END

        model.config.use_cache = True  # GRPO training turns it off; generation wants it
        # fp16 on disk halves the asset (12 -> 6 MB); loaders compute in fp32 (`dtype=float32`).
        model.to(torch.float16).save_pretrained(self.out / "policy")
        tokenizer = AutoTokenizer.from_pretrained(self.out / "policy")
        stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in (IM_END, END_OF_TEXT)]
        GenerationConfig(
            eos_token_id=stop_ids,
            pad_token_id=tokenizer.pad_token_id,
            temperature=EVAL_TEMPERATURE,
            top_p=EVAL_TOP_P,
            do_sample=True,
        ).save_pretrained(self.out / "policy")

    def card(self) -> None:
        from probexit.engine.offline import OfflineEngine
        from probexit.training.tinyworld.card import behaviour_metrics, sample_problems, signal_metrics

        n = self.config.card_problems
        with OfflineEngine(self.out / "policy", **tiny_engine_kwargs()) as engine:
            validation = sample_problems(engine, self.load_split("validation")[:n], seed=self.config.seed + 11)
            test = sample_problems(engine, self.load_split("test")[:n], seed=self.config.seed + 12)
        card = {
            "sampling": {"temperature": EVAL_TEMPERATURE, "top_p": EVAL_TOP_P, "engine": "vllm"},
            **behaviour_metrics(test),
            **signal_metrics(validation, test),
        }
        (self.out / "card.json").write_text(json.dumps(card, indent=2) + "\n")

    def probe(self) -> None:
        """The embedded probe, trained on the served policy's own traces (`probexit train probe`)."""
        import shutil

        from probexit.engine.offline import OfflineEngine
        from probexit.probes.equivalence import MathEquivalence
        from probexit.training.probe_job import ProbeJobConfig, run_probe_job
        from probexit.training.problem_files import ProblemRecord
        from probexit.training.trace_cache import SamplingConfig

        problems = [
            ProblemRecord(p.question, str(p.answer)) for p in self.load_split("train")[: self.config.probe_problems]
        ]
        sampling = SamplingConfig(
            samples_per_problem=self.config.probe_samples, max_tokens=TRACE_MAX_TOKENS, seed=self.config.seed + 21
        )
        job_dir = self.work / "probe_job"
        config = ProbeJobConfig(
            sampling=sampling,
            split_seed=self.config.seed,
            boundary_policy=self.config.probe_boundaries,
            labels=self.config.probe_labels,
            inputs=self.config.probe_inputs,
        )
        policy = config.boundary_policy.to_json()
        with OfflineEngine(self.out / "policy", boundary_policy=policy, **tiny_engine_kwargs()) as engine:
            metrics = run_probe_job(
                engine, self.out / "policy", problems, MathEquivalence(), job_dir, config, model_name="tinyworld"
            )
        # traces and forced answers that an earlier run made count with the time they took
        self._earlier_seconds["probe"] = metrics["wall_s"] - metrics["wall_s_this_run"]
        target = self.out / "probe"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(job_dir / "probe", target)
        for name in ("metrics.json", "reliability.png"):
            shutil.copy(job_dir / name, target / name)

    # -- orchestration -----------------------------------------------------------------------------------
    STAGES = ("problems", "tokenizer", "sft", "empo", "card", "probe")
    # What each stage keeps in DIR/work/ to resume; removed when an earlier stage runs again.
    WORK = {"sft": ("sft_checkpoint.pt",), "empo": ("empo_base", "empo_job"), "probe": ("probe_job",)}

    def run(self, stages: tuple[str, ...] | None = None) -> None:
        unknown = set(stages or ()) - set(self.STAGES)
        if unknown:
            raise ValueError(f"unknown build stage(s) {sorted(unknown)}; the stages are {', '.join(self.STAGES)}")
        for name in stages or self.STAGES:
            marker = self.work / f"{name}.done"
            if marker.exists():
                self.log(f"tinyworld: {name}: done already, skipped")
                continue
            self.invalidate_after(name)
            self.log(f"tinyworld: {name} ...")
            started = time.monotonic()
            getattr(self, name)()
            self.timings[name] = round(time.monotonic() - started + self._earlier_seconds.get(name, 0.0), 1)
            (self.work / "timings.json").write_text(json.dumps(self.timings, indent=2))
            marker.touch()
        self.write_manifest()

    def invalidate_after(self, stage: str) -> None:
        """Forget every stage after `stage`: it is about to (re)run, so their inputs change."""
        import shutil

        for later in self.STAGES[self.STAGES.index(stage) + 1 :]:
            (self.work / f"{later}.done").unlink(missing_ok=True)
            for name in self.WORK.get(later, ()):
                path = self.work / name
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)

    def write_manifest(self) -> None:
        import torch
        import transformers

        from probexit.engine import adapter

        files = sorted(
            p
            for p in self.out.rglob("*")
            if p.is_file() and "work" not in p.relative_to(self.out).parts and p.name != "manifest.json"
        )
        manifest = {
            "command": "probexit tinyworld build",
            "config": _jsonable(asdict(self.config)),
            "stage_seconds": self.timings,
            "total_seconds": round(sum(self.timings.values()), 1),
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "vllm": adapter.vllm_version(),
            },
            "files": {str(p.relative_to(self.out)): _sha256(p) for p in files},
        }
        (self.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    def load_split(self, name: str) -> list[Problem]:
        lines = (self.out / "problems" / f"{name}.jsonl").read_text().splitlines()
        return [parse_question(json.loads(line)["question"]) for line in lines]

    @staticmethod
    def _load_json(path: Path, default):
        return json.loads(path.read_text()) if path.exists() else default


def tiny_engine_kwargs() -> dict:
    """vLLM settings for the tiny world on CPU: exact fp32, no compile wait, a short context."""
    return dict(EMBEDDED_OFFLINE_ENGINE)


def _chat_text(problem: Problem, completion: str) -> str:
    from probexit.training.tinyworld.tokenizer import IM_END, render_chat

    return render_chat([{"role": "user", "content": problem.question}]) + completion + IM_END


def _relative(value, root: Path):
    """`value` with the build folder's absolute paths written relative to it (the assets move)."""
    return json.loads(json.dumps(value).replace(str(root.resolve()) + "/", "").replace(str(root) + "/", ""))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
