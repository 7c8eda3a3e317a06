"""The token-surprise reward head: a reward read from a frozen language model's probabilities of the answer's tokens.

A sequence classifier reads its reward from the last token's state alone. Where a right and a wrong answer
differ in one slipped step (`49 - 10 = 49`), the sign is scattered over a few tokens, the digits that a
good model finds improbable, and a last-token reward model trained on a few hundred pairs does not learn
to gather it there (docs/training-advrm.md). This head reads it where it is: a frozen causal LM (the backbone)
gives, for every token of the answer, three features

    log p(token | everything before it)    how surprised the backbone is by the token
    entropy of that next-token distribution how sure it was of what should come there
    is the token a digit                    the tokens a slip changes, in arithmetic and maths

and a small MLP maps each token's features to a score; the reward is the sum over the answer's tokens (the
tokens after the last `marker_token_id`: the first token of the chat template's generation prompt, which
opens the assistant's turn). The head is trained with TRL's `RewardTrainer` like any reward model (its
forward returns one logit per sequence); only the head's parameters learn, so the members of an ensemble
share one backbone, stored once in the reward folder and run once per batch when scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

HEAD_CONFIG = "head.json"
HEAD_WEIGHTS = "head.safetensors"
N_FEATURES = 3


class TokenSurpriseConfig(PretrainedConfig):
    model_type = "probexit-token-surprise"

    def __init__(
        self,
        hidden: int = 16,
        marker_token_id: int | None = None,
        digit_token_ids: list[int] | None = None,
        vocab_size: int = 0,
        **kwargs,
    ):
        kwargs.setdefault("num_labels", 1)
        super().__init__(**kwargs)
        self.hidden, self.marker_token_id, self.vocab_size = hidden, marker_token_id, vocab_size
        self.digit_token_ids = list(digit_token_ids or [])


class TokenSurpriseRewardModel(PreTrainedModel):
    """One reward per sequence: the sum over the answer's tokens of MLP(log-prob, entropy, is-digit)."""

    config_class = TokenSurpriseConfig
    base_model_prefix = "head"

    def __init__(self, config: TokenSurpriseConfig, backbone=None):
        super().__init__(config)
        self.head = nn.Sequential(nn.Linear(N_FEATURES, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1))
        # every reward starts at 0: a sum over hundreds of tokens would otherwise start far off and swamp the loss
        nn.init.zeros_(self.head[-1].weight), nn.init.zeros_(self.head[-1].bias)
        digits = torch.zeros(config.vocab_size, dtype=torch.bool)
        digits[config.digit_token_ids] = True
        self.register_buffer("digit", digits, persistent=False)
        self._backbone = [backbone]  # in a list: not a sub-module, so it is neither trained nor saved with the head
        self._cache: dict[bytes, tuple[torch.Tensor, torch.Tensor]] | None = None

    def _init_weights(self, module):  # the initialisation is __init__'s
        pass

    @property
    def backbone(self):
        return self._backbone[0]

    def cache_features(self, cache: dict | None = None) -> None:
        """Keep each conversation's features once computed, in `cache` (shared by heads on the same backbone) or a
        new one. The backbone is frozen, so they never change: training pays for the backbone once per conversation
        (on 2 cores, ~27 s for the 584 pairs of the tiny world)."""
        self._cache = {} if cache is None else cache

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_
    ) -> SequenceClassifierOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        features, answer = self._features(input_ids, attention_mask)
        return SequenceClassifierOutput(logits=self.token_scores(features, answer).sum(1, keepdim=True))

    def _features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def compute():
            return token_features(self.backbone, input_ids, attention_mask, self.config.marker_token_id, self.digit)

        if self._cache is None:
            return compute()
        lengths = attention_mask.sum(1).tolist()
        keys = [row[:n].cpu().numpy().tobytes() for row, n in zip(input_ids, lengths)]
        if not all(key in self._cache for key in keys):
            features, answer = compute()  # causal and right-padded: a row's features do not depend on the batch
            for key, row_features, row_answer, n in zip(keys, features, answer, lengths):
                self._cache[key] = (row_features[:n].cpu().clone(), row_answer[:n].cpu().clone())  # host memory
        features, answer = torch.zeros(*input_ids.shape, N_FEATURES), torch.zeros(input_ids.shape)
        for row, (key, n) in enumerate(zip(keys, lengths)):
            features[row, :n], answer[row, :n] = self._cache[key]
        return features.to(input_ids.device), answer.to(input_ids.device)

    def token_scores(self, features: torch.Tensor, answer: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features and (B, T) answer mask -> (B, T) per-token scores, 0 outside the answer."""
        return self.head(features.to(self.head[0].weight.dtype))[..., 0] * answer

    # -- the head's own files (the backbone lives elsewhere in the reward folder) -------------------------------
    def save_head(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        (folder / HEAD_CONFIG).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        save_file(
            {name: value.detach().float().contiguous() for name, value in self.head.state_dict().items()},
            folder / HEAD_WEIGHTS,
        )

    @classmethod
    def load_head(cls, folder: Path, backbone=None) -> TokenSurpriseRewardModel:
        from safetensors.torch import load_file

        config = TokenSurpriseConfig.from_dict(json.loads((folder / HEAD_CONFIG).read_text()))
        model = cls(config, backbone)
        model.head.load_state_dict(load_file(folder / HEAD_WEIGHTS))
        return model.float().eval()


def frozen_lm(model_dir: Path, device: str = "cpu"):
    """The causal LM a head reads: fp32, eval mode, no gradients, on `device`."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval().requires_grad_(False).to(device)


def token_features(
    backbone, input_ids: torch.Tensor, attention_mask: torch.Tensor, marker_token_id: int | None, digit: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's view of each token: (B, T, 3) features [log-prob, entropy, is-digit] and the (B, T) mask of
    the answer's tokens (after the last marker, not padding). The backbone runs without gradients."""
    with torch.no_grad():  # the backbone may sit on another device than the head (it is not a sub-module)
        device = getattr(backbone, "device", input_ids.device)
        logits = backbone(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        logits = logits.float().to(input_ids.device)  # (B, T, V)
        log_probs = torch.log_softmax(logits[:, :-1], -1)  # position t predicts token t + 1
        token_log_prob = log_probs.gather(-1, input_ids[:, 1:, None])[..., 0]  # (B, T - 1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)  # (B, T - 1)
        zero = torch.zeros_like(token_log_prob[:, :1])
        features = torch.stack(
            [torch.cat([zero, token_log_prob], 1), torch.cat([zero, entropy], 1), digit[input_ids].float()], -1
        )  # (B, T, 3): the first token has no prediction
    return features, answer_mask(input_ids, attention_mask, marker_token_id)


def answer_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, marker_token_id: int | None) -> torch.Tensor:
    """1 on the tokens after the last `marker_token_id` of each row (all of them without a marker), 0 elsewhere
    and on padding.

    >>> answer_mask(torch.tensor([[5, 9, 1, 9, 2, 3, 0]]), torch.tensor([[1, 1, 1, 1, 1, 1, 0]]), 9).tolist()
    [[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0]]
    """
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    is_marker = (
        (input_ids == marker_token_id) & attention_mask.bool()
        if marker_token_id is not None
        else torch.zeros_like(input_ids, dtype=torch.bool)
    )
    last_marker = torch.where(is_marker, positions, -1).max(1, keepdim=True).values  # (B, 1)
    return ((positions > last_marker) & attention_mask.bool()).float()


def head_config(tokenizer, hidden: int = 16) -> TokenSurpriseConfig:
    """The head's settings read from the tokenizer: the turn-opening marker and the digit tokens."""
    with_prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=True
    )
    without = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}], tokenize=False, add_generation_prompt=False
    )
    opening = tokenizer.encode(
        with_prompt[len(without) :] if with_prompt.startswith(without) else "", add_special_tokens=False
    )
    digits = [
        index
        for token, index in tokenizer.get_vocab().items()
        if (text := tokenizer.convert_tokens_to_string([token]).strip()) and text.isdigit()
    ]
    return TokenSurpriseConfig(
        hidden=hidden,
        marker_token_id=opening[0] if opening else None,
        digit_token_ids=sorted(digits),
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
