import pytest

from probexit.probes.markers import ThinkingMarkers
from probexit.server.reasoning import ReasoningSplitter

START, END = 10, 11
MARKERS = ThinkingMarkers("<think>", "</think>", START, END, special=False)
TEXT = {START: "<think>", END: "</think>", 1: "So", 2: " 3", 3: ".\n\n", 4: "The", 5: " answer", 6: "é"}
OPENED, CLOSED, PLAIN = [7, START, 8], [7, START, 8, END, 8], [7, 8]


def split(token_ids, prompt, deltas="whole", markers=MARKERS):
    splitter = ReasoningSplitter(markers, prompt)
    pieces = [token_ids] if deltas == "whole" else [[token_id] for token_id in token_ids]
    reasoning = content = ""
    for index, piece in enumerate(pieces):
        r, c = splitter.feed(piece, "".join(TEXT[t] for t in piece), final=index == len(pieces) - 1)
        reasoning, content = reasoning + r, content + c
    return reasoning, content, splitter.reasoning_tokens


@pytest.mark.parametrize("deltas", ["whole", "per-token"])
@pytest.mark.parametrize(
    "prompt, tokens, expected",
    [
        pytest.param(OPENED, [1, 2, 3, END, 4, 5], ("So 3.\n\n", "The answer", 3), id="template-opened"),
        pytest.param(PLAIN, [START, 1, 2, END, 4], ("So 3", "The", 2), id="model-opens-qwen3"),
        pytest.param(PLAIN, [4, 5, END, 1], ("", "The answer</think>So", 0), id="no-thinking"),
        pytest.param(CLOSED, [4, 5], ("", "The answer", 0), id="template-closed-enable-thinking-false"),
        pytest.param(OPENED, [START, 1, END, 4], ("So", "The", 1), id="leading-duplicate-start-hidden"),
        pytest.param(OPENED, [1, START, END, 4], ("So<think>", "The", 2), id="later-start-is-text"),
        pytest.param(OPENED, [1, 2, 6], ("So 3é", "", 3), id="never-closes"),
        pytest.param(OPENED, [1, END, 4, END, 5], ("So", "The</think> answer", 1), id="second-end-is-text"),
    ],
)
def test_split(prompt, tokens, expected, deltas):
    assert split(tokens, prompt, deltas) == expected


def test_without_markers_everything_is_content():
    assert split([1, END, 4], OPENED, markers=None) == ("", "So</think>The", 0)


def test_marker_text_held_back_across_deltas():
    """With stop strings the engine holds text back, so a marker's text may straddle two deltas."""
    splitter = ReasoningSplitter(MARKERS, OPENED)
    assert splitter.feed([1, END], "So</th") == ("So", "")
    assert splitter.feed([4], "ink>The") == ("", "The")


def test_final_delta_flushes_a_held_back_prefix():
    """A stop string may cut the text before the marker's text ever arrives: nothing is lost."""
    splitter = ReasoningSplitter(MARKERS, OPENED)
    assert splitter.feed([1, END], "So </") == ("So ", "")
    assert splitter.feed([4], "x", final=True) == ("</x", "")
