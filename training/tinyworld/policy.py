"""The tiny-world policy: a small Qwen2ForCausalLM trained with plain torch on generated traces.

Training is deterministic for a given seed and resumable: batch `k` is generated from its own seeded
stream, so a run resumed from a checkpoint sees exactly the data an uninterrupted run would have seen.
By default compute runs under bf16 autocast with fp32 master weights on CPUs that compute bf16 natively
(AVX512-BF16 or AMX: several times faster there), in fp32 elsewhere: on an AVX2-only CPU (an AMD EPYC here)
oneDNN emulates bf16 and a step took 100 s instead of 7 s in fp32. `PolicyConfig.bf16` pins either.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from probexit.training.tinyworld.problems import Problem
from probexit.training.tinyworld.tokenizer import IM_END
from probexit.training.tinyworld.traces import TraceStyle, sample_trace


@dataclass(frozen=True)
class PolicyConfig:
    """Model shape and SFT schedule. Head size 32 suits vLLM's CPU attention (docs/platform-notes.md)."""

    hidden_size: int = 192
    intermediate_size: int = 576
    num_layers: int = 6
    num_heads: int = 6
    num_kv_heads: int = 6
    max_positions: int = 1024
    steps: int = 750  # length of the learning-rate schedule
    stop_at: int | None = None
    """Stop after this many steps (None: at the end of the `steps`-long schedule). Before the schedule's end it
    stops early (a policy that still slips leaves EMPO something to fix); beyond it, training goes on at the
    schedule's final learning rate. Either way the first steps are those of the schedule itself, so a run may be
    extended or cut at a checkpoint and still equal a run made with that `stop_at` from the start."""
    batch_size: int = 96  # examples per optimiser step (sized for a 30-minute build before EMPO joined it)
    micro_batch_size: int = 16  # examples per forward pass, grouped by length (small: little padding)
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    weight_decay: float = 0.05
    seed: int = 0
    checkpoint_every: int = 150
    # torch.compile (inductor) fuses the many small ops of so small a model: 2.2 s per step of 128 examples
    # instead of 3.5 s on these CPUs, for a one-off compile of about a minute.
    compile: bool = True
    bf16: bool | None = None
    """Compute under bf16 autocast (None: where the CPU computes bf16 natively, `native_bf16`). The build pins
    fp32: how far an early-stopped SFT has got differs between bf16 and fp32 runs of the same schedule."""

    def __post_init__(self):
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("PolicyConfig: hidden_size must divide by num_heads, num_heads by num_kv_heads")
        if self.stop_at is not None and self.stop_at < 1:
            raise ValueError(f"PolicyConfig: stop_at must be at least 1, not {self.stop_at}")

    @property
    def last_step(self) -> int:
        return self.steps if self.stop_at is None else self.stop_at


def build_model(config: PolicyConfig, tokenizer):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    vocab_size = 64 * math.ceil(len(tokenizer) / 64)
    model_config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_positions,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
        dtype="float32",
    )
    torch.manual_seed(config.seed)
    return Qwen2ForCausalLM(model_config)


def encode_example(tokenizer, problem: Problem, completion: str) -> tuple[list[int], list[int]]:
    """Token ids of prompt + completion + end-of-turn, and labels that train on the completion only."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": problem.question}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion + IM_END, add_special_tokens=False)["input_ids"]
    return prompt_ids + completion_ids, [-100] * len(prompt_ids) + completion_ids


def make_micro_batches(tokenizer, problems, style: TraceStyle, rng: random.Random, config: PolicyConfig):
    """One optimiser step's examples, sorted by length into micro-batches so that little is padding."""
    examples = []
    for _ in range(config.batch_size):
        problem = rng.choice(problems)
        examples.append(encode_example(tokenizer, problem, sample_trace(problem, style, rng).completion))
    examples.sort(key=lambda example: len(example[0]))
    return [
        pad_batch(tokenizer, examples[i : i + config.micro_batch_size])
        for i in range(0, len(examples), config.micro_batch_size)
    ]


PAD_MULTIPLE = 32  # few distinct shapes: oneDNN caches a kernel per shape, and many shapes grow memory and time


