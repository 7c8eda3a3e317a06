import json

import pytest

from probexit.training.problem_files import export_dataset, load_problems


def write(tmp_path, lines):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_loads_questions_and_answers(tmp_path):
    path = write(tmp_path, ['{"question": "What is 1 + 2 + 3?", "answer": "6"}', "", '{"question": "q", "answer": 7}'])
    problems = load_problems(path)
    assert [(p.question, p.answer) for p in problems] == [("What is 1 + 2 + 3?", "6"), ("q", "7")]


@pytest.mark.parametrize(
    "lines, message",
    [
        pytest.param(["not json"], "p.jsonl:1: not a JSON object", id="not-json"),
        pytest.param(['{"answer": "1"}'], "p.jsonl:1: expected an object", id="no-question"),
        pytest.param(
            ['{"question": "q", "answer": "1"}', '{"question": "q2"}'], "p.jsonl:2: no 'answer'", id="no-answer"
        ),
        pytest.param(['{"question": "q", "answer": [1]}'], "'answer' must be", id="bad-answer"),
        pytest.param([""], "holds no problems", id="empty"),
    ],
)
def test_malformed_files_name_the_line(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        load_problems(write(tmp_path, lines))


def test_answers_optional_when_not_required(tmp_path):
    assert load_problems(write(tmp_path, ['{"question": "q"}']), require_answers=False)[0].answer is None


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_problems(tmp_path / "absent.jsonl")


def test_export_gsm8k_and_math(tmp_path):
    from datasets import Dataset

    gsm8k = Dataset.from_dict({"question": ["Tom has 2 apples..."], "answer": ["2 + 3 = 5\n#### 1,005"]})
    assert export_dataset(gsm8k, "gsm8k", tmp_path / "g.jsonl") == 1
    assert json.loads((tmp_path / "g.jsonl").read_text()) == {"question": "Tom has 2 apples...", "answer": "1005"}
    math = Dataset.from_dict({"problem": ["Find x."], "solution": [r"So $x = \boxed{\frac{1}{2}}$."]})
    export_dataset(math, "math", tmp_path / "m.jsonl")
    assert json.loads((tmp_path / "m.jsonl").read_text())["answer"] == r"\frac{1}{2}"
