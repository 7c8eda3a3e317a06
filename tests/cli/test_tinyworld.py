import json

import pytest

from probexit.cli.main import main
from probexit.training.tinyworld.problems import Problem, fresh_problems, parse_question, write_jsonl


def _splits(folder, problems: list[Problem]):
    write_jsonl(problems[:2], folder / "train.jsonl")
    write_jsonl(problems[2:], folder / "test.jsonl")
    return folder


def test_fresh_draws_problems_no_split_holds(tmp_path, capsys):
    # Sums that a draw from seed 3 meets first, asked in other words in the splits: they must still be avoided.
    early = fresh_problems(4, 3, [])
    rephrased = [Problem(p.numbers, p.ops, (p.phrasing + 1) % 7) for p in early]
    splits = _splits(tmp_path / "splits", rephrased)
    out = tmp_path / "fresh.jsonl"
    assert main(["tinyworld", "fresh", "--out", str(out), "--count", "50", "--seed", "3", "--splits", str(splits)]) == 0
    drawn = [json.loads(line) for line in out.read_text().splitlines()]
    sums = [parse_question(line["question"]) for line in drawn]
    assert len(drawn) == 50 and len(set(sums)) == 50 and not set(sums) & set(early)
    assert all(int(line["answer"]) == problem.answer for line, problem in zip(drawn, sums))
    assert "50 problems" in capsys.readouterr().out


@pytest.mark.parametrize(
    "files, flags, message",
    [
        pytest.param({}, [], "no split files", id="no-splits"),
        pytest.param({"a.jsonl": '{"question": "hello"}\n'}, [], "a.jsonl: not a tiny-world question", id="garbage"),
        pytest.param({"a.jsonl": "[1, 2]\n"}, [], "a.jsonl:1: expected an object", id="not-an-object"),
        pytest.param({}, ["--count", "0"], "--count must be positive", id="count"),
    ],
)
def test_fresh_refuses_bad_input_in_one_line(tmp_path, capsys, files, flags, message):
    splits = tmp_path / "splits"
    splits.mkdir()
    for name, text in files.items():
        (splits / name).write_text(text)
    out = tmp_path / "fresh.jsonl"
    assert main(["tinyworld", "fresh", "--out", str(out), "--splits", str(splits), *flags]) != 0
    assert not out.exists()
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0
