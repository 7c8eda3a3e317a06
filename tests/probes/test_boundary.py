import random

import pytest

from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig, token_byte_table


@pytest.fixture(scope="module")
def policy(tokenizer):
    return BoundaryPolicy(BoundaryPolicyConfig(), tokenizer)


def prompt_ids(tokenizer, question="What is 3 + 14 - 7?"):
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return tokenizer.encode(text)


def test_token_bytes_spell_the_text(tokenizer):
    table = token_byte_table(tokenizer)
    text = "Wait, let me double-check.\n\n13 - 16 = -3. So the answer is -3.\n\n</think>\n\nÜber ✓"
    assert b"".join(table[i] for i in tokenizer.encode(text)) == text.encode()


def test_template_prompt_starts_inside_thinking(policy, tokenizer):
    assert policy.markers.opened_by(prompt_ids(tokenizer))
    assert not policy.markers.opened_by(tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n"))
    assert not policy.markers.opened_by(tokenizer.encode("<think>\nx\n</think>\n\n"))


def test_boundaries_sit_on_the_token_that_ends_an_answer_paragraph(policy, tokenizer):
    completion = (
        "Quick mental math. 3 + 14 is 17, minus 7 is 10. So the answer is 10.\n\n"
        "Hmm, nothing stated here.\n\n"
        "Wait, let me double-check step by step. 3 + 14 = 17. 17 - 7 = 10. So the answer is 10.\n\n"
        "</think>\n\nThe answer is \\boxed{10}."
    )
    ids = tokenizer.encode(completion)
    boundaries = policy.segment(prompt_ids(tokenizer), ids)
    assert [b.answer for b in boundaries] == ["10", "10"]
    assert [b.boundary_index for b in boundaries] == [0, 1]
    assert [b.paragraph_index for b in boundaries] == [0, 2]  # the middle paragraph states nothing
    for boundary in boundaries:
        assert tokenizer.decode(ids[: boundary.token_index + 1]).endswith("\n\n")
        assert boundary.thinking_tokens == boundary.token_index + 1
    # The second chunk runs from the first boundary: it holds the answerless paragraph too.
    assert boundaries[1].chunk_text.startswith("Hmm, nothing stated here.")
    assert "\\boxed" not in "".join(b.chunk_text for b in boundaries)  # the final answer is not thinking


def test_nothing_outside_thinking(policy, tokenizer):
    ids = tokenizer.encode("So the answer is 3.\n\nSo the answer is 4.\n\n")
    assert policy.segment(tokenizer.encode("<|im_start|>assistant\n"), ids) == []
    assert [b.answer for b in policy.segment(tokenizer.encode("<think>\n"), ids)] == ["3", "4"]


def test_model_written_think_tag_opens_thinking(policy, tokenizer):
    ids = tokenizer.encode("<think>\nSo the answer is 5.\n\n</think>\n\nSo the answer is 6.\n\n")
    assert [b.answer for b in policy.segment([], ids)] == ["5"]


def test_newlines_split_across_tokens(policy, tokenizer):
    """A paragraph break spelled by two single-newline tokens is found as well as a fused `.\\n\\n`."""
    newline = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("\n"))
    assert len(newline) == 1
    head = tokenizer.encode("So the answer is 8.")
    boundaries = policy.segment(tokenizer.encode("<think>\n"), head + newline + newline)
    assert len(boundaries) == 1 and boundaries[0].token_index == len(head) + 1


def test_online_and_offline_agree_token_for_token(policy, tokenizer):
    """The tracker fed one token at a time (as the engine does) finds exactly the offline boundaries."""
    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    rng = random.Random(7)
    for _ in range(50):
        problem = random_problem(rng)
        ids = tokenizer.encode(sample_trace(problem, TraceStyle(), rng).completion)
        prompt = prompt_ids(tokenizer, problem.question)
        offline = policy.segment(prompt, ids)
        tracker = policy.tracker(prompt)
        online = [(i, b) for i, b in ((i, tracker.feed(t)) for i, t in enumerate(ids)) if b is not None]
        assert [b for _, b in online] == offline
        assert [i for i, _ in online] == [b.token_index for b in offline]
        assert offline, "every tiny-world trace states at least one answer"


