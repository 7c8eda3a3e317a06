"""The event channel across two Ray nodes of a real (local) Ray cluster.

vLLM 0.32's Ray executor cannot run on its CPU build: the CPU platform names no Ray device, and
`initialize_ray_cluster` (vllm/v1/executor/ray_utils.py) raises "current platform cpu does not support ray"; its
data-parallel Ray engines fail the same check. So the worker on the second node here is a whole vLLM engine with
probexit's processor, started in a Ray task placed on that node with the environment vLLM's Ray paths would give
their workers (`get_env_vars_to_copy`, which includes the ticket once the collector has exported it). Its reports
travel over tcp, authenticated, to the collector in this process (the first node), and must equal, evaluation for
evaluation, what the same requests report in a local engine; a stranger on the second node is turned away.
"""

import os
import sys
import uuid

import pytest

from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P, EVENTS_CHANNEL_ENV, RAY_ENV_COPY_VAR
from probexit.engine.events import EventCollector
from probexit.probes.rules import NEVER, ExitSettings

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

QUESTIONS = [f"What is {a} + {b} - {c}?" for a, b, c in [(3, 14, 7), (12, 5, 9), (40, 17, 8), (9, 9, 9), (75, 3, 30)]]
SEED, MAX_TOKENS = 11, 160
# one exits at its first boundary, one never, the others where the probe (random weights) says so
SETTINGS = [ExitSettings(threshold=t) for t in (0.0, 0.5, 0.2, NEVER, 0.35)]


def generate_on_this_node(model_dir: str, probe_dir: str, rids: list[str], engine_kwargs: dict) -> dict:
    """In a Ray task: a vLLM engine whose worker finds the event channel only in the environment Ray gave the task;
    the node it ran on and each request's token ids."""
    from vllm import LLM

    from probexit.engine.adapter import platform_engine_defaults, shutdown_offline_engine
    from probexit.engine.constants import ensure_cpu_kv_cache
    from probexit.engine.requests import early_exit_engine_options, sampling_params
    from probexit.probes.probe import Probe

    ensure_cpu_kv_cache()
    options = early_exit_engine_options(probe_dir, Probe.load(probe_dir).config.boundary_policy.to_json())
    llm = LLM(model=model_dir, seed=0, **options, **platform_engine_defaults(engine_kwargs))
    tokenizer = llm.get_tokenizer()
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS
    ]
    params = [
        sampling_params(
            rid=rid,
            settings=SETTINGS[index],
            temperature=EVAL_TEMPERATURE,
            top_p=EVAL_TOP_P,
            max_tokens=MAX_TOKENS,
            seed=SEED + index,
        )
        for index, rid in enumerate(rids)
    ]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    shutdown_offline_engine(llm)
    return {
        "node": ray.get_runtime_context().get_node_id(),
        "token_ids": [list(o.outputs[0].token_ids) for o in outputs],
    }


def push_as_stranger(address: str, server_key: str) -> None:
    """In a Ray task: what someone on the second node who knows the address and the server's public key can do."""
    import json
    import time

    import zmq

    stranger = zmq.Context.instance().socket(zmq.PUSH)
    stranger.curve_serverkey = server_key.encode()
    stranger.curve_publickey, stranger.curve_secretkey = zmq.curve_keypair()
    stranger.connect(address)
    stranger.send(json.dumps({"evals": [], "marks": [], "step_seconds": [1.0]}).encode())
    time.sleep(1.0)
    stranger.close(0)


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers need not import the tests
    small = {"num_cpus": 1, "object_store_memory": 100 * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args={**small, "resources": {"head": 1}})
    second = cluster.add_node(**small, resources={"second": 1})
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        yield second.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()


def _worker_env() -> dict:
    """The environment vLLM's Ray paths copy to their workers (vllm/v1/engine/utils.py, ray_executor.py)."""
    from vllm.ray.ray_env import get_env_vars_to_copy
    from vllm.v1.executor.ray_utils import WORKER_SPECIFIC_ENV_VARS

    names = get_env_vars_to_copy(exclude_vars=WORKER_SPECIFIC_ENV_VARS, destination="the second node")
    return {name: os.environ[name] for name in names if name in os.environ}


def test_a_worker_on_the_second_node_reports_what_a_local_one_does(
    two_nodes, offline_engine, test_model_dir, tmp_path, monkeypatch
):
    from probexit.training.tinyworld.build import tiny_engine_kwargs

    offline_engine.probe.save(tmp_path / "probe")
    expected = offline_engine.generate(
        offline_engine.chat_prompts(QUESTIONS),
        temperature=EVAL_TEMPERATURE,
        top_p=EVAL_TOP_P,
        max_tokens=MAX_TOKENS,
        seed=SEED,
        settings=SETTINGS,
        progress=False,
    )
    rejected, seen = [], []
    collector = EventCollector(on_evaluation=seen.append, bind="tcp://127.0.0.1", on_rejected=rejected.append)
    for name in (EVENTS_CHANNEL_ENV, RAY_ENV_COPY_VAR):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the test
    collector.export_to_workers()
    rids = [uuid.uuid4().hex for _ in QUESTIONS]
    for rid in rids:
        collector.expect(rid)
    try:
        task = ray.remote(generate_on_this_node).options(
            num_cpus=1, resources={"second": 1}, runtime_env={"env_vars": _worker_env()}
        )
        engine_kwargs = {**tiny_engine_kwargs(), "max_num_seqs": 32}
        result = ray.get(task.remote(str(test_model_dir), str(tmp_path / "probe"), rids, engine_kwargs))
        assert result["node"] == two_nodes, "the engine did not run on the second node"
        stranger = ray.remote(push_as_stranger).options(num_cpus=0, resources={"second": 1})
        ray.get(stranger.remote(collector.address, collector.ticket.server_key))
        records = [collector.collect(rid) for rid in rids]
    finally:
        collector.close()
    assert [list(c.token_ids) for c in expected] == result["token_ids"]
    for record, reference in zip(records, expected):
        assert record.complete
        assert [_without_rid(e) for e in record.evaluations] == [_without_rid(e) for e in reference.evaluations]
    assert sum(len(r.evaluations) for r in records) == len(seen) > 0
    assert records[0].exit is not None and records[3].exit is None and records[3].evaluations
    assert rejected == ["unknown_key"] * len(rejected) and len(rejected) >= 1


def _without_rid(evaluation) -> tuple:
    return (
        evaluation.boundary_index,
        evaluation.token_index,
        evaluation.thinking_tokens,
        evaluation.score,
        evaluation.exit,
        evaluation.answer,
    )
