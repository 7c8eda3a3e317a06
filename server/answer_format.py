"""What a request asks of its answer's form: a JSON response format, or tool calls.

`plan_answer` checks the request's tools, tool choice and response format (every check that can fail happens here,
before a stream could start with a 200) and returns an `AnswerPlan`: the constraint the engine applies to the
answer (never to the thinking: the grammar starts after the end-of-thinking marker) and how tool calls are read
out of the answer:

| tool_choice | the answer | read with |
| --- | --- | --- |
| `none`, or no tools | free text (or the response format) | nothing |
| `auto` (the default with tools) | free text (or the response format) | the server's `--tool-call-parser`, if any |
| `required` | a JSON array of calls, constrained to the tools' schemas | JSON |
| a named function | that function's arguments, constrained to its parameters | JSON |

A forced call (required, named) takes precedence over a response format, as in vLLM's server.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from probexit.engine.structured import AnswerFormatError, answer_constraint, check_answer_constraint
from probexit.engine.tools import AUTO, NAMED, REQUIRED, ToolCallReader, forced_call_schema
from probexit.server.errors import APIError
from probexit.server.protocol import ChatTool, NamedToolChoice, ResponseFormat


@dataclass(frozen=True)
class AnswerPlan:
    """`constraint`: the engine's structured-output parameters (None: a free answer); `tool_mode`: AUTO, REQUIRED
    or NAMED (None: the answer is not read for calls); `function`: the named function."""

    constraint: object | None = None
    tool_mode: str | None = None
    tools: list[dict] = field(default_factory=list)
    function: str | None = None
    parallel: bool = True  # False: at most one call per answer
    skip_special_tokens: bool = True  # False: the tool parser reads special tokens, so the text keeps them

    def reader(self, tokenizer, parser_class) -> ToolCallReader | None:
        """A fresh reader of one choice's calls (None: no calls are read)."""
        if self.tool_mode is None:
            return None
        return ToolCallReader(self.tool_mode, self.tools, tokenizer, parser_class=parser_class, function=self.function)


NO_FORM = AnswerPlan()


# Where each checked value sits in a request, for the error's `param`: the chat API's names, and the Responses API's.
CHAT_PARAMS = {
    "tools": "tools",
    "tool_parameters": "tools.{index}.function.parameters",
    "tool_choice": "tool_choice",
    "format": "response_format",
    "format_schema": "response_format.json_schema.schema",
}
RESPONSES_PARAMS = {
    "tools": "tools",
    "tool_parameters": "tools.{index}.parameters",
    "tool_choice": "tool_choice",
    "format": "text.format",
    "format_schema": "text.format.schema",
}


def plan_answer(
    tools: list[ChatTool] | None,
    tool_choice: str | NamedToolChoice | None,
    parallel: bool | None,
    response_format: ResponseFormat | None,
    core,
    params: dict[str, str] = CHAT_PARAMS,
) -> AnswerPlan:
    """The plan for one request; 400 for what cannot work, naming the field by `params`."""
    tool_dicts = [tool.model_dump(exclude_none=True) for tool in tools or []]
    for index, tool in enumerate(tools or []):
        if tool.function.parameters is not None:
            _check_schema(tool.function.parameters, params["tool_parameters"].format(index=index))
    if tool_choice is not None and tool_choice != "none" and not tools:
        raise APIError(400, f"{params['tool_choice']}: needs `tools`", param=params["tool_choice"])
    mode, function = _tool_mode(tool_choice, tools, core.setup.tool_parser is not None, params["tool_choice"])
    if mode in (REQUIRED, NAMED):
        schema = forced_call_schema(tool_dicts, function, parallel)
        constraint, param = answer_constraint(json_schema=schema), params["tools"]
    else:
        constraint, param = _format_constraint(response_format, params["format_schema"]), params["format_schema"]
    if constraint is not None:
        try:
            check_answer_constraint(constraint, core.setup, core.tokenizer)
        except AnswerFormatError as error:
            message = f"{param}: the structured-output backend refused the schema: {error}"
            raise APIError(400, message, param=param) from error
    plan = AnswerPlan(constraint, mode, tool_dicts, function, parallel is not False)
    if mode == AUTO:  # the parser says whether its call markers must stay in the text
        reader = plan.reader(core.tokenizer, core.setup.tool_parser)
        plan = replace(plan, skip_special_tokens=reader.skip_special_tokens)
    return plan


def _tool_mode(tool_choice, tools, parser_known: bool, param: str) -> tuple[str | None, str | None]:
    if not tools or tool_choice == "none":
        return None, None
    if tool_choice == "required":
        return REQUIRED, None
    if isinstance(tool_choice, NamedToolChoice):
        name = tool_choice.function.name
        if name not in {tool.function.name for tool in tools}:
            raise APIError(400, f"{param}: no function named {name!r} in `tools`", param=param)
        return NAMED, name
    return (AUTO if parser_known else None), None  # auto: read with the server's parser, if it has one


def _format_constraint(response_format: ResponseFormat | None, schema_param: str):
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object" or response_format.json_schema.schema_ is None:
        return answer_constraint(json_object=True)
    schema = response_format.json_schema.schema_
    _check_schema(schema, schema_param)
    return answer_constraint(json_schema=schema)


def _check_schema(schema: dict, param: str) -> None:
    """A 400 naming the place in `schema` that breaks JSON Schema's own rules (its metaschema)."""
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as error:
        where = "".join(f"[{part!r}]" for part in error.absolute_path)
        raise APIError(400, f"{param}: not a valid JSON schema: {where} {error.message}".strip(), param=param) from None
    except RecursionError:
        raise APIError(400, f"{param}: the JSON schema is nested too deeply", param=param) from None
