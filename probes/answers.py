"""Answer extraction: what intermediate answer, if any, a chunk of reasoning states.

Extractors are small named objects in a registry, so that serving and training name the same ones in the
probe file and a new domain adds one class. Each returns the last answer its pattern finds, as text, so
that training can label it (math-verify or an LLM judge) and the server can compare answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol


class AnswerExtractor(Protocol):
    name: str

    def extract(self, text: str) -> str | None:
        """The last answer `text` states, or None."""


@dataclass(frozen=True)
class PatternExtractor:
    """The last match of a regular expression's first group."""

    name: str
    pattern: str

    def extract(self, text: str) -> str | None:
        matches = re.findall(self.pattern, text)
        return matches[-1].strip() if matches else None


class BoxedExtractor:
    """The content of the last `\\boxed{...}`, with nested braces balanced."""

    name = "boxed"

    def extract(self, text: str) -> str | None:
        start = text.rfind("\\boxed{")
        while start != -1:
            depth, position = 0, start + len("\\boxed")
            for position in range(start + len("\\boxed"), len(text)):
                depth += {"{": 1, "}": -1}.get(text[position], 0)
                if depth == 0:
                    return text[start + len("\\boxed{") : position].strip()
            start = text.rfind("\\boxed{", 0, start)  # unbalanced: try an earlier one
        return None


# -- free-form reasoning prose ----------------------------------------------------------------------------
# Where real reasoning models state an intermediate answer: a sentence closing the paragraph that concludes
# "... is / equals / gives / comes to ... VALUE" or "so VALUE", an equation closing the paragraph
# ("... = VALUE"), `**VALUE**`, `\boxed{VALUE}`, and "the answer is VALUE". VALUE is a number, fraction,
# numeric expression, interval, or (only where an answer is named as such) a multiple-choice letter.

