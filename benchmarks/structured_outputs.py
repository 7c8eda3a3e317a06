"""`probexit bench structured`: structured outputs with early exit, on the server's problems.

The same problems and seeds run four ways: with and without a JSON schema on the answer (`response_format`
json_schema), each with early exit on (the server's default) and off. It reports whether every schema answer parses
and validates, how often early exit ended the thinking, the share of thinking early exit saves with the schema and
without it (they should agree: the grammar starts only after the thinking, so with the same seed the thinking is
the same text), the share of problems whose thinking is indeed identical with and without the schema, and the
accuracy of each run (a schema answer's `answer` field against the gold answer).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

from probexit.probes.answers import final_answer
from probexit.probes.equivalence import MathEquivalence
from probexit.training.problem_files import ProblemRecord

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "integer"}},
    "required": ["answer"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {"type": "json_schema", "json_schema": {"name": "result", "schema": ANSWER_SCHEMA, "strict": True}}
FORMS = ("free", "schema")
EXITS = ("early_exit", "to_the_end")  # the server's default; early_exit {"enabled": false}
REPORT_NAME = "structured_outputs.json"
DEFAULT_PROBLEMS = 100


@dataclass(frozen=True)
class StructuredSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": f"Writes DIR/{REPORT_NAME} (and DIR/server.log)."})


async def run_benchmark(
    base_url: str, api_key: str, problems: list[ProblemRecord], sampling: dict, concurrency: int, problems_file: str
) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=600)
    model = (await client.models.list()).data[0].id
    semaphore = asyncio.Semaphore(concurrency)
    equivalence = MathEquivalence()

    async def one(index: int, form: str, exit_: str) -> dict:
        async with semaphore:
            problem = problems[index]
            response = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": problem.question}],
                seed=sampling["seed"] + index,
                temperature=sampling["temperature"],
                top_p=sampling["top_p"],
                max_tokens=sampling["max_tokens"],
                **({"response_format": RESPONSE_FORMAT} if form == "schema" else {}),
                extra_body={"early_exit": {"enabled": False}} if exit_ == "to_the_end" else None,
            )
        return grade(response, problem, form, equivalence)

    runs = {}
    for form in FORMS:
        for exit_ in EXITS:
            runs[f"{form}/{exit_}"] = await asyncio.gather(*(one(i, form, exit_) for i in range(len(problems))))
            print(f"{form}/{exit_}: {len(problems)} requests done")
    return build_report(runs, sampling, problems_file)


def grade(response, problem: ProblemRecord, form: str, equivalence: MathEquivalence) -> dict:
    """One answer: its thinking, whether it is valid (schema: parses and validates), and whether it is right."""
    from jsonschema import ValidationError, validate

    choice = response.choices[0]
    report = (choice.model_extra or {}).get("early_exit") or {}
    content = choice.message.content or ""
    valid, answer = True, None
    if form == "schema":
        try:
            parsed = json.loads(content)
            validate(parsed, ANSWER_SCHEMA)
            answer = str(parsed["answer"])
        except (json.JSONDecodeError, ValidationError):
            valid = False
    else:
        answer = final_answer(content)
    return {
        "valid": valid,
        "correct": bool(answer) and equivalence.same(answer, problem.answer),
        "reasoning": (choice.model_extra or {}).get("reasoning_content") or "",
        "reasoning_tokens": int(report.get("reasoning_tokens", 0)),
        "triggered": bool(report.get("triggered")),
        "finish_reason": choice.finish_reason,
        "content": content,
    }


def build_report(runs: dict[str, list[dict]], sampling: dict, problems_file: str) -> dict:
    n = len(next(iter(runs.values())))
    summary = {
        name: {
            "valid_pct": 100 * sum(r["valid"] for r in results) / n,
            "accuracy": sum(r["correct"] for r in results) / n,
            "triggered_pct": 100 * sum(r["triggered"] for r in results) / n,
            "mean_reasoning_tokens": sum(r["reasoning_tokens"] for r in results) / n,
            "cut_by_max_tokens": sum(r["finish_reason"] == "length" for r in results),
        }
        for name, results in runs.items()
    }
    saved = {
        form: 100
        * (
            1
            - summary[f"{form}/early_exit"]["mean_reasoning_tokens"]
            / summary[f"{form}/to_the_end"]["mean_reasoning_tokens"]
        )
        for form in FORMS
    }
    same_thinking = {
        exit_: 100
        * sum(a["reasoning"] == b["reasoning"] for a, b in zip(runs[f"free/{exit_}"], runs[f"schema/{exit_}"]))
        / n
        for exit_ in EXITS
    }
    invalid = [r["content"][:200] for name in runs if name.startswith("schema/") for r in runs[name] if not r["valid"]]
    return {
        "problems": n,
        "problems_file": problems_file,
        "sampling": sampling,
        "schema": ANSWER_SCHEMA,
        "runs": summary,
        "saved_thinking_pct": saved,
        "saved_difference_pts": saved["schema"] - saved["free"],
        "same_thinking_pct": same_thinking,
        "invalid_schema_answers": invalid[:10],
    }


def summary_lines(report: dict) -> list[str]:
    runs, saved = report["runs"], report["saved_thinking_pct"]
    return [
        f"{report['problems']} problems: schema answers valid {runs['schema/early_exit']['valid_pct']:.0f}% with early "
        f"exit (triggered in {runs['schema/early_exit']['triggered_pct']:.0f}%), "
        f"{runs['schema/to_the_end']['valid_pct']:.0f}% without",
        f"thinking saved by early exit: {saved['schema']:.1f}% with the schema, {saved['free']:.1f}% without "
        f"({report['saved_difference_pts']:+.1f} points); thinking identical with and without the schema in "
        f"{report['same_thinking_pct']['early_exit']:.0f}% / {report['same_thinking_pct']['to_the_end']:.0f}%",
    ]


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / REPORT_NAME
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
