"""The probe runtime driven as the engine drives it: one token per step, logits forced in place."""

import math

import pytest
import torch

from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig
from probexit.probes.fingerprint import ModelIdentity
from probexit.probes.probe import Probe, ProbeConfig, ProbeModel
from probexit.probes.rules import ExitSettings
from probexit.probes.runtime import EarlyExitRuntime

HIDDEN = 8
TRACE = (
    "Quick mental math. 3 + 14 is 17, minus 7 is 10. So the answer is 10.\n\n"
    "Wait, let me double-check step by step. 3 + 14 = 17. 17 - 7 = 10. So the answer is 10.\n\n"
    "Let me check once more quickly. 3 + 14 is 17, minus 7 is 10. So the answer is 10.\n\n"
    "</think>\n\nThe answer is \\boxed{10}."
)


@pytest.fixture(scope="module")
def policy(tokenizer):
    return BoundaryPolicy(BoundaryPolicyConfig(), tokenizer)


def constant_probe(bias: float) -> Probe:
    module = ProbeModel(HIDDEN, 0, torch.zeros(HIDDEN), torch.ones(HIDDEN))
    with torch.no_grad():
        module.net.weight.zero_()
        module.net.bias.fill_(bias)
    return Probe(ProbeConfig("linear", HIDDEN, 0, ModelIdentity("t", HIDDEN, 1, "f")), module.weights())


