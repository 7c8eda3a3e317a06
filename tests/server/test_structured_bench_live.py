"""`probexit bench structured` against the session's real server on a few problems: every schema answer parses and
validates, with early exit and without, and early exit does end the thinking under the schema."""

import asyncio

import pytest

from probexit.benchmarks.structured_outputs import run_benchmark, summary_lines, write_report
from probexit.training.problem_files import ProblemRecord

PROBLEMS = [ProblemRecord("What is 3 + 14 - 7?", "10"), ProblemRecord("What is 12 - 5 + 9?", "16")]


@pytest.mark.slow
def test_schema_answers_are_valid_and_early_exit_still_ends_the_thinking(server, tmp_path):
    sampling = {"seed": 0, "temperature": 0.6, "top_p": 0.95, "max_tokens": 400}
    report = asyncio.run(run_benchmark(server.base_url + "/v1", server.api_key, PROBLEMS, sampling, 4, "inline"))
    runs = report["runs"]
    assert runs["schema/early_exit"]["valid_pct"] == 100.0 and runs["schema/to_the_end"]["valid_pct"] == 100.0
    assert runs["schema/early_exit"]["triggered_pct"] > 0 and runs["schema/to_the_end"]["triggered_pct"] == 0
    # the grammar waits for the end of the thinking: with the same seed, the same thinking
    assert report["same_thinking_pct"]["to_the_end"] == 100.0
    assert write_report(report, tmp_path).is_file() and len(summary_lines(report)) == 2
