"""Adv-RM's reward models: preference pairs, Bradley-Terry training with TRL's RewardTrainer, the folder.

The backbone is the policy, or another model that shares its tokenizer (`RewardModelSettings.backbone`).
Two heads (`RewardModelSettings.head`):
- "token-surprise" (the default): a small head summing, over the answer's tokens, a function of the frozen
  backbone's log-probability and entropy at each token and whether it is a digit (`rewards.heads`);
  only the head trains, and the folder stores the backbone once for every member.
- "last-token": a sequence classifier (one logit) on the backbone's embedding, first `backbone_layers` layers
  and final norm (`AutoModelForSequenceClassification` loads a causal LM's weights by name and leaves the LM
  head out), fine-tuned whole and stored in fp16.
The target and its ensemble differ only in seed and data: the target reads every pair, each ensemble member a
random `ensemble_subset` share. Every member trains on the token ids `rewards.render.render_ids` makes, the
ones the rewards endpoint scores.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from probexit.probes.markers import find_markers
from probexit.rewards.ensemble import RewardEnsemble, summarise
from probexit.rewards.manifest import HEADS, TOKEN_SURPRISE, MemberCard, RewardManifest, write_manifest
from probexit.rewards.render import render_ids

DONE = "done.json"


@dataclass(frozen=True)
class RewardModelSettings:
    """How each reward model of a round is built and trained."""

    head: str = field(
        default=TOKEN_SURPRISE,
        metadata={
            "help": (
                'How a reward model reads a conversation: "token-surprise" (a small head summing over the '
                "answer's tokens the frozen backbone's log-probability, entropy and is-digit of each: it "
                'reads a slip at the tokens it changes; members share the backbone) or "last-token" (a '
                "sequence classifier on the backbone's first `backbone_layers` layers, fine-tuned, read at "
                "the last token)."
            )
        },
    )
    backbone: str = field(
        default="",
        metadata={
            "help": (
                "Model folder the reward models read instead of the policy (empty: the policy). It must share"
                " the policy's tokenizer; e.g. a more trained checkpoint of the same model, whose token log-"
                "probabilities tell the policy's slips apart better than the policy's own."
            )
        },
    )
    ensemble_backbone: str = field(
        default="",
        metadata={
            "help": (
                "token-surprise head: model folder the ensemble members read instead of `backbone` (empty: "
                "the target's backbone). It must share the policy's tokenizer; e.g. the policy itself beside "
                "a more trained backbone for the target: members reading the target's own features agree with"
                " it where it is wrong, so z flags little."
            )
        },
    )
    backbone_layers: int = field(
        default=1,
        metadata={
            "help": (
                "last-token head: layers of the backbone kept (1 of the tiny policy's 6: about 1.1 MB per "
                "model in fp16)."
            )
        },
    )
    ensemble_size: int = field(
        default=3,
        metadata={
            "help": (
                "Models beside the target whose spread measures uncertainty (Adv-RM needs at least one; 3 or more)."
            )
        },
    )
    ensemble_subset: float = field(
        default=0.8,
        metadata={
            "help": ("Share of the pairs each ensemble member trains on (its own random subset); the target reads all.")
        },
    )
    epochs: float = field(
        default=0.0,
        metadata={"help": "Passes over the pairs (0: the head's default, 20 for token-surprise, 3 for last-token)."},
    )
    batch_size: int = field(default=32, metadata={"help": "Pairs per optimisation step."})
    learning_rate: float = field(
        default=0.0,
        metadata={
            "help": (
                "AdamW learning rate, linear decay after a 5% warm-up (0: the head's default, 3e-3 for token-"
                "surprise's few dozen parameters, 1e-4 for fine-tuning last-token's backbone)."
            )
        },
    )
    center_rewards: float = field(
        default=0.01,
        metadata={"help": "TRL's `center_rewards_coefficient`: keeps rewards near 0 so members share a scale."},
    )
    max_length: int = field(
        default=1024,
        metadata={"help": "Longest conversation a reward model reads (longer pairs are left out of training)."},
    )
    seed: int = field(default=0, metadata={"help": "The target's seed; ensemble member i uses seed + i."})

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"unknown reward head {self.head!r} (known: {', '.join(HEADS)})")
        if self.backbone_layers < 1 or self.ensemble_size < 1 or self.batch_size < 1 or self.max_length < 16:
            raise ValueError("backbone_layers, ensemble_size and batch_size must be at least 1, max_length at least 16")
        if not 0 < self.ensemble_subset <= 1:
            raise ValueError(f"ensemble_subset is a share in (0, 1], got {self.ensemble_subset}")
        if self.ensemble_backbone and self.head != TOKEN_SURPRISE:
            raise ValueError(f"ensemble_backbone is read by {TOKEN_SURPRISE} heads only (head is {self.head!r})")
        if self.epochs < 0 or self.learning_rate < 0 or self.center_rewards < 0:
            raise ValueError("epochs, learning_rate and center_rewards must not be negative (0: the head's default)")

    def training(self) -> tuple[float, float]:
        """(epochs, learning rate), the head's defaults where unset."""
        epochs, rate = (20.0, 3e-3) if self.head == TOKEN_SURPRISE else (3.0, 1e-4)
        return self.epochs or epochs, self.learning_rate or rate


