"""A request's early-exit settings resolved against the server's defaults, and the per-choice report.

Three request fields steer the thinking, in this order of precedence:
- `early_exit`: each field it gives overrides the server's default for it; `enabled` too, and an object that
  gives any setting but leaves `enabled` out asks for early exit (a request that sets a threshold wants one);
- `reasoning_effort` (used only when `early_exit` is absent): a named setting, `EFFORTS`;
- `thinking_token_budget`: a hard cap on the thinking that holds under any rule, or alone.
Settings that cannot work on this server (the probe rule without a probe, `max_risk` without a calibration
table, any rule or budget on a model without thinking markers) are a 400 naming the field, never a silent
no-op; a `reasoning_effort` whose setting this server cannot honour falls back to the server's default.

A shadow request (`early_exit.shadow`, or drawn at the server's `--shadow-rate`) runs its rule at every boundary
but thinks to its natural end, so its answer is exactly the one without early exit; when it finishes, the rule's
would-be exit is compared with what happened (`shadow_outcomes`): would it have exited, how many thinking tokens
it would have saved, and whether the answer stated there differs from the final answer. The probe rule is judged
at `SHADOW_THRESHOLDS` too, from the same scores, at no extra cost.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from probexit.engine.events import RequestRecord
from probexit.probes.answers import final_answer
from probexit.probes.equivalence import MathEquivalence
from probexit.probes.probe import Probe
from probexit.probes.rules import REQUEST_SETTING, SHADOW_THRESHOLDS, ExitSettings, SettingsError, same_answer
from probexit.probes.runtime import Evaluation
from probexit.server.errors import APIError
from probexit.server.protocol import REASONING_EFFORTS, EarlyExitReport, EarlyExitRequest

# reasoning_effort -> the early_exit object it stands for. `none` turns thinking off where the chat template
# has the switch (`enable_thinking`) and otherwise ends it after one token; `medium` is the server's default;
# the others are certified harm levels of the probe (`max_risk`: the share of answers early exit may turn from
# right into wrong), looser than a probe's default (which the probe job picks at 0.02 or below) for `minimal`
# and `low`, the strictest level a probe's table carries for `high`; or thinking to the end.
EFFORTS = {
    "none": EarlyExitRequest(rule="budget", budget=1),
    "minimal": EarlyExitRequest(max_risk=0.1),
    "low": EarlyExitRequest(max_risk=0.05),
    "medium": None,
    "high": EarlyExitRequest(max_risk=0.005),
    "xhigh": EarlyExitRequest(enabled=False),
    "max": EarlyExitRequest(enabled=False),
}


@dataclass(frozen=True)
class ExitDefaults:
    """The server's side of the resolution."""

    enabled: bool
    settings: ExitSettings  # the threshold and min_thinking_tokens a request does not override
    probe: Probe | None
    markers_known: bool  # False: the model has no thinking markers, so nothing can exit
    shadow_rate: float = 0.0  # the share of requests run in shadow mode unless they say otherwise


def resolve(
    request: EarlyExitRequest | None,
    defaults: ExitDefaults,
    *,
    effort: str | None = None,
    thinking_budget: int | None = None,
) -> ExitSettings | None:
    """The settings to send to the engine, or None when this request's thinking is left alone."""
    if request is None and effort is not None:
        request = effort_request(effort, defaults)
    request = request or EarlyExitRequest()
    if _shadow(request, defaults):
        settings = _resolve_rule(request.model_copy(update={"enabled": True}), defaults)
        settings = replace(settings, shadow=True)
    else:
        settings = _resolve_rule(request, defaults)
    if thinking_budget is None:
        return settings
    if not defaults.markers_known:
        raise APIError(
            400,
            "thinking_token_budget: this model has no thinking markers, so its thinking cannot be capped",
            param="thinking_token_budget",
        )
    if settings is None:
        return ExitSettings(rule="budget", budget=thinking_budget)
    return replace(settings, budget=min(settings.budget, thinking_budget) if settings.budget else thinking_budget)


def _shadow(request: EarlyExitRequest, defaults: ExitDefaults) -> bool:
    """A request is shadowed when it asks, or, unless it says otherwise or turns early exit off, at the rate."""
    if request.shadow is not None:
        if request.shadow and request.enabled is False:
            raise _invalid("shadow", "a shadow request runs the exit rule, so it cannot also disable early exit")
        return request.shadow
    return (
        request.enabled is not False
        and defaults.shadow_rate > 0
        and defaults.markers_known
        and (defaults.probe is not None or request.rule not in (None, "probe"))
        and random.random() < defaults.shadow_rate
    )