# What may introduce a stated value; the last one in the closing statement is read, and the value must run
# from it to the statement's end, so a number inside a calculation ("9 * 7 = 63, then add 5") is never read.
# The statement is cut into words and symbols (one simple pattern: this runs inside the decode step) and
# the cue is found walking back from its end.
_CUE_TOKEN = re.compile(r"[A-Za-z]+|['’]s\b|[<>!=≤≥]?=+>?|:|→|∈|\\(?:Rightarrow|implies|in)(?![a-zA-Z])")
_CUE_SYMBOLS = frozenset(("=", "=>", "→", "∈", "\\Rightarrow", "\\implies", "\\in", "'s", "’s"))
_CUE_WORDS = frozenset(
    "is are was were be become becomes equals give gives gave yield yields get gets got make "
    "makes totals so thus therefore hence then".split()
)
_CUE_BEFORE = {  # a word that is a cue only after one of these: "comes to", "remainder of", "lies in"
    "to": frozenset(
        "equal come comes simplifies reduces amount amounts evaluates adds:up sums:up works:out boils:down".split()
    ),
    "of": frozenset(
        "total remainder value area result maximum minimum difference product sum perimeter volume "
        "length probability".split()
    ),
    "in": frozenset("is are lies lie be".split()),
}
_STATEMENT_LENGTH = 300  # a closing statement is read over at most its last 300 characters
_CUE_REACH = 160  # and its cue among the last 160
_AFTER_VALUE = 48  # at most this many characters (units, nouns, delimiters) follow a value's last digit
_LAST_DIGIT = re.compile(r".*[\d²³]", re.DOTALL)
_NAMED = re.compile(
    r"(?i)\b(?:final |correct |right )?(?:answer|option|choice)(?: here)?"
    r"(?: is| would be| should be| must be|:)\s*"
)
_NAMED_CLAUSE_END = re.compile(r"[,;]\s|\.(?:\s|$)|\s(?:but|since|because|which)\b")
_BOLD = re.compile(r"\*\*([^*\n]{1,80})\*\*")
_BOLD_LABEL = re.compile(r"(?i)^\s*(?:final )?answer:?\s*")
# Math delimiters and wrappers carry no value of their own; units and a few trailing nouns are dropped.
_DELIMITERS = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$|\*\*|\\displaystyle")
_WRAPPER = re.compile(r"\\(?:boxed|mathbf|textbf|mathrm)\{((?:[^{}]|\{[^{}]*\})*)\}")
_UNITS = re.compile(r"(?:\s*(?:°|\^\s*\{?\\circ\}?|\\%|%|\\text\{[^{}]*\}|\\,|\\mathrm\{[^{}]*\}))+$")
_WORDS_AFTER = re.compile(r"(?:\s+[a-z][a-z-]+){1,3}$")  # "588 ways", "468 square units"
_CONNECTIVES = frozenset(
    "than more less times and or but plus minus over of by with divided multiplied mod "
    "modulo per if when for to is are which that as at in on not so all both each work works "
    "fail fails hold holds".split()
)
_MATH_COMMANDS = re.compile(r"\\(?:d?t?frac|sqrt|pi|infty|cdot|times|div|left|right|[,;!]|quad)|sqrt|pi")
_MATH_CHARS = frozenset("0123456789+-*/^()[]{}.,!×÷·−π√∞ ")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_ASIDES = re.compile(
    r"^(?:actually|exactly|just|only|indeed|also|still|now)\s+|,?\s+not\s+[^\s,;]+$"
    r"|\s+(?:in total|in all|altogether|overall|total)$",
    re.IGNORECASE,
)
_ROOT = re.compile(r"√\s*(\d+(?:\.\d+)?|\([^()]*\)|\{[^{}]*\}|[a-zA-Z])")
_SYMBOLS = (
    (re.compile("−"), "-"),
    (re.compile("π"), r"\\pi"),
    (re.compile("∞"), r"\\infty"),
    (re.compile("·"), r"\\cdot"),
    (re.compile(r"(\\(?:pi|infty|cdot))(?=[a-zA-Z])"), r"\1 "),
)
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d,]|\.\d)")
_LETTER = re.compile(r"\(?([A-J])\)?")
_SENTENCE_END = re.compile(r"[.!?]\s+(?=\S)|\n")
# Statements that pose rather than conclude: a hypothesis, a trial, a case, a check, an estimate.
_HYPOTHESIS = re.compile(
    r"(?i)\W*(?:(?:wait|hmm+|but|and|so|okay|ok|now|next|then|well|alternatively"
    r"|similarly),?\s+)*"
    r"(?:(?:if|suppose|assume|given|when|whether|take|try|pick|check|consider"
    r"|let(?! me| us|'s|’s)|let(?: me|'s|’s| us) (?:try|test|assume|suppose|pick|take|guess|check"
    r"|double-check|verify|confirm|plug|consider))\b|(?:sub)?case\s*[\d.]*\b)"
)
# A closing remark with no value that turns to re-checking ("Let me verify.", "Is that right?", "Hmm."): the
# conclusion is the statement before it, where the paper cuts its chunks.
_TURN = re.compile(
    r"(?i)\W*(?:but |and |so |okay,? |hmm+,? |wait,? )*(?:wait|hmm+|let me|let's|i should|i need to"
    r"|we should|to (?:confirm|verify|be sure)|alternatively|is (?:that|this|it)|does (?:that|this)"
    r"|that (?:seems|looks|makes)|this (?:seems|looks)|right|okay)\b"
)
# Remarks that doubt the result or announce a re-check anywhere in them ("But that seems too small.", "Maybe I
# missed some triples?", "so maybe I need to verify."); a paragraph may close on several. Plans ("Maybe I can
# use that to find the height.") and refutations ("Clearly I made a mistake earlier.") are not among them.
_DOUBT = re.compile(
    r"(?i)\b(?:verify|(?:double-|re-?)?check|confirm|make sure|(?:maybe|perhaps) (?:i|we)"
    r" (?:made|missed|mis\w+|overlooked|forgot|skipped)"
    r"|(?:is|maybe|perhaps) (?:that|this|it)(?:'s| is)? (?:the (?:answer|result)|our answer|correct|right)"
    r"|(?:that|this|it) seems)\b"
)
_MAX_REMARKS = 3
_THEN = re.compile(r"(?i)[,;]\s*then\b")  # "If b + 7 = 28, then b = 21" concludes
_ESTIMATES = ("approx", "roughly", "about", "around", "≈")  # "approximately", "\\approx"
# An equation after one of these words names a case or a condition ("stepping by m=1", "more than D=48"),
# or one of several ("b = 21 or b = 49").
_CONDITION = re.compile(
    r"(?i)\b(?:by|for|at|with|when|where|if|unless|until|as|like|than|from|into"
    r"|over|under|between|whenever|case|given|through|such that)\s+(?:\S+\s+){0,2}\S+\s*$"
    r"|\b(?:or|and)\s+\S+\s*$"
)  # one of several: "b = 21 or b = 49"
# What names a quantity on an equation's left side: subscripts, LaTeX commands, arguments, a modulus.
_NAMES = re.compile(r"_\{[^{}]*\}|_\w|\\[a-zA-Z]+|(?<=[a-zA-Z])\([^()]*\)|\bmod(?:ulo)?\s*\d*")
_LAST_WORD = re.compile(r".*(?:(?<![^\s,;:=(])[a-zA-Z]{2,}(?=[\s(])|[,;:=])", re.DOTALL)
# A numbered equation is one of a system still to solve ("1. a + c = 12", "Equation 2: b + d = -5").
_NUMBERED = re.compile(r"(?i)\W*(?:\d+[.)]\s|\(\d+\)|eq(?:uation|\.)?\s*\(?\d+\)?\s*:)")
_LETTERS = re.compile(r"[a-zA-Z]")
_DIGITS = re.compile(r"\d|²|³")