def pad_batch(tokenizer, examples: list[tuple[list[int], list[int]]]):
    longest = max(len(ids) for ids, _ in examples)
    size, length = len(examples), PAD_MULTIPLE * math.ceil(longest / PAD_MULTIPLE)
    input_ids = torch.full((size, length), tokenizer.pad_token_id)  # (B, T)
    labels = torch.full((size, length), -100)  # (B, T)
    attention = torch.zeros((size, length), dtype=torch.long)  # (B, T)
    for row, (ids, labs) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(labs)] = torch.tensor(labs)
        attention[row, : len(ids)] = 1
    return input_ids, labels, attention


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own probes (private names)
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def step_loss(model, micro_batches, bf16: bool | None = None) -> float:
    """Backpropagate the token-averaged loss of one step's micro-batches; returns that loss.
    `bf16`: compute under bf16 autocast (None: where the CPU computes bf16 natively, `native_bf16`)."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    bf16 = native_bf16() if bf16 is None else bf16
    n_targets = sum(int((labels[:, 1:] != -100).sum()) for _, labels, _ in micro_batches)
    total = 0.0
    for input_ids, labels, attention in micro_batches:
        # Under bf16, the plain (math) attention kernel: on bf16-capable CPUs it runs bf16 attention about twice
        # as fast as the flash kernel for short sequences and small heads. In fp32 the default choice is faster.
        kernel = sdpa_kernel(SDPBackend.MATH) if bf16 else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), kernel:
            logits = model(input_ids=input_ids, attention_mask=attention).logits  # (B, T, V)
        loss = (
            torch.nn.functional.cross_entropy(
                logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100, reduction="sum"
            )
            / n_targets
        )
        loss.backward()
        total += loss.item()
    return total


def learning_rate_at(step: int, config: PolicyConfig) -> float:
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps))
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_policy(
    tokenizer,
    problems: list[Problem],
    style: TraceStyle,
    config: PolicyConfig,
    work_dir: Path,
    snapshots: tuple[int, ...] = (),
) -> dict:
    """Train (or resume) the policy; returns training statistics. Checkpoints go to `work_dir`, and the
    weights at each step of `snapshots` to `work_dir/sft_step{K}.pt` (for learning curves)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = work_dir / "sft_checkpoint.pt"
    model = build_model(config, tokenizer)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(0.9, 0.98), weight_decay=config.weight_decay
    )
    start_step, elapsed, losses = 0, 0.0, []
    if checkpoint_path.exists():
        state = torch.load(checkpoint_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_step, elapsed, losses = state["step"], state["elapsed"], state["losses"]
    model.train()
    # The compiled wrapper shares the module's parameters; checkpoints and the saved model use `model`
    # itself, so their keys carry no `_orig_mod.` prefix and a resume may compile or not.
    forward_model = torch.compile(model, dynamic=True) if config.compile else model
    progress = tqdm(range(start_step, config.last_step), initial=start_step, total=config.last_step, desc="policy SFT")
    started = time.monotonic() - elapsed
    bf16 = native_bf16() if config.bf16 is None else config.bf16  # decided once: the stats report what ran
    for step in progress:
        rng = random.Random(config.seed * 1_000_003 + step)
        micro_batches = make_micro_batches(tokenizer, problems, style, rng, config)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, config)
        loss = step_loss(forward_model, micro_batches, bf16)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss)
        progress.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        done = step + 1
        if done in snapshots:
            torch.save(model.state_dict(), work_dir / f"sft_step{done}.pt")
        if done % config.checkpoint_every == 0 or done == config.last_step:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "step": done,
                "elapsed": time.monotonic() - started,
                "losses": losses,
            }
            torch.save(state, checkpoint_path.with_suffix(".tmp"))
            checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)
    model.eval()
    stats = {
        "config": asdict(config),
        "bf16_autocast": bf16,
        "final_loss": sum(losses[-50:]) / max(1, len(losses[-50:])),
        "train_seconds": time.monotonic() - started,
        "resumed_after_seconds": elapsed,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return model, stats
