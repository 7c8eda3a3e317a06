import doctest

import pytest

from probexit.probes import markers as markers_module
from probexit.probes.markers import (
    CLOSED,
    OPENED,
    OUTSIDE,
    THOUGHT,
    ThinkingPhase,
    as_written,
    find_markers,
    split_thinking,
)


def test_doctests():
    assert doctest.testmod(markers_module).failed == 0


START, END, WORD = 5, 6, 9


@pytest.mark.parametrize(
    "opened, tokens, events, thinking_tokens",
    [
        pytest.param(True, [WORD, WORD, END, WORD], [THOUGHT, THOUGHT, CLOSED, OUTSIDE], 2, id="template-opened"),
        pytest.param(True, [START, WORD, END], [OPENED, THOUGHT, CLOSED], 1, id="reopened-at-once-is-a-marker"),
        pytest.param(True, [WORD, START, END], [THOUGHT, THOUGHT, CLOSED], 2, id="a-late-start-marker-is-thinking"),
        pytest.param(
            False,
            [START, WORD, END, START, WORD],
            [OPENED, THOUGHT, CLOSED, OUTSIDE, OUTSIDE],
            1,
            id="model-opened-then-answer",
        ),
        pytest.param(False, [WORD, START, WORD], [OUTSIDE, OUTSIDE, OUTSIDE], 0, id="no-thinking"),
        pytest.param(False, [END, WORD], [CLOSED, OUTSIDE], 0, id="closed-before-opening"),
    ],
)
def test_thinking_phase(opened, tokens, events, thinking_tokens):
    phase = ThinkingPhase(START, END, opened)
    assert [phase.advance(token) for token in tokens] == events
    assert phase.thinking_tokens == thinking_tokens


@pytest.mark.parametrize("opened", [True, False])
@pytest.mark.parametrize(
    "lead", [[], [START], [START, WORD], [END], [WORD]], ids=["fresh", "open", "thinking", "closed", "answer"]
)
@pytest.mark.parametrize("count", [1, 3])
def test_unmarked_tokens_at_once_leave_the_state_one_by_one_does(opened, lead, count):
    one_by_one, at_once = ThinkingPhase(START, END, opened), ThinkingPhase(START, END, opened)
    for token in lead:
        one_by_one.advance(token), at_once.advance(token)
    thought = [one_by_one.advance(WORD) for _ in range(count)]
    assert at_once.advance_unmarked(count) == (thought == [THOUGHT] * count)
    assert (at_once.state, at_once.thinking_tokens) == (one_by_one.state, one_by_one.thinking_tokens)


@pytest.mark.parametrize(
    "message, expected",
    [
        pytest.param({"reasoning_content": "r", "content": "c"}, "r</think>c", id="reasoning_content"),
        pytest.param({"reasoning": "r", "content": "c"}, "r</think>c", id="reasoning"),
        pytest.param(
            {"reasoning_content": "r", "reasoning": "other", "content": "c"}, "r</think>c", id="first-field-wins"
        ),
        pytest.param({"content": "x</think>y"}, "x</think>y", id="inline"),
        pytest.param({"content": None}, "", id="empty"),
    ],
)
def test_as_written(message, expected):
    assert as_written(message) == expected


class FakeTokenizer:
    def __init__(self, vocab, special=(), chat_template=""):
        self.vocab, self.all_special_ids, self.chat_template = vocab, list(special), chat_template

    def encode(self, text, add_special_tokens=False):
        return [self.vocab[text]] if text in self.vocab else [0, 1]


def test_find_markers_prefers_the_pair_the_template_uses():
    tokenizer = FakeTokenizer(
        {"<think>": 5, "</think>": 6, "<seed:think>": 7, "</seed:think>": 8}, chat_template="... </seed:think> ..."
    )
    assert find_markers(tokenizer).end == "</seed:think>"
    assert find_markers(FakeTokenizer(tokenizer.vocab)).end == "</think>"


def test_find_markers_none_without_thinking_tokens_and_special_flag():
    assert find_markers(FakeTokenizer({"hello": 1})) is None
    markers = find_markers(FakeTokenizer({"<think>": 5, "</think>": 6}, special=[6]))
    assert (markers.start_id, markers.end_id, markers.special) == (5, 6, True)


def test_find_markers_requires_the_probes_markers():
    with pytest.raises(ValueError, match="another model family"):
        find_markers(FakeTokenizer({"<think>": 5, "</think>": 6}), preferred=("<t>", "</t>"))


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("A\n\n</think>\n\nB", ("A\n\n", "\n\nB"), id="opened-by-the-prompt"),
        pytest.param("<think>\nA</think>B", ("\nA", "B"), id="opened-by-the-model"),
        pytest.param("\n<think>A</think>B", ("A", "B"), id="blanks-before-the-start-marker"),
        pytest.param("A<think>B</think>C", ("A<think>B", "C"), id="a-later-start-marker-is-thinking"),
        pytest.param("A</think>B</think>C", ("A", "B</think>C"), id="first-end-marker-ends-it"),
        pytest.param("A, cut off", ("A, cut off", None), id="cut-off"),
        pytest.param("</think>B", ("", "B"), id="no-thinking"),
    ],
)
def test_split_thinking(text, expected):
    assert split_thinking(text) == expected


def test_split_thinking_with_other_markers():
    assert split_thinking("<seed:think>A</seed:think>B", "</seed:think>", "<seed:think>") == ("A", "B")