def numeric_value(text: str) -> str | None:
    """`text` as a stated value (normalised for math-verify), or None when it is not one: a number,
    fraction, numeric expression or interval, with math delimiters, units and a few trailing nouns
    ("588 ways") dropped. Values with free variables, lists, and prose are not values.

    >>> numeric_value(r"\\( \\frac{3}{4} \\)."), numeric_value("588 ways"), numeric_value("2,016")
    ('\\\\frac{3}{4}', '588', '2016')
    >>> numeric_value("9b + 63") is None, numeric_value("1, 2, 4, 7") is None, numeric_value("a divisor") is None
    (True, True, True)
    """
    value = text.strip().rstrip(".,;:!")
    if _NUMBER.fullmatch(value):
        return value  # the common case, without the work below
    if "\\" in value or "$" in value or "*" in value:
        value = _DELIMITERS.sub(" ", _WRAPPER.sub(r"\1", value)).strip().rstrip(".,;:!").strip()
    value = _ASIDES.sub("", value).strip()  # "actually 84, not 72", "15 subsets in total"
    if value and not value[-1].isdigit():
        value = _UNITS.sub("", value).strip()
        words = _WORDS_AFTER.search(value)
        if words and words.start() and not _CONNECTIVES.intersection(words.group().split()):
            value = _UNITS.sub("", value[: words.start()]).strip()
    if "," in value:
        value = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), value)
    bare = _MATH_COMMANDS.sub(" ", value) if _LETTERS.search(value) else value
    if (
        not value
        or not set(bare) <= _MATH_CHARS
        or not any(c.isdigit() or c in "π∞" for c in bare)
        or value[-1] in "+-*/^=×÷·−"
        or value[0] in "+*/^=×÷·{"
        or ".." in value
        or not _balanced(value)
    ):
        return None
    return _as_latex(value)


def _as_latex(value: str) -> str:
    """Unicode maths as LaTeX, which math-verify reads: `2√5` -> `2\\sqrt{5}`, `3π/4` -> `3\\pi /4`."""
    if value.isascii():
        return value
    value = _ROOT.sub(lambda m: "\\sqrt{" + m.group(1).strip("(){}") + "}", value)
    for symbol, latex in _SYMBOLS:
        value = symbol.sub(latex, value)
    return value.strip()