def effort_request(effort: str, defaults: ExitDefaults) -> EarlyExitRequest | None:
    """The early_exit object a reasoning_effort stands for on this server (None: the server's default)."""
    if effort not in EFFORTS:
        raise APIError(
            400, f"reasoning_effort: {effort!r} is not one of {', '.join(REASONING_EFFORTS)}", param="reasoning_effort"
        )
    request = EFFORTS[effort]
    calibrated = defaults.probe is not None and bool(defaults.probe.config.calibration)
    if request is not None and request.max_risk is not None and not calibrated:
        return None  # risk levels need the probe's calibration table: the server's default it is
    if request is not None and request.rule == "budget" and not defaults.markers_known:
        return EarlyExitRequest(enabled=False)
    return request


def _resolve_rule(request: EarlyExitRequest, defaults: ExitDefaults) -> ExitSettings | None:
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
        raise _invalid(
            "rule",
            "the probe rule needs a probe and this server was started without --probe; "
            "use another rule (consistency, confidence, first, budget, oracle) or disable early exit",
        )
    if request.threshold is not None and request.max_risk is not None:
        raise _invalid("max_risk", "give threshold or max_risk, not both")
    threshold = defaults.settings.threshold if request.threshold is None else request.threshold
    if request.max_risk is not None:
        threshold = _threshold_for_risk(rule, request.max_risk, defaults.probe)
    values = {
        "rule": rule,
        "threshold": threshold,
        "min_thinking_tokens": defaults.settings.min_thinking_tokens
        if request.min_thinking_tokens is None
        else request.min_thinking_tokens,
    }
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


def report(
    settings: ExitSettings | None,
    record: RequestRecord | None,
    reasoning_tokens: int,
    *,
    cut_while_thinking: bool = False,
    shadow: ShadowOutcome | None = None,
) -> EarlyExitReport:
    """What happened to one choice: the exiting evaluation if any, else the last score seen, and why the thinking
    ended (`cut_while_thinking`: max_tokens ended the choice inside its thinking); for a shadow request, what its
    rule would have done. Every field is given explicitly, because streamed chunks leave out the fields that
    were never set."""
    if settings is None or record is None:
        record = RequestRecord()  # early exit was not asked for: nothing was evaluated
    exit_ = _real_exit(settings, record)
    if exit_ is not None:
        reason = "budget" if exit_.boundary_index is None else "probe" if settings.rule == "probe" else "rule"
    else:
        reason = "length" if cut_while_thinking else None
    fields = {}
    if shadow is not None:
        fields = {
            "shadow": True,
            "would_exit": shadow.would_exit,
            "would_save_tokens": shadow.saved_tokens,
            "answer_changed": shadow.answer_changed,
        }
    shown = exit_ or (shadow.evaluation if shadow is not None else None)
    return EarlyExitReport(
        triggered=exit_ is not None,
        score=shown.score if shown else record.last_score,
        boundary=shown.boundary_index if shown else None,
        reasoning_tokens=reasoning_tokens,
        reason=reason,
        **fields,
    )


def _real_exit(settings: ExitSettings | None, record: RequestRecord) -> Evaluation | None:
    """The evaluation that ended the thinking: in shadow mode only the budget's (the rule's exits are would-be)."""
    if settings is not None and settings.shadow:
        return next((e for e in record.evaluations if e.exit and e.boundary_index is None), None)
    return record.exit


@dataclass(frozen=True)
class ShadowOutcome:
    """What one setting would have done to one shadow choice."""

    setting: str  # REQUEST_SETTING, or "threshold=T" for the probe at T
    evaluation: Evaluation | None  # the boundary where it would have exited (None: it would not have)
    saved_tokens: int  # the thinking tokens after that boundary
    answer_changed: bool | None  # the answer stated there is not the final answer (None: no exit)

    @property
    def would_exit(self) -> bool:
        return self.evaluation is not None


def shadow_outcomes(
    settings: ExitSettings, record: RequestRecord, reasoning_tokens: int, content: str
) -> list[ShadowOutcome]:
    """The request's own setting first, then (probe rule) each of SHADOW_THRESHOLDS."""
    boundaries = [e for e in record.evaluations if e.boundary_index is not None]
    final = final_answer(content)
    exits = [(REQUEST_SETTING, next((e for e in boundaries if e.exit), None))]
    if settings.rule == "probe":
        exits += [
            (
                f"threshold={threshold}",
                next((e for e in boundaries if e.score is not None and e.score >= threshold), None),
            )
            for threshold in SHADOW_THRESHOLDS
        ]
    return [
        ShadowOutcome(
            name,
            at,
            reasoning_tokens - at.thinking_tokens if at else 0,
            None if at is None else not _same(at.answer, final),
        )
        for name, at in exits
    ]


def _same(stated: str | None, final: str | None) -> bool:
    """Whether an intermediate answer is the final one: cheap equality first, math-verify where it is not."""
    if stated is None or final is None:
        return False
    return same_answer(stated, final) or _EQUIVALENCE.same(stated, final)


_EQUIVALENCE = MathEquivalence()
