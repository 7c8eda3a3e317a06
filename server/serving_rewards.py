"""`/v1/rewards`: score conversations with the reward-model folder loaded at start-up.

Scoring runs in the API process with transformers, in a worker thread so that the event loop keeps
serving (the reward models of the tiny world are a few MB; see docs/serving.md for when a vLLM pooling engine
is the better home for one). Every problem with the input is a 400 that names the field.
"""

from __future__ import annotations

import asyncio

from probexit.engine.config import ConfigError
from probexit.rewards.ensemble import RewardEnsemble
from probexit.rewards.manifest import RewardModelError
from probexit.server.config import ServerConfig
from probexit.server.errors import APIError
from probexit.server.messages import template_messages
from probexit.server.protocol import ChatMessage
from probexit.server.protocol_rewards import (
    MAX_CONVERSATIONS,
    RewardData,
    RewardRequest,
    RewardResponse,
    RewardUncertainty,
    RewardUsage,
)


class ServingRewards:
    """Scores conversations with the reward-model folder loaded at start-up (None: the endpoint answers 404)."""

    def __init__(self, ensemble: RewardEnsemble | None, served_model_name: str):
        self.ensemble, self.served_model_name = ensemble, served_model_name

    @classmethod
    def load(cls, config: ServerConfig) -> ServingRewards:
        """The folder of `--reward-model`, loaded and checked before the port opens."""
        if config.reward_model is None:
            return cls(None, config.served_model_name)
        try:
            return cls(RewardEnsemble.load(config.reward_model), config.served_model_name)
        except RewardModelError as error:
            raise ConfigError(f"--reward-model: {error}") from None

    async def handle(self, request: RewardRequest) -> RewardResponse:
        ensemble = self.ensemble
        if ensemble is None:
            raise APIError(
                404,
                "this server has no reward model; start it with --reward-model FOLDER",
                code="reward_model_not_loaded",
            )
        if request.model is not None and request.model not in (ensemble.manifest.name, self.served_model_name):
            raise APIError(
                404,
                f"The model `{request.model}` does not exist; this server scores with `{ensemble.manifest.name}`.",
                param="model",
                code="model_not_found",
            )
        batch = [_render(ensemble, messages, where) for messages, where in _conversations(request)]
        scores = await asyncio.to_thread(ensemble.score_ids, batch)
        threshold = ensemble.manifest.z_threshold
        data = [
            RewardData(
                index=index,
                reward=s.reward,
                normalized_reward=s.normalised,
                ensemble=s.members,
                uncertainty=RewardUncertainty(
                    ensemble_mean=s.ensemble_mean,
                    ensemble_std=s.ensemble_std,
                    z=s.z,
                    z_threshold=threshold,
                    out_of_distribution=s.flagged,
                ),
            )
            for index, s in enumerate(scores)
        ]
        tokens = sum(len(ids) for ids in batch)
        return RewardResponse(
            model=ensemble.manifest.name, data=data, usage=RewardUsage(prompt_tokens=tokens, total_tokens=tokens)
        )


def _conversations(request: RewardRequest) -> list[tuple[list[ChatMessage], str]]:
    """The conversations with the request path of each (for error messages)."""
    if (request.messages is None) == (request.conversations is None):
        raise APIError(
            400, "give either `messages` (one conversation) or `conversations` (a list of them)", param="messages"
        )
    if request.messages is not None:
        return [(request.messages, "messages")]
    if not request.conversations or len(request.conversations) > MAX_CONVERSATIONS:
        raise APIError(
            400,
            f"conversations: give 1 to {MAX_CONVERSATIONS} conversations, got {len(request.conversations)}",
            param="conversations",
        )
    return [(messages, f"conversations.{i}") for i, messages in enumerate(request.conversations)]


def _render(ensemble: RewardEnsemble, messages: list[ChatMessage], where: str) -> list[int]:
    if len(messages) < 2 or messages[-1].role != "assistant":
        raise APIError(
            400,
            f"{where}: a conversation is at least one message and then the assistant's answer "
            "(the last message, role `assistant`)",
            param=where,
        )
    plain = template_messages(messages, where)
    try:
        ids = ensemble.render_ids(plain)
    except Exception as error:  # jinja's TemplateError, a template's raise_exception
        raise APIError(400, f"{where}: the reward model's chat template refused it: {error}", param=where) from None
    if len(ids) > ensemble.manifest.max_length:
        raise APIError(
            400,
            f"{where}: {len(ids)} tokens; the reward model reads at most {ensemble.manifest.max_length}",
            param=where,
            code="context_length_exceeded",
        )
    return ids
