"""The boundary policy: where a reasoning chunk ends and whether it states an intermediate answer.

One implementation serves the engine (online, a token at a time, inside the decode step) and the
training jobs (offline, over a finished trace): `BoundaryTracker.feed` is the only place that decides,
so the probe is trained on exactly the positions where the server reads it.

A boundary is the token that completes a paragraph break (a blank line) while the sequence is thinking. In
the `answer` mode, only a break whose paragraph states an answer the extractors read is one (answerless paragraphs
join the next one's chunk); in the `paragraph` mode every break is one, whatever its paragraph says (the answer
read there, if any, is still recorded for reports), so that the decision never depends on reading the answer.
Tokens may fuse the newlines with other characters (`.\\n\\n`), so breaks are found in the bytes the tokens spell,
not by token id.

Each tracker reads with the policy's extractors bound to its request's question: a multiple-choice model often
concludes with an option's content ("So the depreciation is $720.") where the question lists "H: $720", and a
reader that knows the options reads that as H. The question is the prompt's own text, decoded from the prompt ids
the engine and the offline jobs both hold, so both bind the same options; a replay of bare thinking is given it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from probexit.probes.answers import AnswerExtractor, get_extractor
from probexit.probes.markers import THINK_END, THINK_START, THOUGHT, ThinkingMarkers, ThinkingPhase

ANSWER, PARAGRAPH = "answer", "paragraph"
BOUNDARY_MODES = (ANSWER, PARAGRAPH)


class UnknownBoundaryModeError(ValueError):
    pass


@dataclass(frozen=True)
class BoundaryPolicyConfig:
    """What the probe file records about how boundaries were found."""

    think_start: str = field(default=THINK_START, metadata={"help": "The marker that opens the thinking."})
    think_end: str = field(default=THINK_END, metadata={"help": "The marker that closes the thinking."})
    paragraph_break: str = "\n\n"
    extractors: tuple[str, ...] = field(
        default=("tinyworld", "boxed", "answer_is"),
        metadata={
            "help": "Answer extractors, tried in order at each paragraph break (comma-separated): the tiny world's "
            "tinyworld,boxed,answer_is, or reasoning for a real reasoning model's prose."
        },
    )
    mode: str = field(
        default=ANSWER,
        metadata={
            "flag": "--boundaries",
            "choices": BOUNDARY_MODES,
            "help": "Where the probe is asked: answer (a paragraph break whose paragraph states an answer the "
            "extractors read) or paragraph (every paragraph break inside the thinking).",
        },
    )

    def __post_init__(self):
        if self.mode not in BOUNDARY_MODES:
            raise UnknownBoundaryModeError(
                f"unknown boundary mode {self.mode!r} (this version knows {', '.join(BOUNDARY_MODES)})"
            )

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> BoundaryPolicyConfig:
        """A recorded policy; one written before modes existed is the `answer` mode."""
        known = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        if "extractors" in known:
            known["extractors"] = tuple(known["extractors"])
        return cls(**known)


@dataclass(frozen=True)
class Boundary:
    token_index: int  # position in the completion of the token that ends the chunk
    boundary_index: int  # 0 for the sequence's first boundary
    paragraph_index: int  # paragraphs completed so far, this one included, minus one
    thinking_tokens: int  # thinking tokens up to and including this one
    answer: str | None  # the answer the chunk's last paragraph states, as the extractors read it (None: none)
    chunk_text: str


class BoundaryPolicy:
    """A `BoundaryPolicyConfig` bound to a tokenizer: token bytes and the thinking marker ids."""

    def __init__(self, config: BoundaryPolicyConfig, tokenizer):
        self.config = config
        self.every_paragraph = config.mode == PARAGRAPH
        self.extractor: AnswerExtractor = get_extractor(config.extractors)
        self.markers = ThinkingMarkers.from_tokenizer(tokenizer, config.think_start, config.think_end)
        if self.markers is None:
            raise ValueError(f"the tokenizer has no single token for {config.think_end!r}; boundaries need one")
        self.think_start_id, self.think_end_id = self.markers.start_id, self.markers.end_id
        self.token_bytes = token_byte_table(tokenizer)
        # The prompt as the reader looks for a question in it: chat markers (added tokens) end a line, so that the
        # option that closes a user turn ends its line as the others do.
        added = set(tokenizer.added_tokens_decoder)
        self.prompt_bytes = [b"\n" if i in added else piece for i, piece in enumerate(self.token_bytes)]
        self.reads_options = bool(getattr(self.extractor, "reads_options", False))
        self.break_bytes = config.paragraph_break.encode()
        self.may_decide = self._decisive_tokens()

    def _decisive_tokens(self) -> bytes:
        """1 for each token id at which `BoundaryTracker.feed` can find a boundary or change the thinking
        state, 0 for the rest. A break found after appending a token ends inside that token, so only tokens
        holding the break's last byte can complete one; the thinking markers are the only other tokens that
        matter. The decode step feeds a request's tokens only when one of these arrives (the tokens in
        between are fed then, in order), which gives the same boundaries with a fraction of the work."""
        last_byte = self.break_bytes[-1:]
        markers = {self.think_start_id, self.think_end_id}
        return bytes(int(last_byte in piece or token_id in markers) for token_id, piece in enumerate(self.token_bytes))

    def tracker(self, prompt_ids: list[int] | None, question: str | None = None) -> BoundaryTracker:
        """A tracker for a completion that follows `prompt_ids`, reading with `reader(question)`; without a
        `question`, the prompt's own text is the question (see `prompt_text`)."""
        if question is None and prompt_ids and self.reads_options:
            question = self.prompt_text(prompt_ids)
        return BoundaryTracker(self, self.markers.phase(prompt_ids), self.reader(question))

    def thinking_tracker(self, question: str | None = None) -> BoundaryTracker:
        """A tracker fed the thinking text alone (its markers already cut off), as a replay reads a trace."""
        opened = ThinkingPhase(self.think_start_id, self.think_end_id, opened=True)
        return BoundaryTracker(self, opened, self.reader(question))

    def segment(
        self, prompt_ids: list[int] | None, completion_ids: list[int], question: str | None = None
    ) -> list[Boundary]:
        """Offline: every boundary of a finished completion, exactly as the engine would find them."""
        tracker = self.tracker(prompt_ids, question)
        return [b for b in map(tracker.feed, completion_ids) if b is not None]

    def reader(self, question: str | None) -> AnswerExtractor:
        """The extractors bound to the multiple-choice options `question` lists (an option named by its content
        reads as its letter), or the plain extractors when it lists none or there is no question."""
        if not question or not self.reads_options:
            return self.extractor
        bound = self.extractor.for_question(question)
        return self.extractor if bound == self.extractor else bound

    def prompt_text(self, prompt_ids: list[int]) -> str:
        """The text the prompt's tokens spell, each chat marker (an added token) a line break: what a question's
        lettered options are read from. One pass over the ids, once per request."""
        table = self.prompt_bytes
        try:
            spelled = b"".join(map(table.__getitem__, prompt_ids))
        except IndexError:  # an id past the tokenizer's vocabulary (a model's padded embedding rows) spells nothing
            spelled = b"".join(table[i] for i in prompt_ids if 0 <= i < len(table))
        return spelled.decode("utf-8", errors="replace")


