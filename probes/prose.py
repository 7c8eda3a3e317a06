"""The `reasoning` reader: the conclusion a paragraph of a real reasoning model's thinking states, in prose.

Real reasoning models (DeepSeek-R1 distills, Qwen3, QwQ) state their intermediate answers in free prose: a
sentence closing the paragraph that concludes "... is / equals / gives / comes to ... VALUE" or "so VALUE", an
equation closing the paragraph ("... = VALUE"), a word-problem conclusion with a subject and a verb ("So each
friend pays $12.", "So, 19 people left for other reasons."), `**VALUE**`, `\\boxed{VALUE}`, and "the answer is
VALUE". VALUE is a number (money, units and percentages dropped), fraction, numeric expression, interval, or
(only where an answer, option or choice is named as such, or alone in its paragraph) a multiple-choice letter.

This runs in the decode step at every paragraph break, so each step is one simple pattern or a scan from the
paragraph's end, and most paragraphs are decided by the first of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

# What may introduce a stated value; the last one in the closing statement is read, and the value must run
# from it to the statement's end, so a number inside a calculation ("9 * 7 = 63, then add 5") is never read.
# The statement is cut into words and symbols (one simple pattern) and the cue is found walking back from its end.
_CUE_TOKEN = re.compile(r"[A-Za-z]+|['’]s\b|[<>!=≤≥]?=+>?|:|→|∈|\\(?:Rightarrow|implies|in)(?![a-zA-Z])")
_CUE_SYMBOLS = frozenset(("=", "=>", "→", "∈", "\\Rightarrow", "\\implies", "\\in", "'s", "’s"))
_CUE_WORDS = frozenset(
    "is are was were be become becomes equal equals give gives gave yield yields get gets got make "
    "makes totals totaling totalling so thus therefore hence then".split()
)
_CUE_BEFORE = {  # a word that is a cue only after one of these: "comes to", "remainder of", "lies in"
    "to": frozenset(
        "equal come comes simplifies reduces amount amounts evaluates adds:up sums:up works:out boils:down rounds "
        "round:up rounds:up".split()
    ),
    "of": frozenset(
        "total remainder value area result maximum minimum difference product sum perimeter volume "
        "length probability weight height speed cost price distance age rate balance profit average".split()
    ),
    "in": frozenset("is are lies lie be resulting results".split()),
}
_STATEMENT_LENGTH = 300  # a closing statement is read over at most its last 300 characters
_CUE_REACH = 160  # and its cue among the last 160
_NEAR_CUE = 64
_AFTER_VALUE = 48  # at most this many characters (units, nouns, delimiters) follow a value's last digit
_LAST_DIGIT = re.compile(r".*[\d²³]", re.DOTALL)
_NAMED = re.compile(
    r"(?i)\b(?:final |correct |right |only |best )?(?:answer|option|choice)"
    r"(?:\s+(?!(?-i:\(?[A-J]\)?)\b|(?:choices|options|answers)\b)[\w'’-]+){0,4}?"  # not a letter, not a listing
    r"(?: is| would be| should be| must be|:)\s*"
)
# "..., which is option I.", "So option C.": a letter named as an option after the value it stands for.
_NAMED_LETTER = re.compile(r"(?i:option|choice|answer)\s+\(?([A-J])\)?(?![\w'’]|,? (?:or|and) |, ?\(?[A-J]\b)")
_NAMES_LETTER = re.compile(
    r"(?i)\b(?:is|be|so|matches|match|gives|giving|corresponds to|that's|it's|hence|thus|therefore),?\s+$"
)
_OPTION_LABEL = re.compile(r"\W*(?:(?i:option|choice)\s+)?\(?[A-J]\)?\s*")
_NAMED_CLAUSE_END = re.compile(r"[,;]\s|\.(?:\s|$)|\s(?:but|since|because|which)\b")
_HEDGE = re.compile(r"(?i)\b(?:maybe|perhaps|possibly|probably|might|could|if|whether|unless|(?:is|are|be) possible)\b")
_BOLD = re.compile(r"\*\*([^*\n]{1,80})\*\*")
_BOLD_LABEL = re.compile(r"(?i)^\s*(?:final )?answer:?\s*")
# Math delimiters and wrappers carry no value of their own; units and a few trailing nouns are dropped.
_DELIMITERS = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$|\*\*|\\displaystyle")
_WRAPPER = re.compile(r"\\(?:boxed|mathbf|textbf|mathrm)\{((?:[^{}]|\{[^{}]*\})*)\}")
_UNITS = re.compile(r"(?:\s*(?:°|\^\s*\{?\\circ\}?|\\%|%|\\text\{[^{}]*\}|\\,|\\mathrm\{[^{}]*\}))+$")
# "588 ways", "468 square units", "55 m/s", "6 slices per day", "4 pints of gasoline", "7 DVDs"
_WORDS_AFTER = re.compile(r"(?:\s+[A-Za-z][A-Za-z'’-]*(?:/[A-Za-z]+)?){1,4}$")
_CONNECTIVES = frozenset(
    "than more less fewer times and or but plus minus over of by with divided multiplied mod "
    "modulo per if when for to is are which that as at in on not so all both each work works "
    "fail fails hold holds".split()
)
_INSIDE_NOUNS = frozenset(("per", "of"))  # "slices per day", "pints of gasoline": a unit, not a connective
_COMPARED = frozenset(("more", "fewer", "less"))  # "4 more books than Alice" states the difference 4
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
# A choice letter, alone or followed by its option's text: "(C)", "option B", "C. 4.2 eV", "H: Ethics of care".
_LETTER = re.compile(r"(?:(?i:option|choice)\s+)?\(?([A-J])\)?")
_LETTER_AND_TEXT = re.compile(r"(?:(?i:option|choice)\s+)?\(?([A-J])\)?(?:(?<=\))\s+\S.*|[.:]\s+\S.*)?", re.DOTALL)
_LONE_LETTER = re.compile(r"\**\(?([A-J])\)?\.?\**")  # a paragraph that is only a letter: the final "H"
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
    r"|(?:that|this|it) seems|(?:that|this|it) (?:adds up|checks out|makes sense|works)|looks (?:right|good|correct)"
    r"|(?:that|this|it)(?:'s| is) (?:the|our|my) (?:final )?answer)\b"
)
_MAX_REMARKS = 6
_SHORT_TURN = 12
_REMARKS_REACH = 320  # and they hold at most this many characters after the value
# A remark that echoes the value as a question ("Wait, 109?"), doubting the statement just before it.
_ECHO = re.compile(r"(?i)\W*(?:(?:wait|hmm+|so|oh|ok|okay),?\s+)?(\$?[\d.,/]+)\s*[a-z]{0,12}\s*\?\s*")
_ECHO_LENGTH = 40
_THEN = re.compile(r"(?i)[,;]\s*then\b")  # "If b + 7 = 28, then b = 21" concludes
_ESTIMATE = re.compile(r"approx|roughly|about|around|≈")  # "approximately", "\\approx"
_RANGES = frozenset(("interval", "set", "range"))
# An equation after one of these words names a case or a condition ("stepping by m=1", "more than D=48",
# "for k = 3"), or one of several ("b = 21 or b = 49"): the word stands among the three before the variable.
_CONDITION_WORDS = frozenset(
    "by for at with when where if unless until as like than from into over under between whenever case given "
    "through that".split()
)
_EQUATION_REACH = 100  # the left side of an equation is read over its last 100 characters
_VARIABLE = re.compile(r"\W*(?:[^\W\d_]{1,2}|\S*[\d_^]\S*)\W*")  # what a condition names: "k", "D", "m_1"
# What names a quantity on an equation's left side: subscripts, LaTeX commands, arguments, a modulus; and what
# annotates a sum ("16 (snowflake) + 19 (truck)") or multiplies ("27 x 3").
_NAMES = re.compile(
    r"\\text\{[^{}]*\}|_\{[^{}]*\}|_\w|\\[a-zA-Z]+|(?<=[a-zA-Z])\([^()]*\)|\bmod(?:ulo)?\s*\d*"
    r"|\([A-Za-z]{2,}[A-Za-z ]*\)|(?<=\d) ?x(?= ?\d)"
)
_LAST_WORD = re.compile(r".*(?:(?<![^\s,;:=(])[a-zA-Z]{2,}(?:/[a-zA-Z]+)?(?=[\s(])|[,;:=])", re.DOTALL)
# A numbered equation is one of a system still to solve ("1. a + c = 12", "Equation 2: b + d = -5").
_NUMBERED = re.compile(r"(?i)\W*(?:\d+[.)]\s|\(\d+\)|eq(?:uation|\.)?\s*\(?\d+\)?\s*:)")
_LETTERS = re.compile(r"[a-zA-Z]")
_DIGITS = re.compile(r"\d|²|³")

# -- word-problem conclusions: "So each friend pays $12.", "So, 19 people left for other reasons." ------------
# A statement that opens on a conclusion, or holds a result phrase, and names exactly one amount outside its
# prepositional phrases ("on milk after 30 days", "to travel 2000 miles") is read at that amount.
_CONCLUSION = re.compile(
    r"(?i)\W*(?:(?:wait|hmm+|okay|ok|yes|yeah|yep|alright|right|well|oh|and|but),?\s+)*"
    r"(?:so|therefore|thus|hence|that means|this means|which means|in total|altogether|overall|finally"
    r"|in the end|as a result|consequently)\b,?\s*(?:(?:yes|yeah|indeed|again|basically|altogether),?\s+)*"
)
_CONCLUSION_STARTS = (  # the words `_CONCLUSION` may open on, checked before the pattern
    "so",
    "there",
    "thus",
    "hence",
    "that",
    "this",
    "which",
    "in ",
    "alto",
    "overall",
    "final",
    "as a",
    "conseq",
    "wait",
    "hmm",
    "ok",
    "yes",
    "yeah",
    "yep",
    "alright",
    "right",
    "well",
    "oh",
    "and",
    "but",
)
_RESULT_PHRASE = re.compile(
    r"(?i)\b(?:resulting in|results in|which gives|giving|leaving|totall?ing|a total of|left with|ends? up with"
    r"|comes? out to|brings?(?: \w+){0,5} to|bringing(?: \w+){0,5} to)\s+"
)
_AMOUNT = re.compile(r"(?<![\w.])-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?%?(?![\w.]\d)")
# What a conclusion does not hold: a hedge, a condition, a plan, a question, an estimate, a bound, a calculation.
_NOT_CONCLUDED_WORDS = frozenset(
    "if when whether suppose assume maybe perhaps might could probably possibly not no never should how what which "
    "let let's i'll we'll initially originally approximately about around roughly nearly almost least most plus "
    "minus times divided multiplied or half twice double triple wrong incorrect mistake error".split()
)
_NOT_CONCLUDED_PHRASES = ("need to", "have to", "want to", "going to", "let me", "up to", "n't")
_CALCULATION = re.compile(r"[=+*×÷<>≤≥≈\\^?()\[\]{}]| [-/] ")
_WORD = re.compile(r"[a-z'’]+")
_BOUND = re.compile(r"(?i)\b(?:more|less|fewer|greater|larger|smaller|higher|lower|other|rather) than\s*\$?$")
_IN_PHRASE = frozenset("after before in for within at per on during every each by with into from to over under".split())
_LABEL = re.compile(
    r"(?i)\b(?:statement|option|choice|case|step|part|question|equation|figure|problem|item|line|round|level|stage"
    r"|phase|test|example|method|approach|row|column|page|chapter|version|type|number|no\.)\s+$"
)
_COPULA = re.compile(r"\s*(?:is|are|was|were|isn't|seems|looks|would|will|might)\b")
_TAIL = re.compile(r"[^,;:]{0,80}")  # what may follow the amount: units, nouns, phrases
_IS_THE_ANSWER = re.compile(r"(?i)\s*(?:is|would be|must be|should be)\s+(?:the|our|my)\s+(?:final\s+)?answer\b")


def numeric_value(text: str) -> str | None:
    """`text` as a stated value (normalised for math-verify), or None when it is not one: a number,
    fraction, numeric expression or interval, with math delimiters, units and a few trailing nouns
    ("588 ways", "55 m/s", "6 slices per day") dropped. Values with free variables, lists, and prose are not.

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
        value = _without_nouns(_UNITS.sub("", value).strip())
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


