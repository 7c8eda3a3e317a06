"""What each benchmark can be told: one documented dataclass per `probexit bench` suite.

The command line makes its flags from these fields (`cli/flags.py`), so each default and each check is
written once, here. The module is light (no torch, vLLM or HTTP client), so that building a benchmark's
parser loads no benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P
from probexit.probes.boundary import ANSWER, BOUNDARY_MODES
from probexit.probes.features import ANSWER_HISTORY, END_OF_THINKING, FEATURE_GROUPS, feature_count

# What the tiny world's probe reads beside its hidden state (`BuildConfig.probe_inputs`; a test holds the two
# equal): importing the build here would slow every `probexit bench --help`.
EMBEDDED_PROBE_FEATURES = feature_count((END_OF_THINKING, ANSWER_HISTORY))


def _positive(**values) -> None:
    """One line naming the flags that must be positive and are not."""
    bad = [name for name, value in values.items() if value is not None and value < 1]
    if bad:
        raise ValueError(f"{', '.join('--' + name.replace('_', '-') for name in bad)} must be positive")


@dataclass(frozen=True)
class RequestSampling:
    """The problems `savings` and `shadow` send and how they are sampled (the same, so that their runs compare)."""

    problems: Path | None = field(
        default=None,
        metadata={"help": 'JSONL of {"question", "answer"} to send. Default: the tiny world\'s test split.'},
    )
    limit: int | None = field(default=None, metadata={"help": "Use the first N problems."})
    concurrency: int = field(default=32, metadata={"help": "Requests in flight at once."})
    seed: int = field(default=0, metadata={"help": "Problem i is sampled with seed + i."})
    temperature: float = field(default=EVAL_TEMPERATURE, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=EVAL_TOP_P, metadata={"help": "Nucleus sampling."})
    max_tokens: int = field(default=1024, metadata={"help": "Longest completion in tokens."})

    def __post_init__(self):
        _positive(limit=self.limit, concurrency=self.concurrency, max_tokens=self.max_tokens)

    @property
    def sampling(self) -> dict:
        """The sampling fields of every request (and of the report, which a later run is checked against)."""
        return {"seed": self.seed, "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens}


@dataclass(frozen=True)
class SavingsSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/report.json, DIR/pareto.png, DIR/runs.jsonl."})
    compare_probe: Path | None = field(
        default=None,
        metadata={
            "metavar": "DIR",
            "help": "Another probe for the same model: a second server serving it runs its default and sweep on the "
            "same problems and seeds, reported as the rows named compared_probe.",
        },
    )


@dataclass(frozen=True)
class ShadowSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/shadow.json."})
    url: str | None = field(
        default=None,
        metadata={
            "help": "A server running with --shadow-rate: only read its metrics (the estimates cover every shadow "
            "request since it started). Without it, the problems are sent in shadow mode first."
        },
    )
    savings: Path | None = field(
        default=None,
        metadata={
            "metavar": "DIR",
            "help": "A `probexit bench savings` --out folder of the same problems and sampling: put what it "
            "measured with early exit on beside the estimates.",
        },
    )


@dataclass(frozen=True)
class ReplaySettings:
    traces: Path = field(
        metadata={
            "metavar": "FILE",
            "help": 'JSONL: {"completion", "answer", "id"?} or chat responses (reasoning_content or reasoning '
            'beside content) with the gold "answer".',
        }
    )
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/report.json, DIR/replay.png."})
    tokenizer: str | None = field(
        default=None,
        metadata={"metavar": "NAME_OR_PATH", "help": "Measure in this tokenizer's tokens. Default: characters."},
    )
    extractors: tuple[str, ...] = field(
        default=("reasoning",),
        metadata={
            "help": "Answer extractors, in order: reasoning for real reasoning models' prose, "
            "tinyworld,boxed,answer_is for the tiny world."
        },
    )
    boundaries: str = field(
        default=ANSWER,
        metadata={
            "choices": BOUNDARY_MODES,
            "help": "Where to exit: answer (a paragraph whose answer the extractors read) or paragraph (every "
            "paragraph break; a rule that needs an answer still waits for one).",
        },
    )

    def __post_init__(self):
        from probexit.probes.answers import get_extractor

        get_extractor(self.extractors)  # unknown names fail here, before any work
        if not self.traces.is_file():
            raise ValueError(f"no traces file at {self.traces}")


@dataclass(frozen=True)
class KernelSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/kernel.json."})
    repeats: int = field(default=20, metadata={"help": "On CPU: timed calls per path and shape (their median)."})
    rep_ms: int = field(default=100, metadata={"help": "On GPU: do_bench's milliseconds per measurement."})
    peak_gbps: float | None = field(
        default=None, metadata={"help": "Peak memory bandwidth in GB/s. Default: a table by GPU name."}
    )
    dtype: str = field(
        default="bfloat16",
        metadata={"choices": ("bfloat16", "float16", "float32"), "help": "Dtype of the hidden states and the probe."},
    )
    batches: tuple[int, ...] = field(default=(1, 8, 64, 256), metadata={"nargs": "+", "help": "Rows per step."})
    hidden_sizes: tuple[int, ...] = field(
        default=(192, 1536, 3584, 4096, 5120, 8192),  # 192: the tiny world's policy (training/tinyworld/policy.py)
        metadata={"nargs": "+", "help": "Hidden sizes (192: the tiny world's)."},
    )
    widths: tuple[int, ...] = field(
        default=(0, 32, 256), metadata={"nargs": "+", "help": "Probe widths, 0 for linear."}
    )
    features: tuple[int, ...] = field(
        default=(0, EMBEDDED_PROBE_FEATURES, feature_count(tuple(FEATURE_GROUPS))),
        metadata={
            "nargs": "+",
            "help": "Features per row the probe reads beside the hidden state (fp32), 0 for none; "
            "the default's other counts are the embedded probe's and every feature group a probe may read.",
        },
    )
    compile: bool = field(default=True, metadata={"help": "Also time torch.compile of the reference (minutes on CPU)."})

    def __post_init__(self):
        if self.repeats < 1 or self.rep_ms < 1 or (self.peak_gbps is not None and self.peak_gbps <= 0):
            raise ValueError("--repeats and --rep-ms must be at least 1, and --peak-gbps positive")
        shape_values = (self.batches, self.hidden_sizes, self.widths, self.features)
        if any(value < 0 for values in shape_values for value in values):
            raise ValueError("--batches, --hidden-sizes, --widths and --features take non-negative integers")


@dataclass(frozen=True)
class LoadSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/load.json."})
    concurrency: int = field(default=64, metadata={"help": "Streaming requests in flight at once."})
    rounds: int = field(
        default=5,
        metadata={"help": "Overhead rounds (each: early exit never firing, then disabled, in alternating order)."},
    )
    warmup: int = field(default=4, metadata={"help": "Requests before any is measured (compile caches, first use)."})
    max_tokens: int = field(default=256, metadata={"help": "Longest completion in tokens."})
    temperature: float = field(default=EVAL_TEMPERATURE, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=EVAL_TOP_P, metadata={"help": "Nucleus sampling."})
    seed: int = field(default=0, metadata={"help": "Seed of the prompts and of the sampling."})
    serve_flags: tuple[str, ...] = ()  # after `--`: flags for the `probexit serve` the benchmark starts

    def __post_init__(self):
        _positive(concurrency=self.concurrency, rounds=self.rounds, max_tokens=self.max_tokens)
        if self.warmup < 0:
            raise ValueError("--warmup must not be negative")

    @property
    def sampling(self) -> dict:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p}


@dataclass(frozen=True)
class EngineOverheadSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/engine_overhead.json."})
    model: Path | None = field(default=None, metadata={"help": "Model folder. Default: the embedded policy."})
    probe: Path | None = field(default=None, metadata={"help": "Probe folder. Default: the embedded probe."})
    prompts: int = field(default=64, metadata={"help": "Test questions per batch."})
    rounds: int = field(default=3, metadata={"help": "Rounds, each timing both sides in alternating order."})
    max_tokens: int = field(default=256, metadata={"help": "Longest completion in tokens."})
    seed: int = field(default=0, metadata={"help": "Seed of the sampling."})

    def __post_init__(self):
        _positive(prompts=self.prompts, rounds=self.rounds, max_tokens=self.max_tokens)


@dataclass(frozen=True)
class ServerOverheadSettings:
    model: str = field(metadata={"help": "Model folder or hub id, served by every server."})
    out: Path = field(metadata={"metavar": "FILE", "help": "The JSON report (the servers' logs go beside it)."})
    probe: Path | None = field(
        default=None, metadata={"help": "Probe folder, for the probexit variant with the probe on."}
    )
    requests: int = field(default=16, metadata={"help": "Sequential requests per variant."})
    concurrency: int = field(default=8, metadata={"help": "Requests in flight for the throughput run."})
    concurrent_requests: int = field(
        default=64,
        metadata={
            "help": "Requests of the throughput run (a few seconds of work: one wave of 8 took about 1 s, too "
            "short to measure a few percent)."
        },
    )
    max_tokens: int = field(default=256, metadata={"help": "Tokens every request generates (ignore_eos)."})
    warmup: int = field(default=3, metadata={"help": "Requests before any is measured."})
    rounds: int = field(
        default=1, metadata={"help": "Server pairs, in alternating order: vLLM, probexit, probexit, vLLM, ..."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the prompts."})
    control: bool = field(
        default=False,
        metadata={"help": "Also run vLLM's server with probexit's logits processor loaded as a no-op."},
    )
    engine_flags: tuple[str, ...] = ()  # after `--`: engine flags given to every server

    def __post_init__(self):
        _positive(requests=self.requests, concurrency=self.concurrency, max_tokens=self.max_tokens, rounds=self.rounds)
        _positive(concurrent_requests=self.concurrent_requests)
        if self.warmup < 0:
            raise ValueError("--warmup must not be negative")


@dataclass(frozen=True)
class SoakSettings:
    out: Path = field(metadata={"metavar": "DIR", "help": "Writes DIR/soak.json (the server's log beside it)."})
    minutes: float = field(default=30.0, metadata={"help": "How long the load lasts."})
    concurrency: int = field(default=32, metadata={"help": "Streams in flight at once (one client loop each)."})
    n: int = field(default=3, metadata={"help": "Choices of the requests that ask for several (n > 1)."})
    max_tokens: int = field(default=256, metadata={"help": "Longest completion in tokens."})
    temperature: float = field(default=EVAL_TEMPERATURE, metadata={"help": "Sampling temperature."})
    top_p: float = field(default=EVAL_TOP_P, metadata={"help": "Nucleus sampling."})
    seed: int = field(default=0, metadata={"help": "Seed of the draws of kinds, questions and sampling seeds."})
    sample_seconds: float = field(default=5.0, metadata={"help": "How often the server's memory is sampled."})
    warmup_share: float = field(
        default=0.2,
        metadata={"help": "The run's first share, left out of the RSS growth (compile caches, allocator pools)."},
    )
    window_share: float = field(
        default=0.1,
        metadata={"help": "The share of the run whose median RSS is compared: right after warm-up, and at the end."},
    )
    serve_flags: tuple[str, ...] = ()  # after `--`: flags for the `probexit serve` the benchmark starts

    def __post_init__(self):
        _positive(concurrency=self.concurrency, max_tokens=self.max_tokens)
        if not (self.minutes > 0 and self.sample_seconds > 0):
            raise ValueError("--minutes and --sample-seconds must be positive")
        if self.n < 2:
            raise ValueError("--n must be at least 2 (the kind of request that asks for several choices)")
        if not (0 <= self.warmup_share < 1 and 0 < self.window_share <= 1 - self.warmup_share):
            raise ValueError("--warmup-share lies in [0, 1) and --window-share in (0, 1 - warm-up share]")
