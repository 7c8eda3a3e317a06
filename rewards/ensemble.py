"""The reward-model folder and its scoring: a target reward model and the ensemble that judges it.

One folder holds everything the rewards endpoint serves (and what `probexit train advrm` writes):

    reward/
      manifest.json       which member is the target, the ensemble, calibration, where each came from
      tokenizer/          the tokenizer and chat template every member reads
      target/ member1/ …  Hugging Face sequence-classification models (one logit), stored in fp16, or
                          with `head: "token-surprise"` the members' small heads (`probexit.rewards.heads`)
      backbone/           with that head only: the frozen causal LM whose token probabilities they all read
      ensemble_backbone/  optional, that head only: another LM the ensemble's heads read instead (the target
                          reads `backbone/`), so that the ensemble does not share the target's blind spots

A conversation is rendered one way only (`probexit.rewards.render`), for training and serving alike: the messages
before the answer through the chat template with its generation prompt, then the answer, then the
end-of-turn token. Scores are computed in fp32 with transformers under `torch.inference_mode`.

Each member's raw reward is put on a common scale with its calibration (mean and std of its rewards on
in-distribution answers). The target's normalised reward is then compared with the ensemble's:
`z = (target - ensemble mean) / max(ensemble std, spread_floor)`; a large z says the target likes an
answer the others do not, the sign of an out-of-distribution answer (Adv-RM, arXiv 2504.06141).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path

from probexit.rewards.manifest import TOKEN_SURPRISE, MemberCard, RewardManifest, RewardModelError, read_manifest
from probexit.rewards.render import render_ids


@dataclass
class RewardScore:
    """The scores of one conversation (normalised rewards share one scale across members)."""

    reward: float  # the target's raw reward
    normalised: float  # the target's calibrated reward
    ensemble_mean: float  # mean of the ensemble's calibrated rewards
    ensemble_std: float  # their standard deviation (n - 1)
    z: float  # (normalised - ensemble_mean) / max(ensemble_std, spread_floor)
    flagged: bool  # z >= z_threshold: the target's reward is not to be trusted
    members: list[float]  # the ensemble's raw rewards
    tokens: int  # length of the rendered conversation


def summarise(raw: list[float], manifest: RewardManifest, tokens: int = 0) -> RewardScore:
    """Raw rewards (target first, then the ensemble in manifest order) -> the served numbers.

    >>> m = RewardManifest(MemberCard("t", "x", 1.0, 2.0), (MemberCard("a", "x"), MemberCard("b", "x")),
    ...                    spread_floor=0.5)
    >>> s = summarise([5.0, 0.0, 1.0], m)
    >>> s.normalised, s.ensemble_mean, round(s.ensemble_std, 3), round(s.z, 3), s.flagged
    (2.0, 0.5, 0.707, 2.121, True)
    """
    cards = (manifest.target, *manifest.ensemble)
    normalised = [(value - card.mean) / card.std for value, card in zip(raw, cards)]
    others = normalised[1:]
    mean = sum(others) / len(others)
    std = math.sqrt(sum((x - mean) ** 2 for x in others) / (len(others) - 1)) if len(others) > 1 else 0.0
    z = (normalised[0] - mean) / max(std, manifest.spread_floor)
    return RewardScore(raw[0], normalised[0], mean, std, z, z >= manifest.z_threshold, list(raw[1:]), tokens)


class RewardEnsemble:
    """The loaded folder: `score(conversations)` for the endpoint, `score_texts` for training jobs."""

    def __init__(
        self, folder: Path, manifest: RewardManifest, tokenizer, models: list, backbone=None, ensemble_backbone=None
    ):
        self.folder, self.manifest, self.tokenizer, self.models = folder, manifest, tokenizer, models
        self.backbone = backbone  # TOKEN_SURPRISE: the LM the heads read, run once per batch
        # the ensemble's heads read another LM when the folder has one (run once per batch too): members that
        # read the target's own features tend to agree with it where it is wrong
        self.ensemble_backbone = ensemble_backbone if ensemble_backbone is not None else backbone
        self.pad_id = models[0].config.pad_token_id
        self._lock = threading.Lock()  # one batch at a time: torch already uses every core

    @classmethod
    def load(cls, folder: str | Path) -> RewardEnsemble:
        """Load and check a folder; any problem is one RewardModelError naming it."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        tokenizer = _load_tokenizer(folder / manifest.tokenizer)
        cards = (manifest.target, *manifest.ensemble)
        backbone = others = None
        if manifest.head == TOKEN_SURPRISE:
            backbone = _load_backbone(folder, manifest.backbone, len(tokenizer))
            others = (
                _load_backbone(folder, manifest.ensemble_backbone, len(tokenizer))
                if manifest.ensemble_backbone
                else backbone
            )
            models = [_load_head(folder, manifest.target, backbone)] + [
                _load_head(folder, card, others) for card in manifest.ensemble
            ]
            reads = {(m.config.marker_token_id, tuple(m.config.digit_token_ids), m.config.vocab_size) for m in models}
            if len(reads) != 1 or next(iter(reads))[2] < len(tokenizer):  # the backbone's features are shared
                raise RewardModelError(
                    f"{folder}: every head must read the reward tokenizer's tokens the same way "
                    "(same marker, digits and vocabulary)"
                )
        else:
            models = [_load_member(folder, card, len(tokenizer)) for card in cards]
        pads = {model.config.pad_token_id for model in models}
        if len(pads) != 1 or None in pads or pads == {tokenizer.eos_token_id}:
            raise RewardModelError(
                f"{folder}: every member needs the same pad_token_id, other than the end-of-turn "
                f"token (found {sorted(map(str, pads))})"
            )
        return cls(folder, manifest, tokenizer, models, backbone, others)

    # -- rendering ------------------------------------------------------------------------------------------
    def render_ids(self, messages: list[dict]) -> list[int]:
        return render_ids(self.tokenizer, messages, self.manifest.think_start, self.manifest.think_end)

    def render_completion(self, question: str, completion: str) -> list[int]:
        return render_ids(
            self.tokenizer,
            [{"role": "user", "content": question}, {"role": "assistant", "content": completion}],
            self.manifest.think_start,
            self.manifest.think_end,
        )

    # -- scoring --------------------------------------------------------------------------------------------
    def raw_rewards(self, batch: list[list[int]], batch_size: int = 32) -> list[list[float]]:
        """Raw rewards per conversation: [target, member1, ...], in batches of `batch_size`."""
        import torch

        rows: list[list[float]] = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(batch), batch_size):
                chunk = batch[start : start + batch_size]
                width = max(len(ids) for ids in chunk)
                input_ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)  # (B, T)
                mask = torch.zeros_like(input_ids)
                for row, ids in enumerate(chunk):
                    input_ids[row, : len(ids)], mask[row, : len(ids)] = torch.tensor(ids), 1
                scores = self._member_scores(input_ids, mask)  # M x (B,)
                rows.extend(torch.stack(scores, 1).tolist())
        return rows

    def _member_scores(self, input_ids, mask) -> list:
        if self.backbone is None:  # each model reads its reward at the row's last token that is not padding
            return [model(input_ids=input_ids, attention_mask=mask).logits[:, 0].float() for model in self.models]
        from probexit.rewards.heads import token_features

        first = self.models[0]  # the heads read the tokens alike (checked at load): each backbone runs once
        read = lambda lm: token_features(lm, input_ids, mask, first.config.marker_token_id, first.digit)  # noqa: E731
        features, answer = read(self.backbone)
        scores = [first.token_scores(features, answer).sum(1)]
        if self.ensemble_backbone is not self.backbone:
            features, answer = read(self.ensemble_backbone)
        return scores + [model.token_scores(features, answer).sum(1) for model in self.models[1:]]

    def score_ids(self, batch: list[list[int]]) -> list[RewardScore]:
        too_long = [i for i, ids in enumerate(batch) if len(ids) > self.manifest.max_length]
        if too_long:
            raise ValueError(
                f"conversation {too_long[0]} has {len(batch[too_long[0]])} tokens; the reward model "
                f"reads at most {self.manifest.max_length}"
            )
        return [summarise(raw, self.manifest, len(ids)) for raw, ids in zip(self.raw_rewards(batch), batch)]

    def score(self, conversations: list[list[dict]]) -> list[RewardScore]:
        return self.score_ids([self.render_ids(messages) for messages in conversations])

    def score_texts(self, questions: list[str], completions: list[str]) -> list[RewardScore]:
        """Policy completions, as training jobs have them (too-long ones are cut to the model's length)."""
        ids = [self.render_completion(q, c)[: self.manifest.max_length] for q, c in zip(questions, completions)]
        return self.score_ids(ids)


