"""The probe runtime of one decode step, independent of any engine.

The engine adapter hands it, each step, the requests that asked for early exit (with live references to
their output token lists), the step's sampled-position hidden states and its logits. It advances each
request's boundary tracker over its new tokens, applies the request's exit rule at a boundary (scoring
all probe rows of the step in one kernel launch), forces `</think>` for the rows that exit, and returns
what happened so the API process can report it.

It runs inside every decode step, so it does as little as it can: a request's tokens are fed to its
tracker only when a token arrives that may end a chunk or open or close thinking (`may_decide`; the
others wait and are fed then, in one call, so the boundaries are the offline ones), and on a CPU engine the
boundary rows are scored from Python lists by the numpy path's `HostProbe`, without building tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from probexit.kernels.probe_score import resolve_backend, score_boundary_rows
from probexit.kernels.reference import float32_values
from probexit.probes.boundary import Boundary, BoundaryPolicy, BoundaryTracker
from probexit.probes.features import END_OF_THINKING, boundary_features
from probexit.probes.probe import Probe
from probexit.probes.rules import ExitSettings, answers_agree, same_answer


@dataclass(slots=True)  # slots: the decode step reads a few fields of every request, every step
class RequestState:
    rid: str
    settings: ExitSettings
    tracker: BoundaryTracker
    output_ids: list[int]  # the engine's live list of this request's output tokens
    fed: int = 0  # how many of output_ids the tracker has seen
    answers: list[str] = field(default_factory=list)
    chunk_min_logprob: float = 0.0  # lowest sampled-token log-probability since the last boundary
    boundary_confidence: float = 1.0  # the lowest token probability of the chunk the last boundary closed
    last_logprobs: torch.Tensor | None = None  # (V,) confidence rule: the previous step's distribution
    exited: bool = False
    would_exit: bool = False  # the rule has said exit (a shadow request goes on thinking all the same)
    max_tokens: int | None = None  # the request's limit: its record is complete before its last token
    complete: bool = False  # reported: no more evaluations can come (exited, or not thinking, or last token)
    last_token: bool = False  # this step's token is the request's last (max_tokens)
    # Whether the tracker may be fed only at tokens that can decide (see `BoundaryPolicy.may_decide`, and
    # `_budget_visit_at` for the budget). The confidence rule reads every token's probability.
    lazy: bool = field(init=False)
    # The output length from which a lazy request is visited even at a quiet token: its last token, or its
    # thinking budget reached by the tokens not fed yet (kept by `EarlyExitRuntime._catch_up`).
    visit_at: float = math.inf
    threshold32: float = field(init=False)  # the threshold as the kernels compare it, in float32

    def __post_init__(self) -> None:
        self.lazy = self.settings.rule != "confidence"
        self.threshold32 = float32_values([self.settings.threshold])[0]


@dataclass(frozen=True)
class Evaluation:
    """One boundary at which a request's rule was consulted."""

    rid: str
    boundary_index: int | None  # None for a budget exit, which needs no boundary
    token_index: int
    thinking_tokens: int
    score: float | None  # the probe's score (probe rule) or the chunk's lowest token probability (confidence)
    exit: bool  # the rule ends the thinking here (in shadow mode: would end it)
    hidden: list[float] | None = None  # record mode: the boundary's hidden state
    end_prob: float | None = None  # record mode: the model's own probability of `</think>` next
    answer: str | None = None  # the intermediate answer the boundary's chunk states (None: a budget exit)