def test_config_round_trip():
    config = BoundaryPolicyConfig(think_start="<t>", extractors=("boxed",))
    assert BoundaryPolicyConfig.from_json(config.to_json()) == config


def test_only_tokens_that_can_complete_a_break_or_mark_thinking_may_decide(policy, tokenizer):
    """The decode step feeds a request only at these tokens; any other token must never end a boundary."""
    newline_last = policy.break_bytes[-1:]
    for token_id, piece in enumerate(policy.token_bytes):
        expected = newline_last in piece or token_id in (policy.think_start_id, policy.think_end_id)
        assert policy.may_decide[token_id] == expected, (token_id, piece)
    assert len(policy.may_decide) == len(policy.token_bytes)
    rng = random.Random(3)
    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    for _ in range(20):
        problem = random_problem(rng)
        ids = tokenizer.encode(sample_trace(problem, TraceStyle(), rng).completion)
        assert all(policy.may_decide[ids[b.token_index]] for b in policy.segment(prompt_ids(tokenizer), ids))


def test_tiny_world_segmentation_is_every_stated_result(policy, tokenizer):
    """The default set is the tiny world's, and its boundaries are exactly the paragraphs that state a result: each
    chunk runs from the previous boundary to the end of such a paragraph and a blank line, byte for byte (the probe
    was trained on them); paragraphs that state none (an opening, half an attempt) join the next chunk."""
    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    assert BoundaryPolicyConfig().extractors == ("tinyworld", "boxed", "answer_is")
    rng = random.Random(11)
    for _ in range(200):
        problem = random_problem(rng)
        trace = sample_trace(problem, TraceStyle(), rng)
        chunks, chunk = [], ""
        for paragraph in trace.paragraphs:
            chunk += paragraph.text + "\n\n"
            if paragraph.answer is not None:
                chunks.append(chunk)
                chunk = ""
        boundaries = policy.segment(prompt_ids(tokenizer, problem.question), tokenizer.encode(trace.completion))
        assert [b.chunk_text for b in boundaries] == chunks
        assert [b.answer for b in boundaries] == [str(p.answer) for p in trace.attempts]


@pytest.fixture(scope="module")
def paragraph_policy(tokenizer):
    return BoundaryPolicy(BoundaryPolicyConfig(mode="paragraph"), tokenizer)


def test_paragraph_mode_is_every_break_inside_the_thinking_with_the_answer_it_reads(paragraph_policy, tokenizer):
    completion = (
        "Okay, 3 + 14 - 7.\n\n"
        "Quick mental math. 3 + 14 is 17, minus 7 is 10. So I get ten.\n\n"
        "Wait, let me double-check. 3 + 14 = 17. 17 - 7 = 10. Some prose a reader cannot place.\n\n"
        "</think>\n\nThe answer is \\boxed{10}.\n\nMore text after the thinking.\n\n"
    )
    boundaries = paragraph_policy.segment(prompt_ids(tokenizer), tokenizer.encode(completion))
    assert [b.chunk_text for b in boundaries] == [p + "\n\n" for p in completion.split("</think>")[0].split("\n\n")[:3]]
    assert [b.answer for b in boundaries] == [None, "10", None]
    assert [b.boundary_index for b in boundaries] == [0, 1, 2] == [b.paragraph_index for b in boundaries]


def test_paragraph_mode_online_and_offline_agree_token_for_token(paragraph_policy, tokenizer):
    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    rng = random.Random(8)
    for _ in range(50):
        problem = random_problem(rng)
        trace = sample_trace(problem, TraceStyle(), rng)
        ids, prompt = tokenizer.encode(trace.completion), prompt_ids(tokenizer, problem.question)
        offline = paragraph_policy.segment(prompt, ids)
        tracker = paragraph_policy.tracker(prompt)
        online = [b for b in map(tracker.feed, ids) if b is not None]
        assert online == offline and len(offline) == len(trace.paragraphs)


