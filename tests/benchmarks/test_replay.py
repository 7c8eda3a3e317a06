"""`probexit bench replay` end to end on written traces, in every input form, and on bad input."""

import json
from pathlib import Path

import pytest

from probexit.benchmarks.replay import load_traces, run_replay, split_message
from probexit.cli.main import main
from tests.benchmarks.replay_traces import BASES, CUT_OFF, TRACES

TINYWORLD_TOKENIZER = Path(__file__).resolve().parents[2] / "assets" / "tinyworld" / "policy"


def completion_lines(think_tag: bool) -> list[dict]:
    lines = []
    for trace_id, gold, thinking, final in TRACES:
        text = ("<think>" if think_tag else "") + thinking + ("" if final is None else "</think>\n\n" + final)
        lines.append({"id": trace_id, "completion": text, "answer": gold})
    return lines


def chat_lines(field: str) -> list[dict]:
    return [
        {
            "id": trace_id,
            "answer": gold,
            "choices": [{"message": {"role": "assistant", field: thinking, "content": final}}],
        }
        for trace_id, gold, thinking, final in TRACES
    ]


def write(tmp_path: Path, lines: list, name: str = "traces.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("replay")
    return run_replay(write(out, completion_lines(think_tag=True)), out / "report", ("reasoning",))


def test_report_fields(report):
    assert report["unit"] == "chars" and report["extractors"] == ["reasoning"]
    assert [t["id"] for t in report["traces"]] == [t[0] for t in TRACES]
    assert {"saved_pct", "accuracy"} <= set(report["oracle"])
    names = {(p["name"], p["param"]) for p in report["policies"]}
    assert {("first", "-"), ("consistency", "k=2"), ("consistency", "k=3")} <= names
    assert sum(p["name"] == "budget" for p in report["policies"]) >= 3
    for row in report["policies"]:
        assert {"name", "param", "accuracy", "saved_pct"} <= set(row)


def test_boundaries_are_character_offsets_in_the_thinking(report):
    thinking = {t[0]: t[2] for t in TRACES}
    for trace in report["traces"]:
        assert trace["thinking_length"] == len(thinking[trace["id"]])
        for boundary in trace["boundaries"]:
            assert thinking[trace["id"]][: boundary["end"]].endswith("\n\n")
            assert set(boundary) == {"end", "answer", "answer_correct"}


def test_answers_graded_against_gold(report):
    by_id = {t["id"]: t for t in report["traces"]}
    bases = by_id["bases"]
    assert [b["answer"] for b in bases["boundaries"]] == ["70", "70"]
    assert bases["correct"] and all(b["answer_correct"] for b in bases["boundaries"])
    assert bases["boundaries"][0]["end"] == BASES[2].index("Wait, let me")
    corrected = by_id["corrected"]  # a wrong answer corrected later
    assert [(b["answer"], b["answer_correct"]) for b in corrected["boundaries"]] == [
        ("72", False),
        ("72", False),
        ("12", False),
        ("84", True),
    ]
    fraction = by_id["fraction"]
    assert ("\\frac{3}{8}", True) in [(b["answer"], b["answer_correct"]) for b in fraction["boundaries"]]
    assert not by_id["wrong"]["correct"]


def test_a_trace_cut_off_without_end_of_thinking(report):
    cut = next(t for t in report["traces"] if t["id"] == "cut-off")
    assert not cut["correct"]  # no final answer was written
    assert cut["thinking_length"] == len(CUT_OFF[2])
    assert [(b["answer"], b["answer_correct"]) for b in cut["boundaries"]] == [("376", True)]


def test_oracle_exits_at_the_first_right_answer(report):
    by_id = {t["id"]: t for t in report["traces"]}
    ends = [
        next((b["end"] for b in t["boundaries"] if b["answer_correct"]), t["thinking_length"]) for t in report["traces"]
    ]
    total = sum(t["thinking_length"] for t in report["traces"])
    assert report["oracle"]["saved_pct"] == pytest.approx(100 * (1 - sum(ends) / total))
    # Right at a boundary in 4 of 5 traces (the cut-off one included); only "wrong" never states 12.
    assert report["oracle"]["accuracy"] == pytest.approx(4 / 5)
    assert report["baseline"]["accuracy"] == pytest.approx(3 / 5)
    # Exiting at the first answer is right only for bases and cut-off: corrected says 72 first, fraction 8.
    first = next(p for p in report["policies"] if p["name"] == "first")
    assert first["accuracy"] == pytest.approx(2 / 5)
    assert [by_id[i]["boundaries"][0]["answer"] for i in ("corrected", "fraction")] == ["72", "8"]


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param(completion_lines(think_tag=False), id="completion-without-think-tag"),
        pytest.param(chat_lines("reasoning_content"), id="chat-reasoning_content"),
        pytest.param(chat_lines("reasoning"), id="chat-reasoning"),
    ],
)
def test_every_input_form_gives_the_same_boundaries(lines, report, tmp_path):
    other = run_replay(write(tmp_path, lines), tmp_path / "out", ("reasoning",))
    for mine, theirs in zip(other["traces"], report["traces"]):
        assert mine["boundaries"] == theirs["boundaries"] and mine["thinking_length"] == theirs["thinking_length"]
    # A chat response has no </think> to lose: the cut-off trace's empty content is simply no final answer.
    assert [t["correct"] for t in other["traces"]] == [t["correct"] for t in report["traces"]]


