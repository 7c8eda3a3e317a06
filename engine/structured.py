"""Structured outputs on the answer only: vLLM's grammar backend, started once the thinking ends.

A request's constraint (a JSON schema, or any JSON object) becomes vLLM's `StructuredOutputsParams`. vLLM masks the
logits with the grammar's bitmask only after its reasoning parser has seen the end-of-thinking marker, so the
thinking stays free and the grammar starts at the first answer token. The server configures that parser for the
model's own markers (`thinking_parser.py`) unless the user named one with `--reasoning-parser`, and makes the JSON
compact unless the user configured the backend (`with_answer_grammar`).

Order within one decode step (vLLM 0.32, `gpu_model_runner.sample_tokens`, which the CPU runner shares): the
grammar bitmask is applied to the logits first, then the logits processors (early exit's among them). While a
request thinks its bitmask row allows every token, so the `</think>` that early exit forces is never masked; the
token then ends the thinking for the grammar too, exactly as if the model had written it.
"""

from __future__ import annotations

import copy
import dataclasses

THINKING_PARSER_NAME = "probexit_markers"  # the name `thinking_parser.py` registers its parser under
THINKING_PARSER_MODULE = "probexit.engine.thinking_parser"  # what vLLM's engine process imports to find it
COMPACT_BACKEND = "xgrammar"  # vLLM's backends that can leave whitespace out are xgrammar and guidance


class AnswerFormatError(ValueError):
    """vLLM's structured-output backend cannot build a grammar from the request's format; the message says why."""


def with_answer_grammar(args, markers):
    """Engine arguments for structured outputs on the answer: the grammar starts after the model's thinking
    (`markers`; unchanged when the user chose vLLM's `--reasoning-parser` or the model has no markers), and, unless
    the user configured `--structured-outputs-config`, the JSON is compact (xgrammar with no free whitespace), as
    OpenAI's structured outputs are. Free whitespace lets a model that never saw JSON spend its whole budget on
    newlines inside the object (the tiny world does: measured), and compact JSON is what clients expect anyway."""
    from vllm.config import StructuredOutputsConfig

    config = args.structured_outputs_config if args.structured_outputs_config is not None else StructuredOutputsConfig()
    changes = {}
    if config == StructuredOutputsConfig():
        changes.update(backend=COMPACT_BACKEND, disable_any_whitespace=True)
    if markers is not None and not args.reasoning_parser and not config.reasoning_parser:
        changes.update(reasoning_parser=THINKING_PARSER_NAME, reasoning_parser_plugin=THINKING_PARSER_MODULE)
    if not changes:
        return args
    return dataclasses.replace(args, structured_outputs_config=dataclasses.replace(config, **changes))


def answer_constraint(*, json_schema: dict | None = None, json_object: bool = False):
    """vLLM's `StructuredOutputsParams` for an answer that matches `json_schema`, or is any JSON object."""
    from vllm.sampling_params import StructuredOutputsParams

    if json_schema is not None:
        return StructuredOutputsParams(json=json_schema)
    if json_object:
        return StructuredOutputsParams(json_object=True)
    raise ValueError("an answer constraint needs a JSON schema or json_object")


def check_answer_constraint(constraint, setup, tokenizer) -> None:
    """Raises AnswerFormatError when the engine would refuse the constraint, with the backend's reason: the check
    the engine runs when a request arrives, made before a streamed response has sent its 200."""
    from vllm import SamplingParams
    from vllm.exceptions import VLLMValidationError

    trial = SamplingParams(max_tokens=1, structured_outputs=copy.deepcopy(constraint))
    config = setup.vllm_config
    try:
        trial.verify(config.model_config, None, config.structured_outputs_config, tokenizer)
    except VLLMValidationError as error:
        raise AnswerFormatError(" ".join(str(error.args[0] if error.args else error).split())) from None


def generate_options(setup, params) -> dict:
    """Keyword arguments of the engine's `generate` for one request: a constrained request tells the thinking
    parser the model's markers."""
    config = setup.vllm_config.structured_outputs_config
    if params.structured_outputs is None or setup.markers is None or config.reasoning_parser != THINKING_PARSER_NAME:
        return {}
    return {"reasoning_parser_kwargs": {"start_id": setup.markers.start_id, "end_id": setup.markers.end_id}}
