"""probexit's Prometheus metrics, in vLLM's style (`probexit:` prefix, a `model_name` label).

They live in a registry owned by the app (no module globals), and `/metrics` renders it followed by the
engine's own registry, so one scrape sees both. Evaluations and step timings arrive on the event
collector's thread; prometheus_client's metrics are thread-safe.
"""
from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

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
        self.requests = Counter("probexit:requests", "Generation requests by outcome (success, aborted by the "
                                "client, rejected as invalid, error).", labels + ["outcome"], registry=self.registry)
        self.evaluations = Counter("probexit:probe_evaluations", "Boundaries at which an exit rule was consulted.",
                                   labels + ["rule", "decision"], registry=self.registry)
        self.early_exits = Counter("probexit:early_exits", "Choices whose thinking an exit rule ended.",
                                   labels + ["rule"], registry=self.registry)
        self.thinking_tokens = Histogram("probexit:thinking_tokens", "Thinking tokens per choice.", labels,
                                         buckets=THINKING_TOKEN_BUCKETS, registry=self.registry)
        self.probe_score = Histogram("probexit:probe_score", "Probe scores at boundaries.", labels,
                                     buckets=SCORE_BUCKETS, registry=self.registry)
        self.probe_step_seconds = Histogram("probexit:probe_step_seconds", "Early-exit work per decode step "
                                            "(boundary tracking, probe kernel, forcing).", labels,
                                            buckets=STEP_SECONDS_BUCKETS, registry=self.registry)
        for outcome in OUTCOMES:  # exported at zero from the start, as vLLM does for its counters
            self.requests.labels(model_name, outcome)

    # -- fed by the generation core --------------------------------------------------------------------
    def track(self, rid: str, rule: str) -> None:
        with self._lock:
            self._rules[rid] = rule

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
            rule = self._rules.get(evaluation.rid, "unknown")
        decision = "exit" if evaluation.exit else "continue"
        self.evaluations.labels(self.model_name, rule, decision).inc()
        if evaluation.exit:
            self.early_exits.labels(self.model_name, rule).inc()
        if rule == "probe" and evaluation.score is not None:
            self.probe_score.labels(self.model_name).observe(evaluation.score)

    def on_step(self, seconds: float) -> None:
        self.probe_step_seconds.labels(self.model_name).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