def drive(runtime, tokenizer, settings_by_row, hidden_rows=None, stop_at_exit=True, text=TRACE):
    """Feed `text` (TRACE) to every row; returns per row the step (output length) at which it was forced to exit,
    and all evaluations."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 14 - 7?"}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids, trace = tokenizer.encode(prompt), tokenizer.encode(text)
    outputs = {row: [] for row in settings_by_row}
    states = {
        row: runtime.new_request(f"r{row}", s, prompt_ids, outputs[row])
        for row, s in settings_by_row.items()
        if s is not None
    }
    exits, evaluations = {}, []
    vocab = len(runtime.policy.token_bytes)
    for token in trace:
        for output in outputs.values():
            output.append(token)
        logits = torch.zeros(len(settings_by_row), vocab)
        hidden = torch.randn(hidden_rows or len(settings_by_row), HIDDEN)
        evaluations += runtime.step(states, hidden, logits)
        for row in settings_by_row:
            if torch.isinf(logits[row]).any() and row not in exits:
                assert logits[row, runtime.policy.think_end_id] == 0 and torch.isinf(logits[row]).sum() == vocab - 1
                exits[row] = len(outputs[row])
    return exits, evaluations, trace


def boundary_steps(policy, tokenizer, trace):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True
    )
    return [b.token_index + 1 for b in policy.segment(tokenizer.encode(prompt), trace)]


def test_probe_rule_exits_at_first_boundary_and_respects_threshold(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, constant_probe(bias=3.0))  # every score is sigmoid(3) = 0.953
    settings = {
        0: ExitSettings(threshold=0.9),
        1: ExitSettings(threshold=1.01),
        2: None,
        3: ExitSettings(threshold=0.953 - 1e-3),
    }
    exits, evaluations, trace = drive(runtime, tokenizer, settings)
    steps = boundary_steps(policy, tokenizer, trace)
    assert exits == {0: steps[0], 3: steps[0]}  # row 1 never fires, row 2 is not tracked at all
    scored = [e for e in evaluations if e.rid == "r1"]
    assert len(scored) == 3 and all(math.isclose(e.score, 1 / (1 + math.exp(-3)), rel_tol=1e-6) for e in scored)
    assert not any(e.rid == "r2" for e in evaluations)


def test_min_thinking_tokens_delays_the_exit(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, constant_probe(bias=3.0))
    exits, _, trace = drive(runtime, tokenizer, {0: ExitSettings(threshold=0.5, min_thinking_tokens=40)})
    steps = boundary_steps(policy, tokenizer, trace)
    assert exits[0] == next(s for s in steps if s >= 40) and exits[0] != steps[0]


@pytest.mark.parametrize(
    "settings, boundary",
    [
        pytest.param(ExitSettings(rule="first"), 0, id="first"),
        pytest.param(ExitSettings(rule="consistency", k=2), 1, id="consistency-2"),
        pytest.param(ExitSettings(rule="consistency", k=3), 2, id="consistency-3"),
        pytest.param(ExitSettings(rule="oracle", answer="10"), 0, id="oracle"),
    ],
)
def test_text_rules(policy, tokenizer, settings, boundary):
    runtime = EarlyExitRuntime(policy, None)
    exits, _, trace = drive(runtime, tokenizer, {0: settings})
    assert exits[0] == boundary_steps(policy, tokenizer, trace)[boundary]


def test_oracle_never_exits_on_a_wrong_answer(policy, tokenizer):
    exits, evaluations, _ = drive(
        EarlyExitRuntime(policy, None), tokenizer, {0: ExitSettings(rule="oracle", answer="11")}
    )
    assert exits == {} and len(evaluations) == 3 and not any(e.exit for e in evaluations)


def test_budget_rule_exits_mid_paragraph(policy, tokenizer):
    exits, evaluations, _ = drive(EarlyExitRuntime(policy, None), tokenizer, {0: ExitSettings(rule="budget", budget=7)})
    assert exits[0] == 7 and evaluations[-1].exit and evaluations[-1].boundary_index is None


def test_confidence_rule_reads_the_chunks_lowest_token_probability(policy, tokenizer):
    # Uniform logits: every token has probability 1/V, so a threshold above that never fires and one below does.
    vocab = len(policy.token_bytes)
    exits, evaluations, _ = drive(
        EarlyExitRuntime(policy, None),
        tokenizer,
        {
            0: ExitSettings(rule="confidence", threshold=2 / vocab),
            1: ExitSettings(rule="confidence", threshold=0.5 / vocab),
        },
    )
    assert 0 not in exits and 1 in exits
    assert all(math.isclose(e.score, 1 / vocab, rel_tol=1e-4) for e in evaluations)


def test_probe_rule_without_probe_is_refused(policy):
    with pytest.raises(ValueError, match="needs a probe"):
        EarlyExitRuntime(policy, None).new_request("r", ExitSettings(), [], [])


def test_misaligned_hidden_states_never_exit(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, constant_probe(bias=3.0))
    exits, evaluations, _ = drive(runtime, tokenizer, {0: ExitSettings(threshold=0.0)}, hidden_rows=3)
    assert exits == {} and evaluations == []


def test_record_mode_reports_hidden_state_and_end_probability(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, None)
    exits, evaluations, _ = drive(runtime, tokenizer, {0: ExitSettings(rule="none", record=True)})
    assert exits == {} and len(evaluations) == 3
    vocab = len(policy.token_bytes)
    assert all(len(e.hidden) == HIDDEN and math.isclose(e.end_prob, 1 / vocab, rel_tol=1e-4) for e in evaluations)


def test_resumed_request_does_not_re_decide_old_boundaries(policy, tokenizer):
    """After preemption vLLM re-adds a request with its output so far; only the last token is new."""
    runtime = EarlyExitRuntime(policy, constant_probe(bias=3.0))
    trace = tokenizer.encode(TRACE)
    first = boundary_steps(policy, tokenizer, trace)[0]
    output = list(trace[: first + 5])  # preempted after the first boundary
    state = runtime.new_request("r", ExitSettings(threshold=0.5), [policy.think_start_id], output)
    logits = torch.zeros(1, len(policy.token_bytes))
    assert runtime.step({0: state}, torch.randn(1, HIDDEN), logits) == [] and not torch.isinf(logits).any()
    assert state.answers == ["10"]


def test_async_placeholder_is_skipped(policy):
    runtime = EarlyExitRuntime(policy, None)
    output = [5, -1]
    state = runtime.new_request("r", ExitSettings(rule="budget", budget=1), [policy.think_start_id], output)
    logits = torch.zeros(1, len(policy.token_bytes))
    runtime.step({0: state}, None, logits)
    assert not torch.isinf(logits).any() and state.fed == 1


def test_a_boundary_left_behind_a_placeholder_is_still_read(policy, tokenizer):
    """A token that may decide, written over a placeholder at a step that did not catch the row up, is fed one
    by one at the next catch-up: its paragraph's answer counts, though its hidden state is gone."""
    runtime = EarlyExitRuntime(policy, None)
    paragraph = tokenizer.encode(TRACE.split("\n\n")[0] + "\n\n")
    assert policy.may_decide[paragraph[-1]]
    output: list[int] = []
    state = runtime.new_request("r", ExitSettings(rule="none"), [policy.think_start_id], output)
    logits = torch.zeros(1, len(policy.token_bytes))
    for token in paragraph[:-1]:
        output.append(token)
        runtime.step({0: state}, None, logits)
    output.append(-1)  # the asynchronous scheduler's placeholder for the paragraph's last token
    runtime.step({0: state}, None, logits)
    output[-1:] = [paragraph[-1], *tokenizer.encode("Wait")]  # the newest token is quiet: no catch-up yet
    runtime.step({0: state}, None, logits)
    assert state.answers == []
    output.append(tokenizer.encode(".\n\n")[-1])
    runtime.step({0: state}, None, logits)
    assert state.answers == ["10"] and state.fed == len(output)
    assert (state.tracker.n_paragraphs, state.tracker.n_boundaries) == (2, 1)