@pytest.mark.parametrize("mode", ["answer", "paragraph"])
def test_quiet_tokens_fed_at_once_give_the_boundaries_one_by_one_does(tokenizer, mode):
    """The decode step feeds the quiet tokens before the one that woke a request in one call: every run of them,
    however long, must leave the tracker where feeding them one at a time does."""
    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    policy = BoundaryPolicy(BoundaryPolicyConfig(mode=mode), tokenizer)
    rng = random.Random(9)
    for _ in range(30):
        problem = random_problem(rng)
        ids = tokenizer.encode(sample_trace(problem, TraceStyle(), rng).completion)
        prompt = prompt_ids(tokenizer, problem.question)
        tracker, found, run = policy.tracker(prompt), [], []
        for token in ids:
            if not policy.may_decide[token]:
                run.append(token)
                continue
            assert tracker.feed_quiet(run)
            run = []
            found += [b for b in [tracker.feed(token)] if b is not None]
        assert tracker.feed_quiet(run)
        assert found == policy.segment(prompt, ids) and tracker.position == len(ids)


def test_a_run_with_a_token_that_may_decide_is_not_fed_at_once(policy, tokenizer):
    tracker = policy.tracker(prompt_ids(tokenizer))
    quiet = [t for t in tokenizer.encode("So the sum is 17") if not policy.may_decide[t]]
    for run in ([*quiet, tokenizer.encode(".\n\n")[-1]], [*quiet, -1], [*quiet, len(policy.may_decide)]):
        assert not tracker.feed_quiet(run)
        assert (tracker.position, tracker.thinking_tokens, bytes(tracker.chunk)) == (0, 0, b"")


@pytest.mark.parametrize("recorded", [{}, {"extractors": ["tinyworld"]}], ids=["empty", "before-modes"])
def test_a_policy_recorded_before_modes_is_the_answer_mode(recorded):
    assert BoundaryPolicyConfig.from_json(recorded).mode == "answer"


def test_an_unknown_mode_is_refused_in_one_sentence():
    from probexit.probes.boundary import UnknownBoundaryModeError

    with pytest.raises(UnknownBoundaryModeError, match="unknown boundary mode 'sentence'"):
        BoundaryPolicyConfig.from_json({"mode": "sentence"})


MULTIPLE_CHOICE = "Which is the stopping distance?\nA: 12 m\nB: 18 m\nC: 24 m"


@pytest.fixture(scope="module")
def reasoning_policy(tokenizer):
    return BoundaryPolicy(BoundaryPolicyConfig(extractors=("boxed", "reasoning")), tokenizer)


def test_a_tracker_reads_with_the_options_its_prompt_lists(reasoning_policy, tokenizer):
    """The engine holds only prompt ids: the tracker finds the question's options in the text they spell, so an
    option named by its content reads as its letter, online and offline alike."""
    completion = tokenizer.encode("So the stopping distance is 24 m.\n\n", add_special_tokens=False)
    with_options = prompt_ids(tokenizer, MULTIPLE_CHOICE)
    assert "C: 24 m" in reasoning_policy.prompt_text(with_options)
    assert [b.answer for b in reasoning_policy.segment(with_options, completion)] == ["C"]
    assert [b.answer for b in reasoning_policy.segment(prompt_ids(tokenizer), completion)] == ["24"]
    assert [b.answer for b in reasoning_policy.segment(None, completion, MULTIPLE_CHOICE)] == []  # not thinking
    tracker = reasoning_policy.thinking_tracker(MULTIPLE_CHOICE)
    assert [b.answer for b in map(tracker.feed, completion) if b is not None] == ["C"]


def test_prompt_ids_past_the_vocabulary_spell_nothing(reasoning_policy, tokenizer):
    ids = prompt_ids(tokenizer, MULTIPLE_CHOICE)
    assert reasoning_policy.prompt_text(ids + [len(reasoning_policy.token_bytes) + 5]) == reasoning_policy.prompt_text(
        ids
    )


def test_a_reader_without_option_readers_is_never_bound(policy, tokenizer):
    assert not policy.reads_options
    assert policy.reader(MULTIPLE_CHOICE) is policy.extractor
