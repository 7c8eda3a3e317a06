"""The generation core that chat and completion requests share.

`plan` turns a validated request and its tokenized prompts into engine requests: one per choice
(`n` is fanned out here, not by vLLM, because vLLM's children share one `extra_args` dict and each
choice needs its own early-exit id), each with its own seed (`seed + i`). `run` submits them, merges
their outputs, splits reasoning from answer, attaches the early-exit report when a choice finishes, and
aborts whatever is unfinished the moment the caller goes away (a disconnect cancels it).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from probexit.engine.client import token_prompt
from probexit.engine.events import EventCollector, RequestRecord
from probexit.engine.requests import sampling_params
from probexit.engine.setup import EngineSetup
from probexit.engine.structured import generate_options
from probexit.probes.rules import ExitSettings
from probexit.server import early_exit
from probexit.server.answer_format import NO_FORM, AnswerPlan
from probexit.server.errors import APIError
from probexit.server.metrics import ServerMetrics
from probexit.server.protocol import CompletionTokensDetails, EarlyExitReport, SamplingRequest, Usage
from probexit.server.reasoning import ReasoningSplitter

# Sampling fields a request may leave out; the model's generation config, then these, fill them in.
# Choices (prompts x n) per request: each is an engine request and its bookkeeping; OpenAI caps a prompt
# list at 2048 entries as well.
MAX_CHOICES = 2048
SAMPLING_FALLBACKS = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
}


@dataclass
class Choice:
    """One choice of a response: one engine request."""

    index: int
    engine_id: str
    splitter: ReasoningSplitter
    params: object  # vllm.SamplingParams
    prompt_ids: list[int]
    engine_options: dict = field(default_factory=dict)  # keyword arguments of the engine's generate
    tokens: int = 0
    content: str = ""  # the answer so far, kept for a shadow choice only (its outcome compares answers)
    text_length: int = 0  # characters streamed so far (completions' logprobs count offsets from the start)
    finish_reason: str | None = None
    done: bool = False
    report: EarlyExitReport | None = None


@dataclass
class GenerationJob:
    """One HTTP request's engine work."""

    request_id: str
    model: str
    settings: ExitSettings | None
    prompt_tokens: int
    answer: AnswerPlan = NO_FORM  # the form asked of each choice's answer
    choices: list[Choice] = field(default_factory=list)
    closed_by: APIError | None = None  # set when the server ends it early (shutting down)

    def usage(self) -> Usage:
        completion = sum(choice.tokens for choice in self.choices)
        reasoning = sum(choice.splitter.reasoning_tokens for choice in self.choices)
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion,
            total_tokens=self.prompt_tokens + completion,
            completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
        )


@dataclass(frozen=True)
class Delta:
    """What one engine output added to one choice (the whole choice when not streaming)."""

    choice: Choice
    text: str  # as the engine detokenized it, markers included
    reasoning: str
    content: str
    token_ids: list[int]
    logprobs: list | None  # per token: the engine's {token id: Logprob} (None: not asked for)
    content_ids: list[int] = field(default_factory=list)  # the answer's tokens among token_ids


@dataclass
class Joined:
    """A choice's whole output."""

    text: str = ""
    reasoning: str = ""
    content: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list | None = None