def test_lazy_feeding_reads_every_offline_boundary(policy, tokenizer):
    """Rows are fed only at tokens that may decide (the rest wait); record mode must still report a hidden
    state at exactly the boundaries the offline segmentation finds, for traces of many shapes."""
    import random

    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    runtime, rng = EarlyExitRuntime(policy, None), random.Random(11)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "q"}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer.encode(prompt)
    traces = [tokenizer.encode(sample_trace(random_problem(rng), TraceStyle(), rng).completion) for _ in range(8)]
    outputs = [[] for _ in traces]
    states = {
        row: runtime.new_request(f"r{row}", ExitSettings(rule="none", record=True), prompt_ids, outputs[row])
        for row in range(len(traces))
    }
    recorded: dict[str, list[int]] = {f"r{row}": [] for row in range(len(traces))}
    vocab = len(policy.token_bytes)
    for step in range(max(map(len, traces))):
        for row, trace in enumerate(traces):
            if step < len(trace):
                outputs[row].append(trace[step])
            else:
                states.pop(row, None)  # finished: leaves the batch
        rows = len(traces)
        for evaluation in runtime.step(states, torch.randn(rows, HIDDEN), torch.zeros(rows, vocab)):
            recorded[evaluation.rid].append(evaluation.token_index)
    for row, trace in enumerate(traces):
        assert recorded[f"r{row}"] == [b.token_index for b in policy.segment(prompt_ids, trace)]
        assert recorded[f"r{row}"]


@pytest.mark.parametrize("width", [0, 4])
def test_host_path_and_dispatcher_decide_alike(policy, tokenizer, width):
    """On CPU the runtime scores with the numpy path's HostProbe directly; the torch reference through the
    dispatcher (`backend="torch"`) must see the same scores and make the same decisions."""
    torch.manual_seed(width)
    module = ProbeModel(HIDDEN, width, 0.1 * torch.randn(HIDDEN), 0.5 + torch.rand(HIDDEN))
    probe = Probe(
        ProbeConfig("mlp" if width else "linear", HIDDEN, width, ModelIdentity("t", HIDDEN, 1, "f")), module.weights()
    )
    results = []
    for backend in ("auto", "torch"):
        runtime = EarlyExitRuntime(policy, probe, backend=backend)
        assert (runtime.host_probe is not None) == (backend == "auto")
        torch.manual_seed(0)  # the same hidden states for both
        settings = {row: ExitSettings(threshold=threshold) for row, threshold in enumerate((0.3, 0.5, 0.7, 1.01))}
        results.append(drive(runtime, tokenizer, settings))
    (host_exits, host_evaluations, _), (torch_exits, torch_evaluations, _) = results
    assert host_exits == torch_exits and len(host_evaluations) == len(torch_evaluations) > 0
    for host, reference in zip(host_evaluations, torch_evaluations):
        assert (host.rid, host.token_index, host.exit) == (reference.rid, reference.token_index, reference.exit)
        assert math.isclose(host.score, reference.score, abs_tol=1e-6)


def test_records_are_marked_complete_when_nothing_more_can_come(policy, tokenizer):
    """The API waits for a finished request's record until it is marked complete: at the exit, when the
    thinking ends, or at the step that samples the last token allowed by max_tokens; each once."""
    runtime = EarlyExitRuntime(policy, constant_probe(bias=3.0))
    settings = {0: ExitSettings(threshold=0.5), 1: ExitSettings(threshold=1.01)}
    exits, _, trace = drive(runtime, tokenizer, settings, stop_at_exit=False)
    marks = runtime.pop_marks()
    assert marks == [("r0", True), ("r1", True)] and runtime.pop_marks() == []
    think_end = trace.index(policy.think_end_id)
    assert exits == {0: boundary_steps(policy, tokenizer, trace)[0]} and think_end > exits[0]

    limited = EarlyExitRuntime(policy, None)
    output: list[int] = []
    state = limited.new_request(
        "m", ExitSettings(rule="none", record=True), [policy.think_start_id], output, max_tokens=4
    )
    for token in tokenizer.encode(TRACE)[:4]:
        output.append(token)
        limited.step({0: state}, torch.randn(1, HIDDEN), torch.zeros(1, len(policy.token_bytes)))
        assert limited.pop_marks() == ([("m", True)] if len(output) == 3 else [])


def test_a_shadow_request_is_never_forced_and_scores_every_boundary(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, constant_probe(20.0))  # scores about 1.0: the rule would exit at once
    exits, evaluations, trace = drive(
        runtime, tokenizer, {0: ExitSettings(threshold=0.5, shadow=True), 1: ExitSettings(threshold=0.5)}
    )
    assert list(exits) == [1]  # only the ordinary request was forced
    shadow = [e for e in evaluations if e.rid == "r0"]
    assert [e.boundary_index for e in shadow] == [0, 1, 2] and all(e.exit and e.answer == "10" for e in shadow)
    assert [e.boundary_index for e in evaluations if e.rid == "r1"] == [0]


