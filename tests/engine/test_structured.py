"""Structured outputs on the answer: the engine configuration start-up makes, the thinking parser vLLM runs, and the
check of a request's constraint before it reaches the engine; no engine needed."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from probexit.engine import setup as engine_setup
from probexit.engine.config import EngineConfig
from probexit.engine.structured import (
    THINKING_PARSER_MODULE,
    THINKING_PARSER_NAME,
    AnswerFormatError,
    answer_constraint,
    check_answer_constraint,
    generate_options,
    with_answer_grammar,
)


@pytest.fixture(scope="module")
def setup(test_model_dir):
    return engine_setup.prepare(EngineConfig(str(test_model_dir), "m"))


@pytest.fixture(scope="module")
def tokenizer(test_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(test_model_dir)


def test_start_up_makes_json_compact_and_starts_the_grammar_after_the_thinking(setup):
    config = setup.vllm_config.structured_outputs_config
    assert (config.backend, config.disable_any_whitespace) == ("xgrammar", True)
    assert (config.reasoning_parser, config.reasoning_parser_plugin) == (THINKING_PARSER_NAME, THINKING_PARSER_MODULE)
    assert setup.vllm_config.reasoning_config is None  # vLLM's own thinking budget stays off: early exit owns it


def test_what_the_user_configured_is_kept(setup):
    from vllm.config import StructuredOutputsConfig

    args = setup.engine_args
    chosen = dataclasses.replace(args, structured_outputs_config=StructuredOutputsConfig(backend="guidance"))
    kept = with_answer_grammar(chosen, setup.markers).structured_outputs_config
    assert (kept.backend, kept.disable_any_whitespace, kept.reasoning_parser) == (
        "guidance",
        False,
        THINKING_PARSER_NAME,
    )
    own_parser = dataclasses.replace(chosen, reasoning_parser="deepseek_r1")
    assert with_answer_grammar(own_parser, setup.markers).structured_outputs_config.reasoning_parser == ""
    assert with_answer_grammar(chosen, None).structured_outputs_config.reasoning_parser == ""  # no markers


def test_the_thinking_parser_vllm_imports_follows_the_markers(setup, tokenizer):
    from vllm.reasoning import ReasoningParserManager

    importlib.import_module(THINKING_PARSER_MODULE)  # what vLLM's engine process does with the plugin name
    parser_class = ReasoningParserManager.get_reasoning_parser(THINKING_PARSER_NAME)
    markers = setup.markers
    params = answer_constraint(json_object=True)
    from vllm import SamplingParams

    options = generate_options(setup, SamplingParams(structured_outputs=params))
    parser = parser_class(tokenizer, **options["reasoning_parser_kwargs"])
    opened, closed = (
        tokenizer.encode(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": "1 + 1?"}], tokenize=False, add_generation_prompt=True, enable_thinking=on
            ),
            add_special_tokens=False,
        )
        for on in (True, False)
    )
    assert not parser.is_reasoning_end(opened) and parser.is_reasoning_end(closed)
    assert parser.is_reasoning_end_streaming(opened, [markers.end_id])
    assert not parser.is_reasoning_end_streaming(opened, tokenizer.encode("So the answer is 2."))
    assert generate_options(setup, SamplingParams()) == {}  # only a constrained request tells the markers
    with pytest.raises(ValueError, match="end marker"):
        parser_class(tokenizer)


def test_a_schema_the_backend_cannot_compile_is_refused_with_its_reason(setup, tokenizer):
    check_answer_constraint(answer_constraint(json_schema={"type": "object"}), setup, tokenizer)
    check_answer_constraint(answer_constraint(json_object=True), setup, tokenizer)
    with pytest.raises(AnswerFormatError, match="parenthesis"):
        check_answer_constraint(answer_constraint(json_schema={"type": "string", "pattern": "("}), setup, tokenizer)
