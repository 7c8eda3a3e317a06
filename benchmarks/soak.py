"""`probexit bench soak`: a server under steady streaming load for a long while; does anything it keeps grow?

A production endpoint runs for weeks, and what it keeps per request (records of the event channel, metric labels,
the requests it runs) must stay bounded. One server, `concurrency` client loops, each sending one streaming chat
request after another until `minutes` are up. A seeded draw picks each request's kind:
- plain: early exit on;
- disconnect: the client drops the stream after its first text (early exit consulted at every boundary but never
  firing: an exit the client never sees would leave the exit counters nothing to be compared with);
- choices: `n` > 1, early exit on;
- shadow: early exit in shadow mode (thinks to the end, reports what early exit would have done).
Every `sample_seconds` the RSS of the server's whole process tree (API process, engine core, workers) is sampled.
When time is up the clients finish their requests, the engine must settle to nothing running, and the server's
`probexit:*` counters (their change over the run) are compared with what the clients tallied from the responses.
The RSS growth after warm-up compares the median over the run's last `window_share` with the median over as long a
window right after the warm-up (the run's first `warmup_share`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from probexit.benchmarks.settings import SoakSettings
from probexit.probes.rules import NEVER

PLAIN, DISCONNECT, CHOICES, SHADOW = "plain", "disconnect", "choices", "shadow"
KINDS = {PLAIN: 0.4, DISCONNECT: 0.2, CHOICES: 0.2, SHADOW: 0.2}  # the draw's weights
EXTRA = {
    PLAIN: {"early_exit": {"enabled": True}},
    DISCONNECT: {"early_exit": {"enabled": True, "threshold": NEVER}},
    CHOICES: {"early_exit": {"enabled": True}},
    SHADOW: {"early_exit": {"shadow": True}},
}
MIB = 1 << 20


@dataclass
class Tally:
    """What the clients saw, summed over the run."""

    sent: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    completed: int = 0  # requests with every choice's finish reason and [DONE]
    disconnected: int = 0  # requests the client dropped before they finished
    errors: list = field(default_factory=list)
    choices: int = 0  # choices of completed requests
    early_exits: int = 0  # their choices whose early_exit says triggered (not shadow)
    reasoning_tokens: int = 0  # the sum of their choices' early_exit.reasoning_tokens
    shadow_choices: int = 0
    completion_tokens: int = 0


async def stream(http: httpx.AsyncClient, body: dict, drop_early: bool) -> dict:
    """One streaming request: each choice's final early_exit report, the usage, and whether it completed,
    was dropped by the client (`drop_early`: after its first text) or failed (an error)."""
    reports, usage, done = {}, None, False
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return {"error": f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"}
            async for line in response.aiter_lines():
                done = done or line == "data: [DONE]"
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line.removeprefix("data: "))
                if "error" in chunk:
                    return {"error": chunk["error"].get("message", "error event")}
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices", []):
                    if choice.get("finish_reason"):
                        reports[choice["index"]] = choice.get("early_exit")
                    delta = choice.get("delta", {})
                    if drop_early and (delta.get("reasoning_content") or delta.get("content")) and not reports:
                        return {"dropped": True}
    except httpx.HTTPError as error:
        return {"error": f"{type(error).__name__}: {error}"}
    if not done or len(reports) != body["n"]:
        return {"error": "the stream ended without every choice's finish reason and [DONE]"}
    return {"reports": reports, "usage": usage}


def record(tally: Tally, kind: str, result: dict) -> None:
    if "error" in result:
        tally.errors.append(f"{kind}: {result['error']}")
    elif result.get("dropped"):
        tally.disconnected += 1
    else:
        tally.completed += 1
        reports = [report or {} for report in result["reports"].values()]
        tally.choices += len(reports)
        tally.reasoning_tokens += sum(report.get("reasoning_tokens", 0) for report in reports)
        tally.early_exits += sum(bool(report.get("triggered")) for report in reports)
        tally.shadow_choices += len(reports) if kind == SHADOW else 0
        tally.completion_tokens += (result["usage"] or {}).get("completion_tokens", 0)


async def client_loop(http, model: str, questions: list[str], settings: SoakSettings, index: int, deadline, tally):
    """One client: requests one after another until the deadline (a request under way is finished)."""
    rng = random.Random(settings.seed * 100_003 + index)
    while time.monotonic() < deadline:
        kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
        body = {
            "model": model,
            "messages": [{"role": "user", "content": rng.choice(questions)}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "n": settings.n if kind == CHOICES else 1,
            "seed": rng.randrange(1 << 30),
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            **EXTRA[kind],
        }
        tally.sent[kind] += 1
        record(tally, kind, await stream(http, body, drop_early=kind == DISCONNECT))


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    import psutil  # vLLM's dependency: present wherever the servers run

    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that exited while we looked
            total += process.memory_info().rss
    return total


async def sample_rss(pid: int, every: float, samples: list, started: float, progress) -> None:
    while True:
        samples.append([round(time.monotonic() - started, 2), tree_rss(pid)])
        progress(samples[-1])
        await asyncio.sleep(every)


def read_metrics(text: str) -> dict[tuple, float]:
    """A /metrics page's probexit and vLLM request samples: {(sample name, labels but the model's): value}."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(("probexit:", "vllm:num_requests")) and not sample.name.endswith("_created"):
                labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("model_name", "engine")))
                values[(sample.name, labels)] = values.get((sample.name, labels), 0.0) + sample.value
    return values