class EarlyExitRuntime:
    def __init__(
        self, policy: BoundaryPolicy, probe: Probe | None, device: torch.device | str = "cpu", backend: str = "auto"
    ):
        self.policy = policy
        self.probe = probe
        self.weights = probe.weights.to(device=torch.device(device)) if probe else None
        self.backend = backend
        # On a CPU engine the rows are scored by the numpy path's HostProbe directly, from Python lists: the
        # tensors the dispatcher takes and returns would cost more than the math (see HostProbe).
        on_host = probe is not None and resolve_backend(backend, torch.empty(0, device=device)) == "numpy"
        self.host_probe = self.weights.host if on_host else None
        self.marks: list[tuple[str, bool]] = []

    def new_request(
        self,
        rid: str,
        settings: ExitSettings,
        prompt_ids: list[int] | None,
        output_ids: list[int],
        max_tokens: int | None = None,
    ) -> RequestState:
        """State for a request entering the batch. A request resumed after preemption brings output tokens:
        all but the last were already decided on; the last is the input of the coming step."""
        if settings.rule == "probe" and self.probe is None:
            raise ValueError("early_exit.rule 'probe' needs a probe, and this server was started without one")
        state = RequestState(rid, settings, self.policy.tracker(prompt_ids), output_ids, max_tokens=max_tokens)
        for token_id in output_ids[:-1]:
            self._advance(state, token_id)
        state.fed = max(0, len(output_ids) - 1)
        state.complete = bool(output_ids) and not state.tracker.thinking  # resumed after its thinking
        self._schedule_visit(state)
        return state

    def pop_marks(self) -> list[tuple[str, bool]]:
        """(rid, complete) for each request whose record became complete (True: no more evaluations can
        come) or was reopened (False: its thinking began again) since the last call, in order."""
        marks, self.marks = self.marks, []
        return marks

    def step(
        self, states: dict[int, RequestState], hidden: torch.Tensor | None, logits: torch.Tensor
    ) -> list[Evaluation]:
        """Decide for this step's rows; forces `</think>` in `logits` (in place) for the rows that exit."""
        evaluations: list[Evaluation] = []
        probe_rows: list[tuple[int, RequestState, Boundary]] = []
        budget_exits: list[int] = []
        confidence_rows: list[int] = []
        visited: list[int] = []  # only a row visited in this step can have decided in it
        may_decide = self.policy.may_decide
        n_tokens = len(may_decide)
        for row, state in states.items():
            quiet = False  # the newest token can neither end a chunk nor open or close thinking
            if state.lazy:
                output_ids = state.output_ids
                last = output_ids[-1] if output_ids else -1  # -1: none yet, or a placeholder
                quiet = last < 0 or (last < n_tokens and not may_decide[last])
                if quiet and len(output_ids) < state.visit_at:
                    continue  # the common case: nothing to do for this row in this step
            if state.exited:
                continue
            self._note_last_token(state)
            if state.settings.rule == "confidence":
                confidence_rows.append(row)
            elif quiet and len(state.output_ids) < self._budget_visit_at(state):
                continue  # its last token is coming, but it needs no catch-up: spend nothing on it
            visited.append(row)
            if self._visit(row, state, hidden, logits, evaluations, probe_rows):
                budget_exits.append(row)
        if probe_rows:
            evaluations += self._score(probe_rows, hidden, logits)
        self._exit(states, visited, budget_exits, logits)
        for row in confidence_rows:  # the rule needs each sampled token's probability, known only next step
            if not states[row].exited:
                states[row].last_logprobs = torch.log_softmax(logits[row].float(), dim=-1).cpu()
        return evaluations

    def _visit(
        self,
        row: int,
        state: RequestState,
        hidden: torch.Tensor | None,
        logits: torch.Tensor,
        evaluations: list[Evaluation],
        probe_rows: list[tuple[int, RequestState, Boundary]],
    ) -> bool:
        """Catch one row's tracker up; record its boundary, ask its text rule there (into `evaluations`) or queue
        it for the probe (`probe_rows`). True when the thinking budget ends it in this step."""
        caught_up = self._catch_up(state)
        if caught_up is None:
            return False  # an asynchronous-scheduling placeholder: the real token is not known yet
        if state.tracker.thinking == state.complete and not state.last_token:
            self._mark(state, not state.tracker.thinking)  # thinking ended, or began again
        if not state.tracker.thinking:
            return False
        boundary, at_last_token = caught_up
        # A boundary whose token is not this step's input has no hidden-state row here: never guess.
        readable = boundary if at_last_token else None
        if state.settings.record and readable is not None:
            recorded = self._record(state, readable, row, hidden, logits)
            evaluations += [recorded] if recorded is not None else []
        if self._over_budget(state):
            evaluations.append(Evaluation(state.rid, None, state.fed - 1, state.tracker.thinking_tokens, None, True))
            return True
        if readable is not None and self._consults(state):
            if state.settings.rule == "probe":
                probe_rows.append((row, state, readable))
            elif (evaluation := self._text_rule(state, readable)) is not None:
                evaluations.append(evaluation)
        return False

    def _exit(
        self, states: dict[int, RequestState], visited: list[int], budget_exits: list[int], logits: torch.Tensor
    ) -> None:
        """End the thinking of the rows the budget ends and of those whose rule decided to exit (not in shadow
        mode): `</think>` forced in their logits."""
        decided = [
            row
            for row in visited
            if (state := states[row]).would_exit
            and not state.settings.shadow
            and not state.exited
            and row not in budget_exits
        ]
        for row in budget_exits + decided:
            states[row].exited = True
            self._force_think_end(logits, row)
            if not states[row].complete:
                self._mark(states[row], True)

    def _note_last_token(self, state: RequestState) -> None:
        if not state.last_token and state.max_tokens is not None and len(state.output_ids) + 1 >= state.max_tokens:
            state.last_token = True  # this step samples the request's last token: nothing can follow
            if not state.complete:
                self._mark(state, True)

    @staticmethod
    def _budget_visit_at(state: RequestState) -> float:
        """The output length at which a lazy request's thinking budget is reached, counting the tokens not fed
        yet (all thinking tokens, since a marker would have been fed); infinite without a budget or outside the
        thinking."""
        budget = state.settings.budget
        if budget and state.tracker.thinking:
            return state.fed + budget - state.tracker.thinking_tokens
        return math.inf

    def _over_budget(self, state: RequestState) -> bool:
        budget = state.settings.budget
        return bool(budget) and state.tracker.thinking_tokens >= budget

    def _consults(self, state: RequestState) -> bool:
        """Whether the request's rule is asked at this boundary: never for `none` and `budget`, not before
        `min_thinking_tokens`, and after a shadow request's rule would have exited only for the probe (its other
        thresholds' exits come later)."""
        settings = state.settings
        if settings.rule in ("none", "budget") or state.tracker.thinking_tokens < settings.min_thinking_tokens:
            return False
        return not state.would_exit or (settings.shadow and settings.rule == "probe")

    # -- per request -------------------------------------------------------------------------------------
    def _mark(self, state: RequestState, complete: bool) -> None:
        state.complete = complete
        self.marks.append((state.rid, complete))

    def _catch_up(self, state: RequestState) -> tuple[Boundary | None, bool] | None:
        """Feed the tokens the tracker has not seen; return the last boundary and whether it is the last
        token, or None while the last token is still a placeholder."""
        output_ids, boundary, at_last = state.output_ids, None, False
        end = len(output_ids)
        if end and output_ids[end - 1] < 0:
            return None
        start = state.fed
        if state.lazy and end - start > 1 and state.tracker.feed_quiet(output_ids[start : end - 1]):
            start = end - 1  # the usual catch-up: quiet tokens, then the one that woke the request
        for position in range(start, end):
            found = self._advance(state, output_ids[position])
            if found is not None:
                boundary, at_last = found, position == end - 1
        state.fed = end
        self._schedule_visit(state)
        return boundary, at_last

    def _schedule_visit(self, state: RequestState) -> None:
        """When `step` must visit a lazy request whatever its newest token: its last token, or its budget."""
        last_token = state.max_tokens - 1 if state.max_tokens is not None else math.inf
        state.visit_at = min(last_token, self._budget_visit_at(state))

    def _advance(self, state: RequestState, token_id: int) -> Boundary | None:
        if state.last_logprobs is not None and 0 <= token_id < state.last_logprobs.shape[0]:
            state.chunk_min_logprob = min(state.chunk_min_logprob, float(state.last_logprobs[token_id]))
        boundary = state.tracker.feed(token_id)
        if boundary is not None:
            if boundary.answer is not None:  # a paragraph boundary may state none
                state.answers.append(boundary.answer)
            state.boundary_confidence, state.chunk_min_logprob = math.exp(state.chunk_min_logprob), 0.0
        return boundary

    def _record(self, state: RequestState, boundary: Boundary, row: int, hidden, logits) -> Evaluation | None:
        if hidden is None or hidden.shape[0] != logits.shape[0]:
            return None
        end_prob = self._end_prob(logits, row)
        return Evaluation(
            state.rid,
            boundary.boundary_index,
            boundary.token_index,
            boundary.thinking_tokens,
            None,
            False,
            hidden[row].float().cpu().tolist(),
            end_prob,
        )

    def _text_rule(self, state: RequestState, boundary: Boundary) -> Evaluation | None:
        """The text rules that read the chunk's answer skip a boundary that states none (the paragraph mode)."""
        settings = state.settings
        if boundary.answer is None and settings.rule != "confidence":
            return None
        score = None
        if settings.rule == "first":
            decision = True
        elif settings.rule == "consistency":
            decision = answers_agree(state.answers, settings.k)
        elif settings.rule == "oracle":
            decision = same_answer(boundary.answer, settings.answer)
        else:  # confidence
            score = state.boundary_confidence
            decision = score >= settings.threshold
        state.would_exit = state.would_exit or decision
        return Evaluation(
            state.rid,
            boundary.boundary_index,
            boundary.token_index,
            boundary.thinking_tokens,
            score,
            decision,
            answer=boundary.answer,
        )

    # -- per step ----------------------------------------------------------------------------------------
    def _end_prob(self, logits: torch.Tensor, row: int) -> float:
        """The model's own probability that thinking ends next, at this row (recorded, and a probe input)."""
        return self._end_probs(logits, [row])[0]

    def _end_probs(self, logits: torch.Tensor, rows: list[int]) -> list[float]:
        """`_end_prob` of several rows in one softmax (row by row the same numbers: the softmax is per row).
        Torch even on a CPU engine: the forward pass keeps torch's code warm and numpy's cold, and in the decode step
        this softmax costs about 70 µs in torch against 150 µs as the same sum in numpy."""
        picked = logits[rows[0] : rows[0] + 1] if len(rows) == 1 else logits[rows]
        return torch.softmax(picked.float(), dim=-1)[:, self.policy.think_end_id].tolist()

    def _features(self, probe_rows, logits: torch.Tensor) -> list[list[float]] | None:
        """Each probe row's inputs beside its hidden state, as the probe job computed them from recorded traces."""
        inputs = self.probe.config.inputs
        if not inputs:
            return None
        values = []
        end_probs = (
            self._end_probs(logits, [row for row, _, _ in probe_rows])
            if END_OF_THINKING in inputs
            else [None] * len(probe_rows)
        )
        for (_, state, boundary), end_prob in zip(probe_rows, end_probs):
            # the boundary's own answer, when one was read, is already the last of the request's answers
            previous = state.answers[:-1] if boundary.answer is not None else state.answers
            values.append(
                boundary_features(
                    inputs,
                    paragraph_index=boundary.paragraph_index,
                    boundary_index=boundary.boundary_index,
                    thinking_tokens=boundary.thinking_tokens,
                    answer=boundary.answer,
                    previous_answers=previous,
                    end_prob=end_prob,
                )
            )
        return values

    def _score(self, probe_rows, hidden: torch.Tensor | None, logits: torch.Tensor) -> list[Evaluation]:
        n_rows = logits.shape[0]
        if hidden is None or hidden.shape[0] != n_rows:
            return []  # the capture did not line up with the logits: never exit on a guess
        if hidden.shape[1] != self.weights.hidden_size:
            raise ValueError(
                f"the probe expects hidden size {self.weights.hidden_size}, "
                f"the engine's hidden states have {hidden.shape[1]}"
            )
        features = self._features(probe_rows, logits)
        if self.host_probe is not None:
            scores = self.host_probe.scores(hidden, [row for row, _, _ in probe_rows], features)
            decisions = [score >= state.threshold32 for score, (_, state, _) in zip(scores, probe_rows)]
        else:
            device = hidden.device
            rows = torch.tensor([row for row, _, _ in probe_rows], device=device)
            thresholds = torch.tensor(
                [state.settings.threshold for _, state, _ in probe_rows], dtype=torch.float32, device=device
            )
            extra = None
            if features is not None:
                extra = torch.tensor(features, dtype=torch.float32, device=device).reshape(len(probe_rows), -1)
            scores, decisions = (
                t.tolist()
                for t in score_boundary_rows(
                    hidden, rows, self.weights, thresholds, features=extra, backend=self.backend
                )
            )
        evaluations = []
        for (_, state, boundary), score, decision in zip(probe_rows, scores, decisions):
            evaluations.append(
                Evaluation(
                    state.rid,
                    boundary.boundary_index,
                    boundary.token_index,
                    boundary.thinking_tokens,
                    score,
                    bool(decision),
                    answer=boundary.answer,
                )
            )
            state.would_exit = state.would_exit or bool(decision)
        return evaluations

    def _force_think_end(self, logits: torch.Tensor, row: int) -> None:
        think_end = self.policy.think_end_id
        logits[row].fill_(-math.inf)
        logits[row, think_end] = 0.0