def _balanced(value: str) -> bool:
    """Brackets close (an interval may mix kinds: `(2, 5]`), braces match, and commas only separate the
    ends of a bracketed interval or point: a bare comma makes a list ("1, 2, 4"), not one value."""
    depth = 0
    for char in value:
        depth += (char in "([{") - (char in ")]}")
        if depth < 0 or (char == "," and depth == 0):
            return False
    return depth == 0 and value.count("{") == value.count("}")


def _last_paragraph(text: str) -> str:
    """The last paragraph of `text`, found from its end: a chunk that grew over many paragraphs without a
    conclusion is not copied whole at every break."""
    end = len(text)
    while end and text[end - 1].isspace():
        end -= 1
    start = text.rfind("\n\n", 0, end)
    return text[start + 2 if start != -1 else 0 : end].strip()


def _choice_or_value(text: str) -> str | None:
    letter = _LETTER.fullmatch(_DELIMITERS.sub("", text).strip().rstrip(".,;:!").strip())
    return letter.group(1) if letter else numeric_value(text)


def _closing_statement(paragraph: str) -> str | None:
    """The paragraph's last statement (a formula closing it stays whole), before the closing remarks that turn
    to re-checking or doubt it; None for a question, a lead-in, or a statement that does not end on a number."""
    text = paragraph.rstrip().rstrip(".;!").rstrip()
    digit = _LAST_DIGIT.match(text)
    if digit is None:
        return None  # most paragraphs end here, at the cost of one scan from the end
    last_digit = digit.end() - 1
    for count in range(_MAX_REMARKS):
        remark = _last_sentence(text, len(text), last_digit)
        if remark <= last_digit:
            break  # the usual case: the paragraph ends on its value
        bare_turn = count == 0 and _TURN.match(text, remark)  # only the last remark may be a bare turn ("Hmm.")
        if not (bare_turn or _DOUBT.search(text, remark)):
            break
        text = text[:remark].rstrip().rstrip(".;!").rstrip()
    if not text or text.endswith(("?", ":")) or len(text) - last_digit > _AFTER_VALUE:
        return None
    end = len(text)
    for closer, opener in (("\\]", "\\["), ("$$", "$$"), ("$", "$"), ("\\)", "\\(")):
        if text.endswith(closer) and (start := text.rfind(opener, 0, end - len(closer))) != -1:
            end = start  # sentence breaks inside the closing formula do not end the statement
            break
    return text[_last_sentence(text, end, max(0, end - _STATEMENT_LENGTH)) :]


def _last_sentence(text: str, end: int, begin: int = 0) -> int:
    """Where the last sentence that starts in `text[begin:end]` starts (`begin` if none does)."""
    start = begin
    for match in _SENTENCE_END.finditer(text, begin, end):
        start = match.end()
    return start


def _last_cue(statement: str) -> re.Match | None:
    """The last word or symbol of `statement` that may introduce a stated value (looked for among its last
    `_CUE_REACH` characters: a value is shorter)."""
    start = statement.find(" ", len(statement) - _CUE_REACH) + 1 if len(statement) > _CUE_REACH else 0
    matches = list(_CUE_TOKEN.finditer(statement, start))
    tokens = [match.group() for match in matches]
    for index in range(len(tokens) - 1, -1, -1):
        token = tokens[index]
        word = token.lower()
        before = tokens[index - 1].lower() if index else ""
        if before in ("up", "out", "down") and index > 1:
            before = f"{tokens[index - 2].lower()}:{before}"  # "adds up to", "works out to"
        if (
            token in _CUE_SYMBOLS
            or word in _CUE_WORDS
            or word in _CUE_BEFORE
            and before in _CUE_BEFORE[word]
            or word in ("interval", "set", "range")
            and index > 2
            and before == "the"
            and tokens[index - 2] == "in"
            and tokens[index - 3].lower() in _CUE_BEFORE["in"]
        ):
            return matches[index]
        if token == ":":
            at = matches[index].start()
            if not (at and statement[at - 1].isdigit() and statement[at + 1 : at + 2].isdigit()):
                return matches[index]  # a ratio "5:2" or a time is no cue
    return None


