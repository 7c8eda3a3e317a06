"""Schemas of `POST /v1/rewards`: one conversation (`messages`) or several (`conversations`), each ending
with the assistant's answer; per conversation the target reward model's reward and the ensemble's
uncertainty about it."""

from __future__ import annotations

import time
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from probexit.server.protocol import ChatMessage, OpenAIRequest

MAX_CONVERSATIONS = 64  # per request; a larger batch is a 400 naming the limit


class RewardRequest(OpenAIRequest):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 400 naming it, not silently ignored

    model: str | None = None
    messages: list[ChatMessage] | None = None
    conversations: list[list[ChatMessage]] | None = None


class RewardUncertainty(BaseModel):
    """How far the ensemble agrees with the target (rewards on the members' common, calibrated scale)."""

    ensemble_mean: float
    ensemble_std: float
    z: float  # (normalized_reward - ensemble_mean) / max(ensemble_std, the folder's spread floor)
    z_threshold: float
    out_of_distribution: bool  # z >= z_threshold: do not trust `reward` for this answer


class RewardData(BaseModel):
    object: Literal["reward"] = "reward"
    index: int
    reward: float  # the target reward model's raw reward (Bradley-Terry logit)
    normalized_reward: float  # the same, calibrated on in-distribution answers (mean 0, std 1)
    uncertainty: RewardUncertainty
    ensemble: list[float]  # the ensemble members' raw rewards


class RewardUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class RewardResponse(BaseModel):
    id: str = Field(default_factory=lambda: f"rwd-{uuid.uuid4().hex}")
    object: Literal["list"] = "list"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    data: list[RewardData]
    usage: RewardUsage