def total(metrics: dict[tuple, float], name: str, **labels) -> float:
    wanted = set(labels.items())
    return sum(value for (sample, have), value in metrics.items() if sample == name and wanted <= set(have))


def compare_counters(before: dict, after: dict, tally: Tally) -> dict:
    """The server's counters over the run beside the clients' tallies (equal when both saw the same)."""
    change = lambda name, **labels: total(after, name, **labels) - total(before, name, **labels)  # noqa: E731
    pairs = {
        "requests_success": (change("probexit:requests_total", outcome="success"), tally.completed),
        "requests_aborted": (change("probexit:requests_total", outcome="aborted"), tally.disconnected),
        "requests_failed": (
            change("probexit:requests_total", outcome="error") + change("probexit:requests_total", outcome="rejected"),
            len(tally.errors),
        ),
        "early_exits": (change("probexit:early_exits_total"), tally.early_exits),
        "choices_finished": (change("probexit:thinking_tokens_count"), tally.choices),
        "reasoning_tokens": (change("probexit:thinking_tokens_sum"), tally.reasoning_tokens),
        "shadow_choices": (change("probexit:shadow_requests_total"), tally.shadow_choices),
        "channel_rejections": (change("probexit:event_channel_rejected_total"), 0),
    }
    rows = {
        name: {"server": server, "clients": clients, "equal": server == clients}
        for name, (server, clients) in pairs.items()
    }
    return {"rows": rows, "all_equal": all(row["equal"] for row in rows.values())}


def rss_summary(samples: list, duration: float, warmup_share: float, window_share: float) -> dict:
    """Median RSS right after warm-up and at the end (windows of `window_share` of the run), their growth, the
    peak, and the least-squares slope after warm-up."""
    warmup, window = warmup_share * duration, max(window_share * duration, 1e-9)
    after = [(t, rss) for t, rss in samples if t >= warmup]
    start = [rss for t, rss in after if t < warmup + window]
    end = [rss for t, rss in after if t >= duration - window]
    summary = {"warmup_s": warmup, "window_s": window, "samples": len(samples), "max_mib": None}
    if samples:
        summary["max_mib"] = max(rss for _, rss in samples) / MIB
    if not (start and end):
        return summary | {"start_mib": None, "end_mib": None, "growth_after_warmup_pct": None, "slope_mib_per_h": None}
    begin, finish = statistics.median(start), statistics.median(end)
    slope = _slope(after) * 3600 / MIB if len(after) > 1 else None
    return summary | {
        "start_mib": begin / MIB,
        "end_mib": finish / MIB,
        "growth_after_warmup_pct": 100 * (finish - begin) / begin,
        "slope_mib_per_h": slope,
    }


def _slope(points: list) -> float:
    mean_t = statistics.fmean(t for t, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (y - mean_y) for t, y in points) / spread if spread else 0.0


