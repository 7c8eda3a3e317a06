"""A tiny-world tokenizer trained in a second, so the probe tests need no model."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from probexit.training.tinyworld.problems import random_problem
    from probexit.training.tinyworld.tokenizer import IM_END, render_chat, train_tokenizer
    from probexit.training.tinyworld.traces import TraceStyle, sample_trace

    rng = random.Random(0)
    corpus = []
    for _ in range(2000):
        problem = random_problem(rng)
        completion = sample_trace(problem, TraceStyle(), rng).completion
        corpus.append(render_chat([{"role": "user", "content": problem.question}]) + completion + IM_END)
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(corpus, 512, out)
    return AutoTokenizer.from_pretrained(out)
