"""probexit's Prometheus metrics, in vLLM's style (`probexit:` prefix, a `model_name` label).

They live in a registry owned by the app (no module globals), and `/metrics` renders it followed by the
engine's own registry, so one scrape sees both. Evaluations and step timings arrive on the event
collector's thread; prometheus_client's metrics are thread-safe.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from probexit.engine.channel import REJECTION_REASONS
from probexit.probes.runtime import Evaluation

OUTCOMES = ("success", "aborted", "rejected", "error")
THINKING_TOKEN_BUCKETS = (0, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))
STEP_SECONDS_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


class ServerMetrics:
    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        self.model_name = model_name
        self._rules: dict[str, str] = {}  # engine request id -> rule, for labelling evaluations
        self._lock = threading.Lock()
        labels = ["model_name"]
        self.requests = Counter(
            "probexit:requests",
            "Generation requests by outcome (success, aborted by the client, rejected as invalid, error).",
            labels + ["outcome"],
            registry=self.registry,
        )
        self.evaluations = Counter(
            "probexit:probe_evaluations",
            "Boundaries at which an exit rule was consulted.",
            labels + ["rule", "decision"],
            registry=self.registry,
        )
        self.early_exits = Counter(
            "probexit:early_exits",
            "Choices whose thinking an exit rule ended.",
            labels + ["rule"],
            registry=self.registry,
        )
        self.thinking_tokens = Histogram(
            "probexit:thinking_tokens",
            "Thinking tokens per choice.",
            labels,
            buckets=THINKING_TOKEN_BUCKETS,
            registry=self.registry,
        )
        self.probe_score = Histogram(
            "probexit:probe_score", "Probe scores at boundaries.", labels, buckets=SCORE_BUCKETS, registry=self.registry
        )
        self.probe_step_seconds = Histogram(
            "probexit:probe_step_seconds",
            "Early-exit work per decode step (boundary tracking, probe kernel, forcing).",
            labels,
            buckets=STEP_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.channel_rejections = Counter(
            "probexit:event_channel_rejected",
            "What the decision channel from the engine's workers turned away, by reason: a connection that is not a "
            "client of this server (handshake), a client key that is not its workers' (unknown_key), a message that "
            "is not a report (malformed). Nothing rejected is applied.",
            labels + ["reason"],
            registry=self.registry,
        )
        self._shadow_metrics(labels)
        for outcome in OUTCOMES:  # exported at zero from the start, as vLLM does for its counters
            self.requests.labels(model_name, outcome)
        for reason in REJECTION_REASONS:
            self.channel_rejections.labels(model_name, reason)

    def _shadow_metrics(self, labels: list[str]) -> None:
        """Shadow mode, per setting (`request`: each request's own; `threshold=T`: the probe at T). The sums of
        squares and products let `probexit bench shadow` put a confidence interval on the saved share."""
        registry, by_setting = self.registry, labels + ["setting"]
        self.shadow_requests = Counter(
            "probexit:shadow_requests", "Shadow choices finished.", labels, registry=registry
        )
        self.shadow_thinking = Counter(
            "probexit:shadow_thinking_tokens", "Their thinking tokens.", labels, registry=registry
        )
        self.shadow_thinking_squared = Counter(
            "probexit:shadow_thinking_tokens_squared",
            "Sum of squared thinking tokens per shadow choice.",
            labels,
            registry=registry,
        )
        self.shadow_would_exit = Counter(
            "probexit:shadow_would_exit",
            "Shadow choices the setting would have ended early.",
            by_setting,
            registry=registry,
        )
        self.shadow_answer_changed = Counter(
            "probexit:shadow_answer_changed",
            "Shadow choices whose answer at the would-be exit is not their final answer.",
            by_setting,
            registry=registry,
        )
        self.shadow_saved = Counter(
            "probexit:shadow_saved_tokens",
            "Thinking tokens the setting would have saved.",
            by_setting,
            registry=registry,
        )
        self.shadow_saved_squared = Counter(
            "probexit:shadow_saved_tokens_squared",
            "Sum of squared would-be savings per shadow choice.",
            by_setting,
            registry=registry,
        )
        self.shadow_saved_by_thinking = Counter(
            "probexit:shadow_saved_thinking_product",
            "Sum over shadow choices of would-be savings times thinking tokens.",
            by_setting,
            registry=registry,
        )
        self.shadow_saved_histogram = Histogram(
            "probexit:shadow_would_save_tokens",
            "Thinking tokens each shadow choice's own setting would have saved.",
            labels,
            buckets=THINKING_TOKEN_BUCKETS,
            registry=registry,
        )

    # -- fed by the generation core --------------------------------------------------------------------
    def track(self, rid: str, rule: str, shadow: bool = False) -> None:
        with self._lock:
            self._rules[rid] = (rule, shadow)

    def shadow_done(self, thinking_tokens: int, outcomes: list) -> None:
        """One finished shadow choice: its thinking, and per setting what early exit would have done."""
        name = self.model_name
        self.shadow_requests.labels(name).inc()
        self.shadow_thinking.labels(name).inc(thinking_tokens)
        self.shadow_thinking_squared.labels(name).inc(thinking_tokens**2)
        for outcome in outcomes:
            setting = (name, outcome.setting)
            self.shadow_would_exit.labels(*setting).inc(outcome.would_exit)
            self.shadow_answer_changed.labels(*setting).inc(bool(outcome.answer_changed))
            self.shadow_saved.labels(*setting).inc(outcome.saved_tokens)
            self.shadow_saved_squared.labels(*setting).inc(outcome.saved_tokens**2)
            self.shadow_saved_by_thinking.labels(*setting).inc(outcome.saved_tokens * thinking_tokens)
        self.shadow_saved_histogram.labels(name).observe(outcomes[0].saved_tokens)

    def untrack(self, rid: str) -> None:
        with self._lock:
            self._rules.pop(rid, None)

    def request_done(self, outcome: str) -> None:
        self.requests.labels(self.model_name, outcome).inc()

    def choice_done(self, thinking_tokens: int) -> None:
        self.thinking_tokens.labels(self.model_name).observe(thinking_tokens)

    # -- fed by the event collector's thread ---------------------------------------------------------------
    def on_evaluation(self, evaluation: Evaluation) -> None:
        with self._lock:
            rule, shadow = self._rules.get(evaluation.rid, ("unknown", False))
        would_only = shadow and evaluation.boundary_index is not None  # a shadow request's rule never exits
        decision = ("would_exit" if would_only else "exit") if evaluation.exit else "continue"
        self.evaluations.labels(self.model_name, rule, decision).inc()
        if evaluation.exit and not would_only:
            self.early_exits.labels(self.model_name, rule).inc()
        if rule == "probe" and evaluation.score is not None:
            self.probe_score.labels(self.model_name).observe(evaluation.score)

    def channel_rejected(self, reason: str) -> None:
        self.channel_rejections.labels(self.model_name, reason).inc()

    def on_step(self, seconds: float) -> None:
        self.probe_step_seconds.labels(self.model_name).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