@dataclass(frozen=True)
class Sample:
    """One graded answer of a policy to a question."""

    question: str
    answer: str  # the gold answer
    text: str  # the completion after the generation prompt
    gold: float  # 1: well formed and right


@dataclass(frozen=True)
class Pair:
    question: str
    chosen: str
    rejected: str
    source: str = "policy"  # or "adversarial round k"


def preference_pairs(samples: list[Sample], per_question: int, seed: int) -> list[Pair]:
    """Right-and-well-formed answers (chosen) against wrong-or-malformed ones (rejected) to the same question,
    at most `per_question` pairs each; every rejected answer is used before any is used twice.

    >>> s = lambda q, t, g: Sample(q, "1", t, g)
    >>> pairs = preference_pairs([s("a", "r1", 1), s("a", "w1", 0), s("a", "w2", 0), s("b", "r", 1)], 4, 0)
    >>> sorted((p.chosen, p.rejected) for p in pairs)
    [('r1', 'w1'), ('r1', 'w2')]
    """
    rng = random.Random(seed)
    by_question: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for sample in samples:
        by_question[sample.question][0 if sample.gold else 1].append(sample.text)
    pairs = []
    for question, (right, wrong) in by_question.items():
        if not right or not wrong:
            continue
        rng.shuffle(right), rng.shuffle(wrong)
        count = min(per_question, len(right) * len(wrong))
        combos = [(right[i % len(right)], wrong[i % len(wrong)]) for i in range(max(len(right), len(wrong)))]
        combos += [(r, w) for r in right for w in wrong if (r, w) not in combos]
        pairs += [Pair(question, chosen, rejected) for chosen, rejected in combos[:count]]
    return pairs


def pair_accuracy(ensemble: RewardEnsemble, pairs: list[Pair]) -> dict:
    """Held-out preference accuracy: how often each model scores chosen above rejected."""
    if not pairs:
        return {"target": None, "ensemble": [], "pairs": 0}
    chosen = ensemble.raw_rewards([ensemble.render_completion(p.question, p.chosen) for p in pairs])
    rejected = ensemble.raw_rewards([ensemble.render_completion(p.question, p.rejected) for p in pairs])
    wins = [statistics.fmean(c[m] > r[m] for c, r in zip(chosen, rejected)) for m in range(len(chosen[0]))]
    return {"target": wins[0], "ensemble": wins[1:], "pairs": len(pairs)}


# -- training -------------------------------------------------------------------------------------------------
def backbone(model_dir: Path, layers: int):
    """A one-logit sequence classifier on a causal LM's embedding and first `layers` layers (fp32)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir)
    if layers > config.num_hidden_layers:
        raise ValueError(f"backbone_layers={layers} but {model_dir} has only {config.num_hidden_layers} layers")
    overrides = {"num_hidden_layers": layers, "num_labels": 1}
    if getattr(config, "layer_types", None):
        overrides["layer_types"] = config.layer_types[:layers]
    from trl.trainer.reward_trainer import suppress_seqcls_warning

    with suppress_seqcls_warning():  # the LM head is left out and the score head is new: both expected
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32, **overrides)
    if model.config.pad_token_id is None:
        raise ValueError(f"{model_dir}: its config names no pad_token_id; the reward model needs one")
    return model


def training_device() -> str:
    """Where a token-surprise head's frozen backbone runs in training: the trainer moves the head to the GPU when
    there is one, but not the backbone, which is not one of its sub-modules."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def backbone_source(policy_dir: Path, settings: RewardModelSettings, tokenizer=None) -> Path:
    """The folder the reward models are cut from: `settings.backbone`, checked to read the policy's token ids
    the same way (the rewards endpoint renders with the policy's tokenizer), or else the policy."""
    return _checked_backbone(policy_dir, settings.backbone, tokenizer) if settings.backbone else Path(policy_dir)