@dataclass
class BoundaryTracker:
    """The incremental state of one sequence. Rebuildable at any time by feeding its tokens again."""

    policy: BoundaryPolicy
    phase: ThinkingPhase
    extractor: AnswerExtractor  # the policy's extractors, bound to this sequence's question (`BoundaryPolicy.reader`)
    position: int = 0  # tokens fed so far
    n_boundaries: int = 0
    n_paragraphs: int = 0
    chunk: bytearray = field(default_factory=bytearray)  # the thinking since the last boundary
    paragraph_start: int = 0  # where in `chunk` the paragraph being written began

    @property
    def thinking(self) -> bool:
        return self.phase.thinking

    @property
    def thinking_tokens(self) -> int:
        return self.phase.thinking_tokens

    def feed(self, token_id: int) -> Boundary | None:
        index, self.position = self.position, self.position + 1
        if self.phase.advance(token_id) != THOUGHT:
            return None
        policy = self.policy
        piece = policy.token_bytes[token_id] if 0 <= token_id < len(policy.token_bytes) else b""
        search_from = max(0, len(self.chunk) - len(policy.break_bytes) + 1)
        self.chunk += piece
        found = self.chunk.find(policy.break_bytes, search_from)
        if found == -1:
            return None
        end = found + len(policy.break_bytes)
        self.n_paragraphs += 1
        # Only the paragraph just completed can state something new (an earlier one that did was a boundary), so
        # only it is read: a long chunk of answerless paragraphs costs no more per break than a short one.
        paragraph, self.paragraph_start = self.chunk[self.paragraph_start : end], end
        answer = self.extractor.extract(paragraph.decode("utf-8", errors="replace"))
        if answer is None and not policy.every_paragraph:
            return None  # the paragraph stated nothing: the chunk grows into the next paragraph
        text = self.chunk[:end].decode("utf-8", errors="replace")
        boundary = Boundary(index, self.n_boundaries, self.n_paragraphs - 1, self.thinking_tokens, answer, text)
        self.n_boundaries += 1
        self.chunk, self.paragraph_start = self.chunk[end:], 0
        return boundary

    def feed_quiet(self, token_ids: list[int]) -> bool:
        """Feed, all at once, tokens at none of which a boundary can be found or the thinking state change
        (`BoundaryPolicy.may_decide` is 0 for each): the state is the one `feed` leaves after them, one by one.
        False, feeding nothing, when one of them is not such a token. The decode step catches a request up
        with it: most tokens are quiet, and one call over them costs what `feed` costs for a single token."""
        if not token_ids:
            return True
        may_decide = self.policy.may_decide
        if min(token_ids) < 0 or max(token_ids) >= len(may_decide) or any(map(may_decide.__getitem__, token_ids)):
            return False
        self.position += len(token_ids)
        if self.phase.advance_unmarked(len(token_ids)):
            self.chunk += b"".join(map(self.policy.token_bytes.__getitem__, token_ids))
        return True


def token_byte_table(tokenizer) -> list[bytes]:
    """The bytes each token id spells. Byte-level BPE (GPT-2, Qwen, Llama 3, DeepSeek) maps exactly;
    other tokenizers fall back to decoding ids one at a time."""
    size = max(len(tokenizer), max(tokenizer.get_vocab().values()) + 1)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    decoder = _byte_level_decoder()
    added = {token.content for token in tokenizer.added_tokens_decoder.values()}
    table = []
    for token_id, token in enumerate(tokens):
        if token is None:
            table.append(b"")
        elif token in added:
            table.append(token.encode())
        elif all(ch in decoder for ch in token) and _is_byte_level(tokenizer):
            table.append(bytes(decoder[ch] for ch in token))
        else:
            table.append(tokenizer.decode([token_id], clean_up_tokenization_spaces=False).encode())
    return table


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return backend is not None and "ByteLevel" in type(backend.decoder).__name__ + repr(backend.decoder)


def _byte_level_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes)}
