"""A request's `early_exit` object resolved against the server's defaults, and the per-choice report.

Each field the request gives overrides the server's default for it; `enabled` too, and an object that gives
any setting but leaves `enabled` out asks for early exit (a request that sets a threshold wants one). Settings that cannot
work on this server (the probe rule without a probe, `max_risk` without a calibration table, any rule on a
model without thinking markers) are a 400 naming the field, never a silent no-op.
"""
from __future__ import annotations

from dataclasses import dataclass

from probexit.probes.probe import Probe
from probexit.probes.rules import ExitSettings, SettingsError
from probexit.server.engine.events import RequestRecord
from probexit.server.errors import APIError
from probexit.server.protocol import EarlyExitReport, EarlyExitRequest


@dataclass(frozen=True)
class ExitDefaults:
    """The server's side of the resolution."""

    enabled: bool
    threshold: float
    min_thinking_tokens: int
    probe: Probe | None
    markers_known: bool  # False: the model has no thinking markers, so nothing can exit


def resolve(request: EarlyExitRequest | None, defaults: ExitDefaults) -> ExitSettings | None:
    """The settings to send to the engine, or None when this request does not exit early."""
    request = request or EarlyExitRequest()
    if request.enabled is not None:
        enabled = request.enabled
    else:
        enabled = defaults.enabled or bool(request.model_fields_set - {"enabled"})
    if not enabled:
        return None
    if not defaults.markers_known:
        raise _invalid("enabled", "this model has no thinking markers, so its thinking cannot be ended early")
    rule = request.rule or "probe"
    if rule == "probe" and defaults.probe is None:
        raise _invalid("rule", "the probe rule needs a probe and this server was started without --probe; "
                               "use another rule (consistency, confidence, first, budget, oracle) or disable early exit")
    if request.threshold is not None and request.max_risk is not None:
        raise _invalid("max_risk", "give threshold or max_risk, not both")
    threshold = defaults.threshold if request.threshold is None else request.threshold
    if request.max_risk is not None:
        threshold = _threshold_for_risk(rule, request.max_risk, defaults.probe)
    values = {"rule": rule, "threshold": threshold,
              "min_thinking_tokens": defaults.min_thinking_tokens if request.min_thinking_tokens is None
              else request.min_thinking_tokens}
    values.update({key: value for key in ("k", "budget", "answer") if (value := getattr(request, key)) is not None})
    try:
        return ExitSettings(**values)
    except SettingsError as error:
        raise APIError(400, str(error), param=f"early_exit.{error.field}") from error


def _threshold_for_risk(rule: str, max_risk: float, probe: Probe | None) -> float:
    if rule != "probe" or probe is None:
        raise _invalid("max_risk", "max_risk is calibrated for the probe rule only")
    try:
        return probe.config.threshold_for_risk(max_risk)
    except ValueError as error:
        raise _invalid("max_risk", str(error)) from error


def _invalid(field: str, message: str) -> APIError:
    return APIError(400, f"early_exit.{field}: {message}", param=f"early_exit.{field}")


def report(settings: ExitSettings | None, record: RequestRecord | None, reasoning_tokens: int) -> EarlyExitReport:
    """What happened to one choice: the exiting evaluation if any, else the last score seen. Every field
    is given explicitly, because streamed chunks leave out the fields that were never set."""
    if settings is None or record is None:
        record = RequestRecord()  # early exit was not asked for: nothing was evaluated
    exit_ = record.exit
    return EarlyExitReport(triggered=exit_ is not None, score=exit_.score if exit_ else record.last_score,
                           boundary=exit_.boundary_index if exit_ else None, reasoning_tokens=reasoning_tokens)
