"""What every GRPO run of the project shares: EMPO and its supervised baseline, the Adv-RM attack and the RLHF
runs. `GRPOSettings` (what TRL's GRPOTrainer is given), the prompt dataset, the text of a completion as TRL
hands it to a reward function, and `train_grpo`, which trains, checkpoints, resumes and saves the policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from probexit.probes.markers import THINK_END, as_written


@dataclass(frozen=True)
class GRPOSettings:
    """One GRPO run's settings. The defaults are EMPO's, sized for the tiny world on 2 CPU cores (a run of
    about 10-20 minutes); real models want fewer, larger steps (docs/training-empo.md)."""

    num_generations: int = field(
        default=8,
        metadata={"help": "G, answers sampled per question (GRPO's group); a group's entropy lies in [0, log G]."},
    )
    questions_per_step: int = field(
        default=8,
        metadata={"help": "Questions per optimisation step (the step holds questions_per_step * G completions)."},
    )
    steps: int = field(
        default=40,
        metadata={
            "help": (
                "Optimisation steps (GRPO's `max_steps`); rerunning with more steps continues from the checkpoint."
            )
        },
    )
    learning_rate: float = field(
        default=2e-5,
        metadata={"help": "AdamW learning rate (constant after `warmup_steps`)."},
    )
    warmup_steps: int = field(default=5, metadata={"help": "Linear warm-up steps of the learning rate."})
    beta: float = field(
        default=0.0,
        metadata={
            "help": ("KL coefficient against the starting policy; EMPO uses none (0 also skips the reference model).")
        },
    )
    temperature: float = field(
        default=0.9,
        metadata={
            "help": ("Sampling temperature of the training generations (0.9: TRL's default when EMPO was published).")
        },
    )
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling of the training generations."})
    max_completion_length: int = field(
        default=384,
        metadata={
            "help": (
                "Longest completion in tokens; a truncated one has no final answer and earns 0, so a tight "
                "limit also teaches the policy to think less (it drops its re-check paragraphs first)."
            )
        },
    )
    loss_type: str = field(default="dapo", metadata={"help": "GRPO's loss aggregation (TRL's `loss_type`)."})
    scale_rewards: str = field(
        default="group",
        metadata={
            "choices": ("group", "batch", "none"),
            "help": "GRPO's advantage scaling (TRL's `scale_rewards`: group, batch or none).",
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of data order, sampling and initialisation."})
    save_steps: int = field(
        default=20,
        metadata={"help": "Checkpoint every this many steps (and at the end) into DIR/checkpoints/."},
    )
    logging_steps: int = field(default=5, metadata={"help": "Log the trainer's metrics every this many steps."})
    use_vllm: bool = field(
        default=False,
        metadata={
            "help": "Generate with TRL's vLLM integration (colocate mode, GPU) instead of transformers' generate."
        },
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3,
        metadata={"help": "GPU memory share of the colocated vLLM engine (with use_vllm)."},
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bfloat16 training; None: on when a CUDA GPU supports it, off on CPU."},
    )
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory (large models)."})

    def __post_init__(self):
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations is {self.num_generations}: GRPO compares at least 2 answers per question"
            )
        for name in ("questions_per_step", "steps", "max_completion_length", "save_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.learning_rate <= 0 or self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("learning_rate and temperature must be positive and top_p in (0, 1]")
        if self.beta < 0 or self.warmup_steps < 0:
            raise ValueError("beta and warmup_steps must not be negative")

    @property
    def completions_per_step(self) -> int:
        return self.questions_per_step * self.num_generations


def completion_text(completion, think_end: str = THINK_END) -> str:
    """The text of a completion as TRL passes it: a string, or a conversation whose last message is the
    answer (a reasoning field split off by a response parser is put back in front of the marker).

    >>> completion_text([{"role": "assistant", "content": "x</think>y"}])
    'x</think>y'
    >>> completion_text([{"role": "assistant", "reasoning_content": "x", "content": "y"}])
    'x</think>y'
    """
    return completion if isinstance(completion, str) else as_written(completion[-1], think_end)


DONE_FILE = "probexit_training.json"


@dataclass
class TrainedPolicy:
    """A policy `train_grpo` trained: its folder, its steps, its training seconds and its last logged metrics."""

    policy_dir: Path
    steps: int
    train_s: float
    last_log: dict


def prompt_dataset(questions: list[str], answers: list[str | None] | None = None):
    """GRPO's dataset: conversational prompts (the model's chat template renders them, as the server does)."""
    from datasets import Dataset

    columns = {"prompt": [[{"role": "user", "content": q}] for q in questions]}
    if answers is not None:
        columns["answer"] = answers
    return Dataset.from_dict(columns)


def grpo_config(config: GRPOSettings, output_dir: Path):
    """TRL's GRPOConfig for a run."""
    import torch
    from accelerate import PartialState
    from trl import GRPOConfig

    world = PartialState().num_processes
    if config.completions_per_step % world:
        raise ValueError(
            f"questions_per_step * num_generations = {config.completions_per_step} completions per step "
            f"cannot be split over {world} processes; make it a multiple of {world}"
        )
    bf16 = (
        config.bf16 if config.bf16 is not None else bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    )
    return GRPOConfig(
        output_dir=str(output_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.completions_per_step // world,
        num_generations=config.num_generations,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=config.warmup_steps,
        beta=config.beta,
        temperature=config.temperature,
        top_p=config.top_p,
        max_completion_length=config.max_completion_length,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        seed=config.seed,
        bf16=bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        logging_steps=config.logging_steps,
        report_to="none",
        use_vllm=config.use_vllm,
        dataloader_pin_memory=torch.cuda.is_available(),
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
    )


def train_grpo(
    model_dir: Path, dataset, reward, out: Path, config: GRPOSettings, callbacks: list, log: Callable[[str], None]
) -> TrainedPolicy:
    """Train with GRPOTrainer into out/checkpoints and out/policy; resume from the last checkpoint, or skip
    when out/policy already holds at least `config.steps` steps."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import GRPOTrainer

    policy_dir, checkpoints = out / "policy", out / "checkpoints"
    done = policy_dir / DONE_FILE
    if done.exists() and json.loads(done.read_text())["steps"] >= config.steps:
        log(f"{policy_dir}: trained already ({json.loads(done.read_text())['steps']} steps), skipped")
        return TrainedPolicy(policy_dir, **json.loads(done.read_text()))
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last:
        log(f"resuming from {last}")
    started = time.monotonic()
    trainer = GRPOTrainer(
        model=str(model_dir),
        reward_funcs=[reward],
        args=grpo_config(config, checkpoints),
        train_dataset=dataset,
        callbacks=callbacks,
    )
    trainer.train(resume_from_checkpoint=last)
    trained = TrainedPolicy(
        policy_dir,
        trainer.state.global_step,
        round(time.monotonic() - started, 1),
        _last_log(trainer.state.log_history),
    )
    stopped_early = any(getattr(c, "reason", None) for c in callbacks)
    if not stopped_early:
        trainer.save_model(str(policy_dir))
    if is_main_process():
        (out / "train_log.json").write_text(json.dumps(trainer.state.log_history, indent=1) + "\n")
        if not stopped_early:
            done.write_text(json.dumps({k: v for k, v in asdict(trained).items() if k != "policy_dir"}) + "\n")
    wait_for_everyone()
    del trainer
    return trained


def _last_log(history: list[dict]) -> dict:
    """The last logged values of the trainer (rewards, entropy filter, loss)."""
    last: dict = {}
    for entry in history:
        last.update({k: v for k, v in entry.items() if isinstance(v, (int, float))})
    return last


def is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def wait_for_everyone() -> None:
    from accelerate import PartialState

    PartialState().wait_for_everyone()