def _without_nouns(value: str) -> str:
    """`value` without the nouns after its number ("588 ways", "6 slices per day", "4 more books than Alice"),
    unless they make it a comparison or a calculation ("3 times larger", "12 divided by 4")."""
    number = _LAST_DIGIT.match(value)
    words = _WORDS_AFTER.search(value, number.end()) if number else None  # only after the last digit
    if not words:
        return value
    names = words.group().lower().split()
    if names[0] in _COMPARED:
        if "than" not in names[2:]:
            return value
        names = [name for name in names[1:] if name != "than"]
    elif any(name in _CONNECTIVES and (name not in _INSIDE_NOUNS or index == 0) for index, name in enumerate(names)):
        return value
    return _UNITS.sub("", value[: words.start()]).strip()


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


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` in `text`, with nested braces balanced."""
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, position = 0, start + len("\\boxed")
        for position in range(start + len("\\boxed"), len(text)):
            depth += {"{": 1, "}": -1}.get(text[position], 0)
            if depth == 0:
                return text[start + len("\\boxed{") : position].strip()
        start = text.rfind("\\boxed{", 0, start)  # unbalanced: try an earlier one
    return None


def _last_paragraph(text: str) -> str:
    """The last paragraph of `text`, found from its end: a chunk that grew over many paragraphs without a
    conclusion is not copied whole at every break."""
    end = len(text)
    while end and text[end - 1].isspace():
        end -= 1
    start = text.rfind("\n\n", 0, end)
    return text[start + 2 if start != -1 else 0 : end].strip()


def _choice_or_value(text: str, letter_form: re.Pattern = _LETTER) -> str | None:
    letter = letter_form.fullmatch(_DELIMITERS.sub("", text).strip().rstrip(".,;:!").strip())
    return letter.group(1) if letter else numeric_value(text)


def _closing_statement(paragraph: str) -> tuple[str, int] | None:
    """The paragraph's last statement (a formula closing it stays whole) and where it ends, before the closing
    remarks that turn to re-checking, doubt it, echo its value as a question or ask one; None for a question,
    a lead-in, or a statement that does not end on a number."""
    text = paragraph.rstrip().rstrip(".;!").rstrip()
    digit = _LAST_DIGIT.match(text)
    if digit is None:
        return None  # most paragraphs end here, at the cost of one scan from the end
    last_digit = digit.end() - 1
    if len(text) - last_digit > _REMARKS_REACH:
        return None  # prose runs on past any closing remarks
    for count in range(_MAX_REMARKS):
        remark = _last_sentence(text, len(text), last_digit)
        if remark <= last_digit:  # the usual case: the paragraph ends on its value, or on an echo of it
            if not text.endswith("?"):
                break
            echo = _last_sentence(text, len(text), max(0, len(text) - _ECHO_LENGTH))
            value = _ECHO.fullmatch(text, echo) if echo else None
            if value is None or value.group(1).rstrip(".,") not in text[max(0, echo - 80) : echo]:
                break
            text = text[:echo].rstrip().rstrip(".;!").rstrip()
            digit = _LAST_DIGIT.match(text)
            if digit is None:
                return None
            last_digit = digit.end() - 1
            continue
        # A bare turn ("Let me think.", "Hmm.") is skipped as the last remark, or anywhere when it is a word or two.
        bare_turn = (count == 0 or len(text) - remark <= _SHORT_TURN) and _TURN.match(text, remark)
        if not (bare_turn or text.endswith("?") or _DOUBT.search(text, remark)):
            break
        text = text[:remark].rstrip().rstrip(".;!").rstrip()
    if not text or text.endswith(("?", ":")) or len(text) - last_digit > _AFTER_VALUE:
        return None
    end = len(text)
    if text[-1] in "$)]":
        for closer, opener in (("\\]", "\\["), ("$$", "$$"), ("$", "$"), ("\\)", "\\(")):
            if text.endswith(closer) and (start := text.rfind(opener, 0, end - len(closer))) != -1:
                end = start  # sentence breaks inside the closing formula do not end the statement
                break
    return text[_last_sentence(text, end, max(0, end - _STATEMENT_LENGTH)) :], len(text)


def _last_sentence(text: str, end: int, begin: int = 0) -> int:
    """Where the last sentence that starts in `text[begin:end]` starts (`begin` if none does)."""
    start = begin
    for match in _SENTENCE_END.finditer(text, begin, end):
        start = match.end()
    return start


def _last_cue(statement: str) -> tuple[int, int, str] | None:
    """The last word or symbol of `statement` that may introduce a stated value, as (start, end, token) (looked
    for among its last `_CUE_REACH` characters: a value is shorter)."""
    if len(statement) > _NEAR_CUE:  # most cues sit just before the value: try the statement's end first
        cue = _cue_in(statement, statement.find(" ", len(statement) - _NEAR_CUE) + 1, near=True)
        if cue is not None:
            return cue
    start = statement.find(" ", len(statement) - _CUE_REACH) + 1 if len(statement) > _CUE_REACH else 0
    return _cue_in(statement, start)


def _cue_in(statement: str, start: int, near: bool = False) -> tuple[int, int, str] | None:
    """The last cue among the tokens from `start`; near the end, only one with three tokens before it (which the
    wider search would find first as well), else None."""
    tokens = _CUE_TOKEN.findall(statement, start)
    for index in range(len(tokens) - 1, 2 if near else -1, -1):
        token = tokens[index]
        if token in _CUE_SYMBOLS:
            return _located(statement, tokens, index)
        if token == ":":
            cue = _located(statement, tokens, index)
            at = cue[0]
            if not (at and statement[at - 1].isdigit() and statement[at + 1 : at + 2].isdigit()):
                return cue  # a ratio "5:2" or a time is no cue
            continue
        word = token.lower()
        if word in _CUE_WORDS:
            return _located(statement, tokens, index)
        if word not in _CUE_BEFORE and word not in _RANGES or index < 1:
            continue
        before = tokens[index - 1].lower()
        if before in ("up", "out", "down") and index > 1:
            before = f"{tokens[index - 2].lower()}:{before}"  # "adds up to", "works out to"
        if word in _CUE_BEFORE and before in _CUE_BEFORE[word]:
            return _located(statement, tokens, index)
        if (
            word in _RANGES
            and index > 2
            and before == "the"
            and tokens[index - 2] == "in"
            and tokens[index - 3].lower() in _CUE_BEFORE["in"]
        ):
            return _located(statement, tokens, index)  # "x lies in the interval (2, 5]"
    return None


def _located(statement: str, tokens: list[str], index: int) -> tuple[int, int, str]:
    """Where token `index` of `tokens` (the statement's cue tokens up to its end) stands: found back from the
    end, each token the rightmost occurrence of its text before the next one (what lies between tokens holds
    no letters and no cue symbols)."""
    end = len(statement)
    for token in reversed(tokens[index:]):
        end = statement.rfind(token, 0, end)
    return end, end + len(tokens[index]), tokens[index]


def _states_no_result(left: str, value: str) -> bool:
    """Whether the equation `left = value` states no result: a case, a condition or one of several
    ("for k=3", "x = 1 or x = 4"), or an equation still to solve, whose left side mixes unknowns and numbers
    ("3x^2 - 5x = 2", "c^2 + b^2 = 1444"; "m + n = 277", "x_{12} = 5", "N mod 1000 = 832", "27 x 3 = 81" and
    "Time taken for 20 feet = 16 seconds" are results). A lead-in before a colon is not part of the equation."""
    equation = left[left.rfind(":") + 1 :]
    if len(equation) > _EQUATION_REACH:
        equation = equation[equation.find(" ", len(equation) - _EQUATION_REACH) + 1 :]
    words = equation.lower().split()
    if words and _VARIABLE.fullmatch(words[-1]) and _names_a_condition(words):
        return True
    side = _NAMES.sub(" ", equation)
    prose = _LAST_WORD.match(side)  # the left side starts after the last word of prose
    side = side[prose.end() :] if prose else side
    letters = _LETTERS.search(side)
    return bool(letters) and (value == "0" or bool(_DIGITS.search(side)) or bool(_NUMBERED.match(left)))


def _names_a_condition(words: list[str]) -> bool:
    """Whether the variable closing `words` is one of several or follows a condition word with no verb between."""
    if len(words) > 1 and words[-2] in ("or", "and"):
        return True
    if words[-1] in _CUE_WORDS:
        return False
    for back in range(2, min(4, len(words)) + 1):
        word = words[-back].lstrip("(")
        if word in _CUE_WORDS:
            return False
        if word in _CONDITION_WORDS and (word != "that" or back < len(words) and words[-back - 1] == "such"):
            return True
        if word == "of" and back < len(words) and words[-back - 1] == "instead":
            return True  # "instead of r = 10%"
    return False


def _concluded(statement: str, lowered: str) -> str | None:
    """The one amount a word-problem conclusion states ("Therefore, she will spend $24.00 on milk after 30
    days." -> 24.00, "So, 19 people left for other reasons." -> 19, "..., leaving 10 pencils." -> 10), or None:
    the statement must open on a conclusion or hold a result phrase, and holds no calculation, hedge, plan,
    bound, list or comparison."""
    phrase = None
    if (  # what each result phrase holds, checked before the pattern
        "giving " in lowered
        or "leaving " in lowered
        or "resulting in" in lowered
        or "totaling " in lowered
        or "totalling " in lowered
        or "bringing " in lowered
        or "which gives" in lowered
        or "left with" in lowered
        or "total of" in lowered
        or "out to" in lowered
        or "up with" in lowered
        or "results in" in lowered
        or "brings " in lowered
    ):
        phrase = next(reversed(list(_RESULT_PHRASE.finditer(statement))), None)  # the last one
    if phrase is not None:
        rest = statement[phrase.end() :]
        if _HEDGE.search(statement, 0, phrase.start()):
            return None
    elif not lowered.lstrip(" *-_").startswith(_CONCLUSION_STARTS):
        return None
    else:
        opening = _CONCLUSION.match(statement)
        if opening is None:
            return None
        rest = statement[opening.end() :]
    if _CALCULATION.search(rest):
        return None
    amounts = [amount for amount in _AMOUNT.finditer(rest) if not _in_phrase(rest, amount.start())]
    if len(amounts) != 1:
        return None
    words = rest.lower()
    if not _NOT_CONCLUDED_WORDS.isdisjoint(_WORD.findall(words)) or any(p in words for p in _NOT_CONCLUDED_PHRASES):
        return None
    amount = amounts[0]
    if _BOUND.search(rest, 0, amount.start()):
        return None  # "more than 5" bounds; "5 more than Liam" states a difference
    if _LABEL.search(rest, max(0, amount.start() - 12), amount.start()):
        return None  # "Statement 2 is true" names a statement, not an amount
    subject = not rest[: amount.start()].strip()
    if subject and _COPULA.match(rest, amount.end()) and not _IS_THE_ANSWER.match(rest, amount.end()):
        return None  # "Thus, 39 is better." judges a value; "So, 19 people left." states one
    if not _TAIL.fullmatch(rest, amount.end()):
        return None
    return numeric_value(amount.group())


def _in_phrase(text: str, at: int) -> bool:
    """Whether the amount at `at` sits in a prepositional phrase ("after 30 days", "for the 3 days", "to travel
    2000 miles"); "brings it to 30" and "a weight of 7 pounds" state it."""
    words = text[max(0, at - 30) : at].rsplit(None, 2)[-2:]
    if not words:
        return False
    words = [word.lower() for word in words]
    if words[-1] in _IN_PHRASE and words[-1] != "to":
        return True
    return len(words) == 2 and words[0] in _IN_PHRASE


# The options a multiple-choice question lists, one a line: "A: 4.2 eV", "(B) 12 J", "C) Ethics of care", "D. 62".
_OPTION_LINE = re.compile(r"(?m)^[ \t]*(?:\(([A-J])\)|([A-J])[:.)])[ \t]+(\S[^\n]*?)[ \t]*$")
_LETTERS_IN_ORDER = "ABCDEFGHIJ"


def question_options(question: str) -> tuple[tuple[str, str], ...]:
    """The lettered options of the last question `question` lists, one a line, as (letter, text) in order: the
    last run of option lines that a line lettered A opens and B, C, ... continue in order; () unless that run holds
    at least two and no option line breaks its order. A prompt may hold several questions (earlier turns, worked
    examples): the one asked last is the one being answered.

    >>> question_options("Which is largest?\\nA: 4.2 eV\\nB: 12 J\\n")
    (('A', '4.2 eV'), ('B', '12 J'))
    >>> question_options("Example:\\nA: 1\\nB: 2\\nAnswer: B\\n\\nNow:\\n(A) 7 m\\n(B) 9 m\\n(C) 11 m\\n")
    (('A', '7 m'), ('B', '9 m'), ('C', '11 m'))
    """
    run: list[tuple[str, str]] = []
    in_order = False
    for match in _OPTION_LINE.finditer(question):
        letter = match.group(1) or match.group(2)
        if letter == "A":
            run, in_order = [], True
        elif not in_order or letter != _LETTERS_IN_ORDER[len(run) : len(run) + 1]:
            in_order = False
            continue
        run.append((letter, match.group(3)))
    return tuple(run) if in_order and len(run) > 1 else ()


def _as_option(value: str, options: tuple[tuple[str, str], ...]) -> str | None:
    """The letter of the one option whose text states `value` (a number equal to the option's, units and
    delimiters aside, or the same words), else None."""
    number = _as_number(value)
    words = None if number is not None else _plain_words(value)
    letters = [
        letter
        for letter, text in options
        if (number is not None and _as_number(numeric_value(text) or "") == number)
        or (words is not None and words and _plain_words(text) == words)
    ]
    return letters[0] if len(letters) == 1 else None


def _as_number(value: str) -> float | None:
    try:
        return float(value.replace(",", ""))
    except ValueError:
        return None


def _plain_words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class ReasoningExtractor:
    """The conclusion the last paragraph of `text` states, in the forms real reasoning models write.

    Only the paragraph's closing statement is read, and only a value that runs to its end or that a
    word-problem conclusion names as its one amount: an intermediate quantity inside a calculation, a list, an
    expression with free variables, a question, a lead-in ending with a colon, an estimate, a plan, a hedge, or
    a hypothesis ("Let b = 21.") is not an answer. Explicit forms (`\\boxed{}`, "the answer / option is",
    `**bold**`) are read anywhere in the paragraph; of the paragraph's candidates, the one that comes last wins.

    >>> ReasoningExtractor().extract("Adding them, the sum is \\\\( 21 + 49 = 70 \\\\).\\n\\n")
    '70'
    >>> ReasoningExtractor().extract("First, 9 * 7 = 63, and we still need to add 5.\\n\\n") is None
    True
    """

    name: str = "reasoning"
    options: tuple[tuple[str, str], ...] = ()  # a multiple-choice question's (letter, text): see `for_question`

    def for_question(self, question: str) -> ReasoningExtractor:
        """This reader for one multiple-choice question: a conclusion that states an option's content ("So the
        depreciation is $720." where the question lists "H: $720") is read as that option's letter."""
        return replace(self, options=question_options(question))

    def extract(self, text: str) -> str | None:
        value = self._read(text)
        if value is None or not self.options or _LETTER.fullmatch(value):
            return value
        return _as_option(value, self.options) or value

    def _read(self, text: str) -> str | None:
        paragraph = _last_paragraph(text)
        if len(paragraph) <= 8 and (letter := _LONE_LETTER.fullmatch(paragraph)):
            return letter.group(1)
        boxed = "\\boxed{" in paragraph
        named = "nswer" in paragraph or "ption" in paragraph or "hoice" in paragraph
        if not (boxed or named or "**" in paragraph):
            closing = _read_closing(paragraph)  # the usual case: prose only
            return closing[1] if closing else None
        # Where each candidate's value ends, and which form wins a tie: a named or explicit form over the
        # closing statement that holds it ("So the answer would be G: 62 men." is G).
        found = [
            (end, rank, value)
            for rank, candidate in enumerate(
                (
                    _read_closing(paragraph),
                    self._bold(paragraph),
                    self._named(paragraph, self.options) if named else None,
                    self._boxed(paragraph) if boxed else None,
                )
            )
            if candidate is not None
            for end, value in (candidate,)
        ]
        return max(found)[2] if found else None

    @staticmethod
    def _boxed(paragraph: str) -> tuple[int, str] | None:
        answer = last_boxed(paragraph)
        return (paragraph.rfind("\\boxed{") + len(answer) + 8, answer) if answer else None

    @staticmethod
    def _named(paragraph: str, options: tuple[tuple[str, str], ...] = ()) -> tuple[int, str] | None:
        found = None
        for match in _NAMED_LETTER.finditer(paragraph):
            if _NAMES_LETTER.search(paragraph, max(0, match.start() - 20), match.start()):
                found = match.end(), match.group(1), match.start()
        for match in reversed(list(_NAMED.finditer(paragraph))):
            if found is not None and found[0] > match.end():
                break  # a letter named later wins
            clause = _NAMED_CLAUSE_END.split(paragraph[match.end() :], 1)[0]
            value = _choice_or_value(clause, _LETTER_AND_TEXT)  # "the answer is C. 4.2 eV"
            if value is None and options:
                value = _as_option(clause, options)  # "the answer is Ethics of care"
            if value is not None:
                found = match.end() + len(clause), value, match.start()
                break
        if found is None:
            return None
        end, value, start = found
        sentence = _last_sentence(paragraph, start, max(0, start - _CUE_REACH))
        after = _SENTENCE_END.search(paragraph, end, end + _CUE_REACH)  # "option J might be right" hedges after
        return None if _HEDGE.search(paragraph, sentence, after.start() if after else len(paragraph)) else (end, value)

    @staticmethod
    def _bold(paragraph: str) -> tuple[int, str] | None:
        if "**" not in paragraph:
            return None
        for match in reversed(list(_BOLD.finditer(paragraph))):
            value = _choice_or_value(_BOLD_LABEL.sub("", match.group(1)))
            if value is not None:
                return match.end(), value
        return None


def _read_closing(paragraph: str) -> tuple[int, str] | None:
    """The value the paragraph's closing statement states and where that statement ends."""
    closing = _closing_statement(paragraph)
    if closing is None:
        return None
    statement, end = closing
    value = None
    cue = _last_cue(statement)
    if cue is not None:
        at, after, token = cue
        stated = statement[after:].lstrip(" ,")
        value = numeric_value(stated)
        if value is None and ", or " in stated:  # "1/4, or 25%": the same value in its last form
            first, _, last = stated.rpartition(", or ")
            value = numeric_value(last) if numeric_value(first) is not None else None
        if value is not None and token == "=" and _states_no_result(statement[:at], value):
            return None
        if (
            value is not None
            and token == ":"
            and value[0] not in "(["
            and _OPTION_LABEL.fullmatch(statement, statement.rfind(",", 0, at) + 1, at)
        ):
            return None  # "D: $175,000" lists an option ("D: (4, 0)" places a point)
    lowered = statement.lower()
    if value is None and (value := _concluded(statement, lowered)) is None:
        return None
    if _ESTIMATE.search(lowered) or _HYPOTHESIS.match(statement) and not _THEN.search(statement):
        return None  # an estimate, or a hypothesis that concludes nothing ("If b + 7 = 28, then b = 21" does)
    return end, value