def _load_tokenizer(path: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:
        raise RewardModelError(f"cannot load the reward tokenizer at {path}: {' '.join(str(error).split())}") from None
    if tokenizer.chat_template is None or tokenizer.eos_token_id is None:
        raise RewardModelError(f"the reward tokenizer at {path} needs a chat template and an end-of-turn token")
    return tokenizer


def _load_backbone(folder: Path, name: str, vocab: int):
    from probexit.rewards.heads import frozen_lm

    path = folder / name
    try:
        model = frozen_lm(path)
    except Exception as error:  # as in _load_member: every failure is one line naming the folder
        raise RewardModelError(
            f"cannot load the reward backbone {path}: {' '.join(str(error).split())[:300]}"
        ) from None
    if model.get_input_embeddings().num_embeddings < vocab:
        raise RewardModelError(
            f"{path} embeds {model.get_input_embeddings().num_embeddings} tokens but its "
            f"tokenizer has {vocab}: the backbone and tokenizer do not belong together"
        )
    return model


def _load_head(folder: Path, card: MemberCard, backbone):
    from probexit.rewards.heads import TokenSurpriseRewardModel

    path = folder / card.path
    try:
        return TokenSurpriseRewardModel.load_head(path, backbone)
    except Exception as error:
        raise RewardModelError(f"cannot load reward head {path}: {' '.join(str(error).split())[:300]}") from None


def _load_member(folder: Path, card: MemberCard, vocab: int):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = folder / card.path
    try:
        config = AutoConfig.from_pretrained(path)
        if config.num_labels != 1:  # checked first: loading would fail on the head's shape, less clearly
            raise RewardModelError(f"{path} has {config.num_labels} outputs; a reward model has one")
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=torch.float32)
    except RewardModelError:
        raise
    except Exception as error:  # missing files, corrupt safetensors, unknown architectures: all one line
        raise RewardModelError(f"cannot load reward model {path}: {' '.join(str(error).split())[:300]}") from None
    if model.get_input_embeddings().num_embeddings < vocab:
        raise RewardModelError(
            f"{path} embeds {model.get_input_embeddings().num_embeddings} tokens but its "
            f"tokenizer has {vocab}: the model and tokenizer do not belong together"
        )
    return model.eval()