def _states_no_result(left: str, value: str) -> bool:
    """Whether the equation `left = value` states no result: a case, a condition or one of several
    ("for k=3", "x = 1 or x = 4"), or an equation still to solve, whose left side mixes unknowns and numbers
    ("3x^2 - 5x = 2", "c^2 + b^2 = 1444"; "m + n = 277", "x_{12} = 5" and "N mod 1000 = 832" are results)."""
    if _CONDITION.search(left):
        return True
    side = _NAMES.sub(" ", left)
    prose = _LAST_WORD.match(side)  # the left side starts after the last word of prose
    side = side[prose.end() :] if prose else side
    letters = _LETTERS.search(side)
    return bool(letters) and (value == "0" or bool(_DIGITS.search(side)) or bool(_NUMBERED.match(left)))


@dataclass(frozen=True)
class ReasoningExtractor:
    """The conclusion the last paragraph of `text` states, in the forms real reasoning models write.

    Only the paragraph's closing statement is read, and only a value that runs to its end: an intermediate
    quantity inside a calculation, a list, an expression with free variables, a question, a lead-in ending
    with a colon, an estimate, or a hypothesis ("Let b = 21.") is not an answer. Explicit forms
    (`\\boxed{}`, "the answer is", `**bold**`) are read anywhere in the paragraph; of the paragraph's
    candidates, the one that comes last wins.

    >>> ReasoningExtractor().extract("Adding them, the sum is \\\\( 21 + 49 = 70 \\\\).\\n\\n")
    '70'
    >>> ReasoningExtractor().extract("First, 9 * 7 = 63, and we still need to add 5.\\n\\n") is None
    True
    """

    name: str = "reasoning"

    def extract(self, text: str) -> str | None:
        paragraph = _last_paragraph(text)
        found = [
            c
            for c in (self._boxed(paragraph), self._named(paragraph), self._bold(paragraph), self._closing(paragraph))
            if c is not None
        ]
        return max(found, key=lambda candidate: candidate[0])[1] if found else None

    @staticmethod
    def _boxed(paragraph: str) -> tuple[int, str] | None:
        start = paragraph.rfind("\\boxed{")
        answer = BoxedExtractor().extract(paragraph) if start != -1 else None
        return (start, answer) if answer else None

    @staticmethod
    def _named(paragraph: str) -> tuple[int, str] | None:
        if not any(word in paragraph for word in ("nswer", "ption", "hoice")):
            return None
        for match in reversed(list(_NAMED.finditer(paragraph))):
            value = _choice_or_value(_NAMED_CLAUSE_END.split(paragraph[match.end() :], 1)[0])
            if value is not None:
                return match.start(), value
        return None

    @staticmethod
    def _bold(paragraph: str) -> tuple[int, str] | None:
        if "**" not in paragraph:
            return None
        for match in reversed(list(_BOLD.finditer(paragraph))):
            value = _choice_or_value(_BOLD_LABEL.sub("", match.group(1)))
            if value is not None:
                return match.start(), value
        return None

    @staticmethod
    def _closing(paragraph: str) -> tuple[int, str] | None:
        statement = _closing_statement(paragraph)
        if statement is None or _HYPOTHESIS.match(statement) and not _THEN.search(statement):
            return None
        cue = _last_cue(statement)
        if cue is None or any(word in statement.lower() for word in _ESTIMATES):
            return None
        value = numeric_value(statement[cue.end() :].lstrip(" ,"))
        if value is None or cue.group() == "=" and _states_no_result(statement[: cue.start()], value):
            return None
        return len(paragraph), value


# -- the tiny world's own conclusions ----------------------------------------------------------------------
_SMALL_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
        "seventeen eighteen nineteen".split()
    )
}
_TENS_WORDS = {
    word: 10 * value
    for value, word in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
    if value > 1
}
_NUMBER_WORD = "|".join(sorted([*_SMALL_WORDS, *_TENS_WORDS, "hundred", "thousand"], key=len, reverse=True))
_WORDED = rf"(?:minus )?(?:{_NUMBER_WORD})(?:[ -](?:{_NUMBER_WORD}))*"