class GenerationCore:
    def __init__(
        self,
        engine,
        collector: EventCollector,
        metrics: ServerMetrics,
        setup: EngineSetup,
        exit_defaults: early_exit.ExitDefaults,
        model_name: str,
    ):
        self.engine, self.collector, self.metrics = engine, collector, metrics
        self.setup, self.exit_defaults, self.model_name = setup, exit_defaults, model_name
        self._background: set[asyncio.Task] = set()  # aborts in flight (a reference keeps them alive)
        self._running: dict[str, GenerationJob] = {}  # by request id
        self.closed_by: APIError | None = None  # once set, new requests get it and running ones end with it

    @property
    def tokenizer(self):
        return self.engine.get_tokenizer()

    # -- planning: every check that can fail happens here, before a streamed response starts -------------
    def plan(
        self,
        request: SamplingRequest,
        prompts: list[list[int]],
        max_tokens: int | None,
        *,
        id_prefix: str,
        prompt_field: str,
        logprobs: int | None = None,
        effort: str | None = None,
        answer: AnswerPlan = NO_FORM,
        limit_field: str | None = None,
    ) -> GenerationJob:
        """The engine requests of one HTTP request; `logprobs`: how many alternatives each token reports (None:
        no log-probabilities), `effort`: its reasoning_effort, `answer`: the form asked of the answer (a response
        format, tool calls), `limit_field`: the request's name for `max_tokens` (None: the chat and completion
        APIs' names)."""
        if len(prompts) * request.n > MAX_CHOICES:
            field = "n" if request.n > 1 else prompt_field
            raise APIError(
                400,
                f"{field}: {len(prompts)} prompt(s) x n={request.n} make {len(prompts) * request.n} "
                f"choices; at most {MAX_CHOICES} per request",
                param=field,
            )
        self._check_max_tokens(request, max_tokens, limit_field)
        settings = early_exit.resolve(
            request.early_exit, self.exit_defaults, effort=effort, thinking_budget=request.thinking_token_budget
        )
        job = GenerationJob(
            f"{id_prefix}-{uuid.uuid4().hex}", self.model_name, settings, sum(len(prompt) for prompt in prompts), answer
        )
        for prompt_index, prompt_ids in enumerate(prompts):
            limit = self._max_tokens(len(prompt_ids), max_tokens, prompt_field)
            if request.thinking_token_budget is not None and request.thinking_token_budget >= limit:
                raise APIError(
                    400,
                    f"thinking_token_budget: {request.thinking_token_budget} thinking tokens leave no "
                    f"room for the answer within the {limit} completion tokens this request may use "
                    "(max_tokens, or the context left after the prompt); lower the budget or raise "
                    "max_tokens",
                    param="thinking_token_budget",
                )
            for sample in range(request.n):
                index = prompt_index * request.n + sample
                engine_id = f"{job.request_id}-{index}"
                seed = None if request.seed is None else request.seed + sample
                params = self._sampling_params(request, limit, seed, engine_id, settings, logprobs, answer)
                splitter = ReasoningSplitter(self.setup.markers, prompt_ids)
                options = generate_options(self.setup, params)
                job.choices.append(Choice(index, engine_id, splitter, params, prompt_ids, options))
        return job

    def _check_max_tokens(self, request: SamplingRequest, max_tokens: int | None, field: str | None) -> None:
        """A limit that no prompt could leave room for is a mistake; one that merely exceeds the room a
        prompt leaves is cut to that room below, as vLLM's server does."""
        if max_tokens is not None and max_tokens > self.setup.max_model_len:
            if field is None:
                field = "max_completion_tokens" if getattr(request, "max_completion_tokens", None) else "max_tokens"
            raise APIError(
                400,
                f"{field}: {max_tokens} is more than this model's context of {self.setup.max_model_len} tokens",
                param=field,
                code="context_length_exceeded",
            )

    def _max_tokens(self, prompt_length: int, requested: int | None, prompt_field: str) -> int:
        if prompt_length == 0:
            raise APIError(400, f"{prompt_field}: the prompt is empty", param=prompt_field)
        room = self.setup.max_model_len - prompt_length
        if room < 1:
            raise APIError(
                400,
                f"{prompt_field}: the prompt has {prompt_length} tokens, which leaves no room in "
                f"this model's context of {self.setup.max_model_len}",
                param=prompt_field,
                code="context_length_exceeded",
            )
        wanted = requested if requested is not None else self.setup.default_sampling.get("max_tokens", room)
        return min(wanted, room)  # as vLLM's server: a request never fails for asking too much

    def _sampling_params(
        self,
        request: SamplingRequest,
        max_tokens: int,
        seed: int | None,
        engine_id: str,
        settings: ExitSettings | None,
        logprobs: int | None,
        answer: AnswerPlan,
    ):
        defaults = self.setup.default_sampling
        values = {
            name: value if (value := getattr(request, name)) is not None else defaults.get(name, fallback)
            for name, fallback in SAMPLING_FALLBACKS.items()
        }
        if values["top_p"] == 0:  # OpenAI accepts it: the smallest nucleus holds the most likely token alone
            values.update(temperature=0.0, top_p=1.0)
        markers = self.setup.markers
        try:
            return sampling_params(
                rid=engine_id,
                settings=settings,
                **values,
                max_tokens=max_tokens,
                min_tokens=request.min_tokens,
                stop=request.stop,
                seed=seed,
                ignore_eos=request.ignore_eos,
                logprobs=logprobs,
                logit_bias=self._logit_bias(request.logit_bias),
                # a marker the tokenizer calls special would vanish from the text, and the split needs it
                skip_special_tokens=answer.skip_special_tokens and not (markers is not None and markers.special),
                structured_outputs=answer.constraint,
                stream=request.stream,
            )
        except (ValueError, TypeError) as error:
            raise APIError(400, str(error)) from error

    def _logit_bias(self, bias: dict[str, float] | None) -> dict[int, float] | None:
        """OpenAI's logit_bias (token ids as text, biases in [-100, 100]) for the engine."""
        if not bias:
            return None
        try:
            parsed = {int(token): float(value) for token, value in bias.items()}
        except ValueError:
            raise APIError(400, "logit_bias: keys must be token ids", param="logit_bias") from None
        if any(not 0 <= token < self.setup.vocab_size or not -100 <= value <= 100 for token, value in parsed.items()):
            raise APIError(
                400,
                f"logit_bias: token ids lie in [0, {self.setup.vocab_size}) and biases in [-100, 100]",
                param="logit_bias",
            )
        return parsed

    # -- running ---------------------------------------------------------------------------------------------
    async def collect(self, job: GenerationJob) -> dict[int, Joined]:
        """Runs to the end (not streaming); each choice's output by index."""
        joined = {choice.index: Joined() for choice in job.choices}
        async for delta in self.run(job):
            whole = joined[delta.choice.index]
            whole.text, whole.reasoning, whole.content = (
                whole.text + delta.text,
                whole.reasoning + delta.reasoning,
                whole.content + delta.content,
            )
            whole.token_ids += delta.token_ids
            if delta.logprobs is not None:
                whole.logprobs = (whole.logprobs or []) + delta.logprobs
        return joined

    async def run(self, job: GenerationJob) -> AsyncIterator[Delta]:
        """Yields deltas as the engine produces them; the last delta of each choice has `choice.done`."""
        for choice in job.choices:
            if job.settings is not None:
                self.collector.expect(choice.engine_id)
                self.metrics.track(choice.engine_id, job.settings.rule, job.settings.shadow)
        if self.closed_by is not None:
            raise self.closed_by
        self._running[job.request_id] = job
        merged = _merge(
            [
                self.engine.generate(
                    token_prompt(choice.prompt_ids), choice.params, choice.engine_id, **choice.engine_options
                )
                for choice in job.choices
            ]
        )
        outcome: str | None = "aborted"
        try:
            async for index, output in merged:
                if job.closed_by is not None:  # its engine requests were aborted under it
                    raise job.closed_by
                choice, record = job.choices[index], None
                if output.finished and job.settings is not None:
                    record = await self.collector.collect_async(choice.engine_id)  # finished now
                yield self._delta(job, choice, output, record)
            outcome = "success"
        except Exception:
            outcome = None  # counted by the error mapping, which also answers the client
            raise
        finally:
            self._running.pop(job.request_id, None)
            self._finish(job, outcome)  # first, and synchronously: the abort must not wait
            await merged.aclose()

    def close(self, error: APIError) -> None:
        """Ends every running job with `error` (each client gets it: an error event in a stream, the
        status otherwise) and refuses new ones; used when the server shuts down and its grace time is over."""
        self.closed_by = error
        for job in list(self._running.values()):
            job.closed_by = error
            self._abort([choice.engine_id for choice in job.choices if not choice.done])

    def _delta(self, job: GenerationJob, choice: Choice, output, record: RequestRecord | None) -> Delta:
        completion = output.outputs[0]
        reasoning, content = choice.splitter.feed(completion.token_ids, completion.text, final=output.finished)
        choice.tokens += len(completion.token_ids)  # new ids when streaming, all of them otherwise
        shadow = job.settings is not None and job.settings.shadow
        if shadow:
            choice.content += content
        if output.finished:
            choice.done, choice.finish_reason = True, completion.finish_reason
            cut = completion.finish_reason == "length" and choice.splitter.thinking
            reasoning_tokens = choice.splitter.reasoning_tokens
            outcomes = (
                early_exit.shadow_outcomes(job.settings, record or RequestRecord(), reasoning_tokens, choice.content)
                if shadow
                else []
            )
            choice.report = early_exit.report(
                job.settings, record, reasoning_tokens, cut_while_thinking=cut, shadow=outcomes[0] if outcomes else None
            )
            self.metrics.choice_done(reasoning_tokens)
            if outcomes:
                self.metrics.shadow_done(reasoning_tokens, outcomes)
        logprobs = list(completion.logprobs) if completion.logprobs is not None else None
        return Delta(
            choice,
            completion.text,
            reasoning,
            content,
            list(completion.token_ids),
            logprobs,
            choice.splitter.content_ids,
        )

    def _finish(self, job: GenerationJob, outcome: str | None) -> None:
        """Synchronous on purpose: it runs while the request's task is being cancelled, where an await
        could itself be cancelled before the engine heard of the abort."""
        self._abort([choice.engine_id for choice in job.choices if not choice.done])
        for choice in job.choices:
            self.collector.forget(choice.engine_id)
            self.metrics.untrack(choice.engine_id)
        if outcome is not None:
            self.metrics.request_done(outcome)

    def _abort(self, engine_ids: list[str]) -> None:
        if engine_ids:
            task = asyncio.get_running_loop().create_task(self.engine.abort(engine_ids))
            self._background.add(task)
            task.add_done_callback(self._background.discard)


async def _merge(streams: list) -> AsyncIterator[tuple[int, object]]:
    """(stream index, item) from several async iterators, as items arrive. One stream is iterated
    directly (no task, no queue: the common case stays as fast as vLLM's own server)."""
    if len(streams) == 1:
        try:
            async for item in streams[0]:
                yield 0, item
        finally:
            await streams[0].aclose()
        return
    queue: asyncio.Queue = asyncio.Queue()
    finished = object()

    async def pump(index: int, stream) -> None:
        try:
            async for item in stream:
                queue.put_nowait((index, item, None))
            queue.put_nowait((index, finished, None))
        except Exception as error:  # handed to the consumer, which raises it
            queue.put_nowait((index, None, error))

    tasks = [asyncio.create_task(pump(index, stream)) for index, stream in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, item, error = await queue.get()
            if error is not None:
                raise error
            if item is finished:
                remaining -= 1
                continue
            yield index, item
    finally:
        for task in tasks:
            task.cancel()  # each stream's own cancellation handling aborts its engine request