def test_split_message_forms():
    assert split_message({"content": "<think>\nA\n\n</think>\n\nB"}) == ("\nA\n\n", "\n\nB")
    assert split_message({"content": "A\n\n</think>B"}) == ("A\n\n", "B")
    assert split_message({"content": "A\n\nno end"}) == ("A\n\nno end", None)
    assert split_message({"reasoning": "R", "content": "C"}) == ("R", "C")


def test_cli_with_the_tiny_world_tokenizer(tmp_path, capsys):
    traces = write(tmp_path, completion_lines(think_tag=True))
    assert (
        main(
            [
                "bench",
                "replay",
                "--traces",
                str(traces),
                "--tokenizer",
                str(TINYWORLD_TOKENIZER),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (tmp_path / "out" / "replay.png").is_file()
    assert report["unit"] == "tokens"
    thinking = {t[0]: t[2] for t in TRACES}
    for trace in report["traces"]:
        assert trace["thinking_length"] < len(thinking[trace["id"]])  # tokens, not characters
        for boundary in trace["boundaries"]:
            assert thinking[trace["id"]][: boundary["end"]].endswith("\n\n")  # `end` stays in characters
            assert 0 < boundary["end_tokens"] <= trace["thinking_length"]
    assert "oracle" in capsys.readouterr().out


def test_cli_tiny_world_extractors_find_no_prose_answers(tmp_path):
    traces = write(tmp_path, completion_lines(think_tag=True))
    assert (
        main(
            [
                "bench",
                "replay",
                "--traces",
                str(traces),
                "--extractors",
                "tinyworld,boxed,answer_is",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["extractors"] == ["tinyworld", "boxed", "answer_is"]
    assert report["boundaries"] < 5  # only the explicit "the answer is" paragraphs


@pytest.mark.parametrize(
    "lines, message",
    [
        pytest.param(
            [{"completion": "x", "answer": "1"}, "{not json"], "traces.jsonl:2: not valid JSON", id="bad-json-line"
        ),
        pytest.param(
            [{"completion": "So it is 3.\n\n"}], 'traces.jsonl:1: missing the gold "answer"', id="missing-answer"
        ),
        pytest.param(
            [{"answer": "3", "text": "So it is 3."}], 'traces.jsonl:1: no "completion"', id="missing-completion"
        ),
        pytest.param([["a", "list"]], "traces.jsonl:1: expected a JSON object", id="not-an-object"),
        pytest.param([], "no traces", id="empty-file"),
        pytest.param(
            [{"completion": "<think>one line of thought</think>\n\nSo 3.", "answer": "3"}],
            "no trace's thinking has a paragraph break",
            id="no-paragraph-breaks",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_line(lines, message, tmp_path, capsys):
    traces = write(tmp_path, lines)
    assert main(["bench", "replay", "--traces", str(traces), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_rejects_unknown_extractors_and_missing_files(tmp_path, capsys):
    assert main(["bench", "replay", "--traces", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)]) == 2
    assert "no traces file" in capsys.readouterr().err
    traces = write(tmp_path, completion_lines(think_tag=True))
    assert main(["bench", "replay", "--traces", str(traces), "--extractors", "prose", "--out", str(tmp_path)]) == 2
    assert "unknown answer extractor" in capsys.readouterr().err


def test_load_traces_numbers_ids_by_line(tmp_path):
    path = write(tmp_path, ["", json.dumps({"completion": "a", "answer": 1})])
    assert [t.id for t in load_traces(path)] == ["2"]


def test_replay_starts_no_engine_and_imports_no_server(tmp_path):
    """The replay itself (its module and a whole run) needs neither the HTTP layer nor vLLM."""
    import subprocess
    import sys

    traces = write(tmp_path, completion_lines(think_tag=True))
    code = (
        "import sys; from pathlib import Path; from probexit.benchmarks.replay import run_replay; "
        f"run_replay(Path({str(traces)!r}), Path({str(tmp_path / 'out')!r}), ('reasoning',)); "
        "print(sorted(m for m in sys.modules if m.startswith(('probexit.server', 'vllm'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_paragraph_boundaries_are_every_break_and_text_rules_wait_for_an_answer(tmp_path, report):
    """`--boundaries paragraph`: a boundary at every paragraph break, its answer where the reader reads one; the
    answer-mode boundaries are among them, at the same offsets and with the same answers."""
    traces = write(tmp_path, completion_lines(think_tag=True))
    assert (
        main(["bench", "replay", "--traces", str(traces), "--boundaries", "paragraph", "--out", str(tmp_path / "p")])
        == 0
    )
    paragraph = json.loads((tmp_path / "p" / "report.json").read_text())
    assert paragraph["boundary_mode"] == "paragraph" and report["boundary_mode"] == "answer"
    assert paragraph["boundaries"] == paragraph["paragraphs"] > report["boundaries"]
    for every, answered in zip(paragraph["traces"], report["traces"]):
        stated = [b for b in every["boundaries"] if b["answer"] is not None]
        assert stated == answered["boundaries"]
    assert {r["param"]: r for r in paragraph["policies"]}["k=2"] == {r["param"]: r for r in report["policies"]}["k=2"]
    assert paragraph["oracle"] == report["oracle"]


@pytest.mark.parametrize(
    "question_field",
    [
        pytest.param({"question": "Which is the stopping distance?\nA: 12 m\nB: 18 m\nC: 24 m\n"}, id="question"),
        pytest.param(
            {"prompt": [{"role": "user", "content": "Which is the stopping distance?\nA: 12 m\nB: 18 m\nC: 24 m"}]},
            id="chat-prompt",
        ),
    ],
)
def test_a_trace_with_its_question_reads_an_option_named_by_its_content(question_field, tmp_path):
    thinking = "The car brakes from 12 m/s at 3 m/s^2.\n\nSo the stopping distance is 24 m.\n\n"
    line = {"id": "mc", "completion": "<think>" + thinking + "</think>\n\nThe answer is C.", "answer": "C"}
    (bound,) = load_traces(write(tmp_path, [line | question_field]))
    assert bound.question.rstrip().endswith("C: 24 m")
    with_question = run_replay(write(tmp_path, [line | question_field], "q.jsonl"), tmp_path / "q", ("reasoning",))
    without = run_replay(write(tmp_path, [line], "bare.jsonl"), tmp_path / "bare", ("reasoning",))
    assert [b["answer"] for b in with_question["traces"][0]["boundaries"]] == ["C"]
    assert with_question["traces"][0]["boundaries"][0]["answer_correct"]
    assert [b["answer"] for b in without["traces"][0]["boundaries"]] == ["24"]


@pytest.mark.parametrize(
    "field, message",
    [({"question": 3}, '"question" must be text'), ({"prompt": {"a": 1}}, '"prompt" must be text or a list')],
)
def test_a_question_that_is_not_text_is_one_line_naming_the_line(field, message, tmp_path, capsys):
    traces = write(tmp_path, [{"completion": "<think>So 3.\n\n</think>3", "answer": "3"} | field])
    assert main(["bench", "replay", "--traces", str(traces), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "traces.jsonl:1:" in err and message in err and len(err.strip().splitlines()) == 1
