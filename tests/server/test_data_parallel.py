"""`probexit serve --data-parallel-size 2`: two engines behind one API process, each engine's worker reporting over
the one event channel. 200 requests over both engines: every choice's report present and its own (half the requests
exit at their first boundary, half are consulted at every boundary and never exit), the counters equal, 0 errors.
vLLM's CPU build runs non-MoE data parallelism as independent engines (vllm/v1/engine/core.py, run_engine_core);
the same path serves GPUs."""

import asyncio
import time

import httpx
import pytest

from probexit.probes.rules import NEVER
from tests.server.harness import Server, find_test_model, launch, make_probe, running

REQUESTS, CONCURRENCY = 200, 32


@pytest.fixture(scope="module")
def dp_server(tmp_path_factory):
    model_dir = find_test_model()
    if model_dir is None:
        pytest.skip("no test model: set PROBEXIT_TEST_MODEL to a model folder or build the embedded default")
    tmp = tmp_path_factory.mktemp("dp")
    started = time.monotonic()
    instance = launch(model_dir, tmp, make_probe(model_dir, tmp / "probe", bias=20.0), "--data-parallel-size", "2")
    with running(instance, started):
        yield instance


async def _ask(http: httpx.AsyncClient, server: Server, index: int, gate: asyncio.Semaphore) -> dict:
    fires = index % 2 == 0
    body = {
        "model": server.model,
        "messages": [{"role": "user", "content": f"What is {index % 50} + {(7 * index) % 40} - {(3 * index) % 30}?"}],
        "seed": index,
        "max_tokens": 192,
        "temperature": 0.6,
        "early_exit": {"enabled": True} if fires else {"enabled": True, "threshold": NEVER},
    }
    async with gate:
        response = await http.post("/v1/chat/completions", json=body)
    return {"fires": fires, "status": response.status_code, "body": response.json()}


async def _ask_all(server: Server) -> list[dict]:
    gate = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=300) as http:
        return await asyncio.gather(*(_ask(http, server, index, gate) for index in range(REQUESTS)))


@pytest.mark.slow
def test_two_engines_report_every_choice_to_the_one_api_process(dp_server):
    results = asyncio.run(_ask_all(dp_server))
    assert [r["status"] for r in results] == [200] * REQUESTS, next(r["body"] for r in results if r["status"] != 200)
    for result in results:
        choice = result["body"]["choices"][0]
        report, reasoning = choice["early_exit"], choice["message"]["reasoning_content"]
        if result["fires"]:  # the always-confident probe ends the thinking at the first boundary
            assert report["triggered"] and report["reason"] == "probe" and report["boundary"] == 0, report
            assert report["score"] > 0.99 and choice["finish_reason"] == "stop"
        else:  # consulted, never exiting: the report still carries the last score its own worker sent
            assert not report["triggered"] and report["score"] > 0.99 and report["boundary"] is None, report
        assert report["reasoning_tokens"] == result["body"]["usage"]["completion_tokens_details"]["reasoning_tokens"]
        assert reasoning.strip()
    assert dp_server.metric("probexit:early_exits_total") == REQUESTS // 2
    assert dp_server.metric("probexit:probe_evaluations_total", decision="exit") == REQUESTS // 2
    assert dp_server.metric("probexit:probe_evaluations_total", decision="continue") >= REQUESTS // 2
    assert dp_server.metric("probexit:requests_total", outcome="success") == REQUESTS
    assert dp_server.metric("probexit:event_channel_rejected_total") == 0
    served = [dp_server.metric("vllm:request_success_total", engine=str(engine)) for engine in (0, 1)]
    assert all(count > 0 for count in served) and sum(served) == REQUESTS, served
    assert dp_server.get("/health").json()["requests_running"] == 0