def test_the_thinking_budget_holds_in_shadow_mode_too(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, constant_probe(-20.0))
    exits, evaluations, _ = drive(runtime, tokenizer, {0: ExitSettings(threshold=0.5, shadow=True, budget=5)})
    assert exits == {0: 5}
    assert [(e.boundary_index, e.exit) for e in evaluations] == [(None, True)]


def test_a_budget_caps_the_probe_rule_at_the_same_step_as_the_budget_rule(policy, tokenizer):
    runtime = EarlyExitRuntime(policy, constant_probe(-20.0))  # the probe never passes
    exits, _, _ = drive(
        runtime, tokenizer, {0: ExitSettings(threshold=0.5, budget=12), 1: ExitSettings(rule="budget", budget=12)}
    )
    assert exits == {0: 12, 1: 12}


PROSE = (
    "Okay, so I need 3 + 14 - 7.\n\n"
    "In my head: 3 + 14 is 17, minus 7 is 10. 10 is where the running total lands.\n\n"
    "Wait, let me double-check. 3 + 14 = 17, 17 - 7 = 10. So the answer is 10.\n\n"
    "</think>\n\nThe answer is \\boxed{10}."
)


def test_paragraph_mode_asks_the_probe_at_every_paragraph_and_text_rules_where_an_answer_is_read(tokenizer):
    policy = BoundaryPolicy(BoundaryPolicyConfig(mode="paragraph", extractors=("reasoning",)), tokenizer)
    runtime = EarlyExitRuntime(policy, constant_probe(bias=3.0))
    settings = {0: ExitSettings(threshold=0.9), 1: ExitSettings(rule="first"), 2: ExitSettings(threshold=1.01)}
    exits, evaluations, trace = drive(runtime, tokenizer, settings, text=PROSE)
    steps = boundary_steps(policy, tokenizer, trace)
    assert len(steps) == 3  # every paragraph break inside the thinking
    # the probe exits at the opening paragraph; `first` waits for the first answer the reader reads (the third)
    assert exits == {0: steps[0], 1: steps[2]}
    assert [e.answer for e in evaluations if e.rid == "r2"] == [None, None, "10"]


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_a_probe_reads_the_same_features_online_as_the_probe_job_computes_offline(policy, tokenizer, backend):
    """A linear probe that reads only its features (zero weight on the hidden state): its logit at each boundary is
    w . (f - mean) / scale for the features the offline code computes from the segmented trace, on the host path
    and through the dispatcher alike."""
    from probexit.probes.features import boundary_features, feature_count

    inputs = ("end_of_thinking", "position", "answer_history")
    k = feature_count(inputs)
    torch.manual_seed(5)
    mean, scale, w = torch.randn(HIDDEN + k), 0.5 + torch.rand(HIDDEN + k), torch.randn(HIDDEN + k)
    w[:HIDDEN] = 0.0
    module = ProbeModel(HIDDEN + k, 0, mean, scale)
    with torch.no_grad():
        module.net.weight.copy_(w[None])
        module.net.bias.zero_()
    config = ProbeConfig("linear", HIDDEN, 0, ModelIdentity("t", HIDDEN, 1, "f"), inputs=inputs)
    runtime = EarlyExitRuntime(policy, Probe(config, module.weights(k)), backend=backend)
    _, evaluations, trace = drive(runtime, tokenizer, {0: ExitSettings(threshold=1.01)})
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 3 + 14 - 7?"}], tokenize=False, add_generation_prompt=True
    )
    previous, expected = [], []
    for boundary in policy.segment(tokenizer.encode(prompt), trace):
        end_prob = 1.0 / len(policy.token_bytes)  # drive's logits are all zero: a uniform distribution
        features = boundary_features(
            inputs,
            paragraph_index=boundary.paragraph_index,
            boundary_index=boundary.boundary_index,
            thinking_tokens=boundary.thinking_tokens,
            answer=boundary.answer,
            previous_answers=list(previous),
            end_prob=end_prob,
        )
        logit = float((torch.tensor(features) - mean[HIDDEN:]) / scale[HIDDEN:] @ w[HIDDEN:])
        expected.append(1.0 / (1.0 + math.exp(-logit)))
        previous += [boundary.answer] if boundary.answer is not None else []
    assert len(evaluations) == len(expected) == 3
    for evaluation, score in zip(evaluations, expected):
        assert math.isclose(evaluation.score, score, rel_tol=1e-5, abs_tol=1e-6)
