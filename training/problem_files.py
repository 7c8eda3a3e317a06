"""Problem files: JSONL lines `{"question": ..., "answer": ...}` (answer optional where no gold is read),
and their export from Hugging Face `datasets` (GSM8K, MATH) for real models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProblemRecord:
    question: str
    answer: str | None


def load_problems(path: str | Path, require_answers: bool = True) -> list[ProblemRecord]:
    """Read a problem file; every malformed line is an error that names the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"problem file {path} does not exist")
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="strict").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not a JSON object ({error.msg})") from None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("question"), str)
            or not record["question"].strip()
        ):
            raise ValueError(f"{path}:{number}: expected an object with a non-empty string 'question'")
        answer = record.get("answer")
        if answer is not None and not isinstance(answer, (str, int, float)):
            raise ValueError(f"{path}:{number}: 'answer' must be a string or a number")
        if require_answers and answer is None:
            raise ValueError(f"{path}:{number}: no 'answer' (this job needs gold answers)")
        problems.append(ProblemRecord(record["question"], None if answer is None else str(answer)))
    if not problems:
        raise ValueError(f"problem file {path} holds no problems")
    return problems


def write_problems(problems: list[ProblemRecord], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for problem in problems:
            record = {"question": problem.question}
            if problem.answer is not None:
                record["answer"] = problem.answer
            handle.write(json.dumps(record) + "\n")


# -- exports from `datasets` ------------------------------------------------------------------------------
def gsm8k_record(row: dict) -> ProblemRecord:
    """GSM8K's answer ends with `#### 42`."""
    return ProblemRecord(row["question"], row["answer"].split("####")[-1].strip().replace(",", ""))


def math_record(row: dict) -> ProblemRecord:
    """MATH's gold answer is the last \\boxed{...} of its solution (or an `answer` column, as in MATH-500)."""
    from probexit.probes.answers import BoxedExtractor

    answer = row.get("answer") or BoxedExtractor().extract(row["solution"])
    return ProblemRecord(row["problem"], answer)


EXPORTERS = {"gsm8k": gsm8k_record, "math": math_record}


def export_dataset(dataset, kind: str, out: str | Path, limit: int | None = None) -> int:
    """Write a `datasets.Dataset` (already loaded, e.g. load_dataset("openai/gsm8k", "main", split="train"))
    as a problem file; returns the number of problems written."""
    if kind not in EXPORTERS:
        raise ValueError(f"unknown dataset kind {kind!r}: use {', '.join(EXPORTERS)}")
    rows = dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
    records = [EXPORTERS[kind](row) for row in rows]
    write_problems([r for r in records if r.answer], out)
    return sum(1 for r in records if r.answer)