def ensemble_source(policy_dir: Path, settings: RewardModelSettings, tokenizer=None) -> Path:
    """The folder the ensemble members read: `settings.ensemble_backbone` (checked alike), else the target's."""
    if settings.ensemble_backbone:
        return _checked_backbone(policy_dir, settings.ensemble_backbone, tokenizer, "ensemble")
    return backbone_source(policy_dir, settings, tokenizer)


def _checked_backbone(policy_dir: Path, folder: str, tokenizer=None, role: str = "reward-model") -> Path:
    from transformers import AutoTokenizer

    source = Path(folder)
    if not (source / "config.json").is_file():
        raise ValueError(f"{role} backbone {source}: not a model folder (no config.json)")
    tokenizer = tokenizer or AutoTokenizer.from_pretrained(policy_dir)
    try:
        theirs = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError):
        raise ValueError(f"{role} backbone {source}: no tokenizer to check against the policy's") from None
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise ValueError(
            f"{role} backbone {source}: its tokenizer is not the policy's; the reward models "
            "must read the policy's token ids"
        )
    return source


def train_member(
    backbone_dir: Path,
    tokenizer,
    pairs: list[Pair],
    out: Path,
    seed: int,
    settings: RewardModelSettings,
    think: tuple[str | None, str | None],
    log: Callable[[str], None],
    scratch: Path | None = None,
    frozen=None,
    feature_cache: dict | None = None,
) -> dict:
    """Train one reward model on `pairs` with RewardTrainer and save it (fp16) to `out`; skipped when done.
    The trainer's own files go to `scratch` (default: beside `out`). A token-surprise head reads `frozen` (the
    backbone already loaded; else it is loaded from `backbone_dir`) and keeps its features in `feature_cache`
    (shared by a round's members; else its own)."""
    if (out / DONE).exists():
        return json.loads((out / DONE).read_text())
    import torch
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    started = time.monotonic()
    rows = {
        "chosen_ids": [render_ids(tokenizer, _conversation(p.question, p.chosen), *think) for p in pairs],
        "rejected_ids": [render_ids(tokenizer, _conversation(p.question, p.rejected), *think) for p in pairs],
    }
    torch.manual_seed(seed)
    surprise = settings.head == TOKEN_SURPRISE
    if surprise:
        from probexit.rewards.heads import TokenSurpriseRewardModel, frozen_lm, head_config

        if frozen is None:
            frozen = frozen_lm(backbone_dir, training_device())
        model = TokenSurpriseRewardModel(head_config(tokenizer), frozen)
        model.cache_features(feature_cache)
    else:
        model = backbone(backbone_dir, settings.backbone_layers)
    epochs, learning_rate = settings.training()
    args = RewardConfig(
        output_dir=str(scratch or out.with_name(out.name + ".trainer")),
        num_train_epochs=epochs,
        per_device_train_batch_size=settings.batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0.05,
        seed=seed,
        center_rewards_coefficient=settings.center_rewards or None,
        max_length=settings.max_length,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        bf16=False,
        dataloader_pin_memory=False,
        disable_tqdm=True,
        gradient_checkpointing=not surprise,
    )  # the frozen backbone keeps no activations
    trainer = RewardTrainer(model=model, args=args, processing_class=tokenizer, train_dataset=Dataset.from_dict(rows))
    trainer.train()
    if surprise:
        model.save_head(out)
    else:
        model.to(torch.float16).save_pretrained(out)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    stats = {
        "pairs": len(pairs),
        "seed": seed,
        "steps": trainer.state.global_step,
        "final_loss": losses[-1] if losses else None,
        "train_s": round(time.monotonic() - started, 1),
    }
    (out / DONE).write_text(json.dumps(stats) + "\n")
    log(
        f"  reward model {out.name}: {stats['steps']} steps on {len(pairs)} pairs, loss {stats['final_loss']}, "
        f"{stats['train_s']} s"
    )
    return stats