async def settle(http: httpx.AsyncClient, timeout: float = 30.0) -> dict:
    """Requests still running once the engine is given `timeout` seconds to drain: /health and vLLM's gauges."""
    began = time.monotonic()
    running = (await http.get("/health")).json()["requests_running"]
    while running and time.monotonic() - began < timeout:
        await asyncio.sleep(0.1)
        running = (await http.get("/health")).json()["requests_running"]
    metrics = read_metrics((await http.get("/metrics")).text)
    return {
        "health_requests_running": running,
        "vllm_num_requests_running": total(metrics, "vllm:num_requests_running"),
        "vllm_num_requests_waiting": total(metrics, "vllm:num_requests_waiting"),
        "settle_s": time.monotonic() - began,
    }


async def run_soak(
    base_url: str, api_key: str | None, questions: list[str], settings: SoakSettings, server_pid: int | None
) -> dict:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=4 * settings.concurrency, max_keepalive_connections=2 * settings.concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600, limits=limits) as http:
        model = (await http.get("/v1/models")).raise_for_status().json()["data"][0]["id"]
        before = read_metrics((await http.get("/metrics")).text)
        tally, samples, duration = Tally(), [], 60 * settings.minutes
        started = time.monotonic()
        sampler = None
        if server_pid is not None:
            report = _progress(tally, started)
            sampler = asyncio.create_task(sample_rss(server_pid, settings.sample_seconds, samples, started, report))
        loops = [
            client_loop(http, model, questions, settings, index, started + duration, tally)
            for index in range(settings.concurrency)
        ]
        await asyncio.gather(*loops)
        load_s = time.monotonic() - started
        if sampler is not None:
            sampler.cancel()
        end = await settle(http)
        after = read_metrics((await http.get("/metrics")).text)
    return {
        "model": model,
        "workload": {
            "minutes": settings.minutes,
            "concurrency": settings.concurrency,
            "kinds": KINDS,
            "n": settings.n,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "loadavg_after": os.getloadavg()},
        "load_s": load_s,
        "requests": {
            "sent": sum(tally.sent.values()),
            "sent_by_kind": tally.sent,
            "completed": tally.completed,
            "disconnected": tally.disconnected,
            "errors": len(tally.errors),
            "error_samples": tally.errors[:5],
            "completion_tokens": tally.completion_tokens,
        },
        "at_end": end,
        "counters": compare_counters(before, after, tally),
        "rss": rss_summary(samples, load_s, settings.warmup_share, settings.window_share) | {"series": samples},
    }


def _progress(tally: Tally, started: float):
    last = [0.0]

    def report(sample: list) -> None:
        if sample[0] - last[0] >= 60 or sample[0] == 0:
            last[0] = sample[0]
            done = tally.completed + tally.disconnected + len(tally.errors)
            print(
                f"  {sample[0] / 60:5.1f} min: {done} requests, {len(tally.errors)} errors, "
                f"RSS {sample[1] / MIB:.0f} MiB",
                flush=True,
            )

    return report


def count_log_errors(log: Path) -> int:
    """Lines of the server's log that report an error or a traceback."""
    if not log.is_file():
        return 0
    return sum(
        " ERROR " in line or line.startswith("Traceback") for line in log.read_text(errors="replace").splitlines()
    )


def summary_lines(report: dict) -> list[str]:
    requests, end, rss, counters = report["requests"], report["at_end"], report["rss"], report["counters"]
    growth = rss["growth_after_warmup_pct"]
    return [
        f"{requests['sent']} requests in {report['load_s'] / 60:.1f} min: {requests['completed']} completed, "
        f"{requests['disconnected']} dropped by their clients, {requests['errors']} errors "
        f"({report.get('server_log_errors', 'unknown')} error lines in the server's log)",
        f"at the end: {end['health_requests_running']} requests running, "
        f"{end['vllm_num_requests_waiting']:.0f} waiting",
        "RSS after warm-up: "
        + (
            f"{rss['start_mib']:.0f} -> {rss['end_mib']:.0f} MiB ({growth:+.2f}%)"
            if growth is not None
            else "not measured"
        ),
        f"probexit counters equal the clients' tallies: {counters['all_equal']}"
        + ("" if counters["all_equal"] else f" ({[n for n, r in counters['rows'].items() if not r['equal']]})"),
    ]


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "soak.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