def words_value(text: str) -> int | None:
    """An integer written in English words (`minus fifty-six`, `four hundred fifteen`), or None.

    >>> words_value("fifty-six"), words_value("minus twelve"), words_value("four hundred fifteen"), words_value("x")
    (56, -12, 415, None)
    """
    words = text.lower().replace("-", " ").split()
    sign = -1 if words[:1] == ["minus"] else 1
    total = group = 0
    for word in words[1:] if sign < 0 else words:
        if word in _SMALL_WORDS or word in _TENS_WORDS:
            group += _SMALL_WORDS.get(word, _TENS_WORDS.get(word, 0))
        elif word == "hundred":
            group *= 100
        elif word == "thousand":
            total, group = total + group * 1000, 0
        else:
            return None
    return sign * (total + group) if words else None


class TinyWorldExtractor:
    """The embedded tiny world's conclusions, in every form its traces state them: plainly (`So the answer is 56.`,
    `That gives 56.`) or obliquely (in words, `So I get fifty-six.`; inside another sentence, `56 is where the
    running total lands.`). A general reader is not meant to read the oblique ones; this one knows the world."""

    name = "tinyworld"
    _LEADS = (
        "So the answer is|So the result is|That gives|So we get|So it comes to|Therefore the total is|"
        "So the answer should be|So I get|That makes it|I end up with"
    )
    _VALUE = rf"(-?\d+|{_WORDED})"
    PATTERN = re.compile(
        rf"(?:(?:{_LEADS}) {_VALUE}(?: in the end| after the last operation, which is what the question wants)?"
        rf"|{_VALUE} is where the running total lands)\."
    )

    def extract(self, text: str) -> str | None:
        matches = self.PATTERN.findall(text)
        if not matches:
            return None
        value = next(group for group in matches[-1] if group)
        return value if value.lstrip("-").isdigit() else str(words_value(value))


EXTRACTORS: dict[str, AnswerExtractor] = {
    extractor.name: extractor
    for extractor in (
        TinyWorldExtractor(),
        BoxedExtractor(),
        # "the answer is 42." / "The final answer is: x = 3" up to the end of the sentence or line.
        PatternExtractor("answer_is", r"(?i)\bthe (?:final )?answer is:?\s*\$?([^\n$]+?)\$?\s*(?:\.(?:\s|$)|\n|$)"),
        ReasoningExtractor(),
    )
}


@dataclass(frozen=True)
class FirstMatch:
    """Tries extractors in order; the first that finds an answer wins."""

    extractors: tuple[AnswerExtractor, ...]

    @property
    def name(self) -> str:
        return "+".join(e.name for e in self.extractors)

    def extract(self, text: str) -> str | None:
        for extractor in self.extractors:
            answer = extractor.extract(text)
            if answer:
                return answer
        return None


def get_extractor(names: tuple[str, ...] | list[str]) -> AnswerExtractor:
    unknown = [name for name in names if name not in EXTRACTORS]
    if unknown or not names:
        raise ValueError(f"unknown answer extractor(s) {unknown or names}; known: {sorted(EXTRACTORS)}")
    return FirstMatch(tuple(EXTRACTORS[name] for name in names))


FINAL_ANSWER = ("boxed", "answer_is", "reasoning")


def final_answer(answer: str | None, extractors: tuple[str, ...] = FINAL_ANSWER) -> str | None:
    """The final answer a client reads in what a completion writes after its thinking (`answer`, the second
    part of `markers.split_thinking`; None, a completion cut off inside its thinking, states none): the last
    `\\boxed{}`, else "the answer is ...", else the conclusion its last paragraph states.

    One rule for every reader, so that the harm the probe job certifies is the harm shadow mode and
    `bench savings` measure. A reader that demands a stricter format names fewer `extractors` (EMPO rewards
    only a boxed answer).

    >>> final_answer("\\n\\nThe answer is \\\\boxed{12}."), final_answer("So the answer is 12."), final_answer(None)
    ('12', '12', None)
    >>> final_answer("The answer is 12.", extractors=("boxed",)) is None
    True
    """
    return get_extractor(extractors).extract(answer) if answer is not None else None