def train_round(
    policy_dir: Path,
    pairs: list[Pair],
    calibration: list[Sample],
    out: Path,
    settings: RewardModelSettings,
    notes: dict,
    log: Callable[[str], None],
    name: str = "reward",
    ensemble_pairs: list[Pair] | None = None,
) -> RewardEnsemble:
    """Train a target on `pairs` and its ensemble on `ensemble_pairs` (default: the same pairs; each member a
    random share of them) into a servable reward folder at `out` (resumable per member), and calibrate every
    member on `calibration` (in-distribution answers: the policy's own)."""
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    source = backbone_source(policy_dir, settings, tokenizer)
    member_source = ensemble_source(policy_dir, settings, tokenizer)
    apart = member_source != source  # the ensemble reads its own LM
    tokenizer.save_pretrained(out / "tokenizer")
    markers = find_markers(tokenizer)
    think = (markers.start, markers.end) if markers is not None else (None, None)
    names = ["target"] + [f"member{i}" for i in range(1, settings.ensemble_size + 1)]
    surprise = settings.head == TOKEN_SURPRISE
    # token-surprise: each backbone stored once and loaded once, its features computed once per conversation
    # and shared by the heads that read it (the target; the members, which read `ensemble_backbone/` if apart)
    lms: dict[Path, tuple] = {}
    if surprise:
        import torch

        from probexit.rewards.heads import frozen_lm

        readers = (
            {source: ("backbone", names[:1]), member_source: ("ensemble_backbone", names[1:])}
            if apart
            else {source: ("backbone", names)}
        )
        for lm, (folder, members) in readers.items():
            if not (out / folder / "config.json").exists():
                frozen_lm(lm).to(torch.float16).save_pretrained(out / folder)
            pending = not all((out / member / DONE).exists() for member in members)  # loaded only if needed
            lms[lm] = (frozen_lm(lm, training_device()) if pending else None, {})
    cards = []
    for index, member in enumerate(tqdm(names, desc="reward models", leave=False)):
        seed, lm = settings.seed + index, source if index == 0 else member_source
        origin = (
            f"{lm} (frozen; token-surprise head)"
            if surprise
            else f"{lm} (embedding, layers 0-{settings.backbone_layers - 1}, norm)"
        )
        subset = (
            pairs
            if index == 0
            else _subset(pairs if ensemble_pairs is None else ensemble_pairs, settings.ensemble_subset, seed)
        )
        frozen, feature_cache = lms.get(lm, (None, {}))
        stats = train_member(
            lm,
            tokenizer,
            subset,
            out / member,
            seed,
            settings,
            think,
            log,
            out.parent / "trainer" / member,
            frozen,
            feature_cache,
        )
        cards.append(MemberCard(member, origin, seed=seed, data=f"{stats['pairs']} pairs ({_sources(subset)})"))
    manifest = RewardManifest(
        cards[0],
        tuple(cards[1:]),
        name=name,
        max_length=settings.max_length,
        think_start=think[0],
        think_end=think[1],
        notes=notes,
        head=settings.head,
        backbone="backbone" if surprise else None,
        ensemble_backbone="ensemble_backbone" if surprise and apart else None,
    )
    write_manifest(out, manifest)
    return calibrate(RewardEnsemble.load(out), calibration)


def calibrate(ensemble: RewardEnsemble, samples: list[Sample]) -> RewardEnsemble:
    """Set each member's mean/std from its rewards of `samples`, and the spread floor to the median ensemble
    std of those in-distribution answers (so that z is large only where members disagree unusually)."""
    raw = ensemble.raw_rewards([ensemble.render_completion(s.question, s.text) for s in samples])
    cards = [
        replace(card, mean=statistics.fmean(column), std=statistics.pstdev(column) or 1.0)
        for card, column in zip((ensemble.manifest.target, *ensemble.manifest.ensemble), zip(*raw))
    ]
    manifest = replace(ensemble.manifest, target=cards[0], ensemble=tuple(cards[1:]))
    spreads = [summarise(row, manifest).ensemble_std for row in raw]
    manifest = replace(manifest, spread_floor=max(statistics.median(spreads), 0.05))
    write_manifest(ensemble.folder, manifest)
    ensemble.manifest = manifest
    return ensemble


def _conversation(question: str, completion: str) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": completion}]


def _subset(pairs: list[Pair], share: float, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    return [pair for pair in pairs if rng.random() < share]


def _sources(pairs: list[Pair]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for pair in pairs:
        counts[pair.source] += 1
    return ", ".join(f"{n} {source}" for source, n in sorted(counts.items()))
