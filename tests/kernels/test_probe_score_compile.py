"""The kernel compiled for NVIDIA GPUs on this CPU machine: Triton compiles to PTX and cubin ahead of time.

This checks what the interpreter cannot: that the GPU front end and ptxas accept the kernel for the
arguments the wrapper really passes (types, static branches, tl.dot tile shapes), that the split tickets
are acq_rel atomics at GPU scope, and which launch candidates fit each GPU's shared memory.
"""

from __future__ import annotations

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import mangle_type

from probexit.kernels import triton_kernel
from probexit.kernels.triton_kernel import KernelConfig, gpu_candidates
from tests.kernels.cases import make_case, uninterpreted

pytestmark = uninterpreted
KERNEL = triton_kernel._probe_score_kernel  # kept: the tests swap the module's kernel for a recorder
SHARED_MEMORY = {90: 232448, 80: 166912}  # bytes a block may use: H100 / A100 (cudaDevAttrMaxSharedMemoryPerBlockOptin)
ARCHS = [pytest.param(90, id="sm90"), pytest.param(80, id="sm80")]
VARIANTS = [  # batch, hidden size, width, states' dtype, probe's dtype, launch, features read
    pytest.param(5, 4096, 0, torch.bfloat16, torch.bfloat16, KernelConfig(4, 512, 8), 0, id="linear-bf16-split"),
    pytest.param(67, 1536, 256, torch.bfloat16, torch.bfloat16, KernelConfig(16, 64, 4, 8), 0, id="w256-bf16-dot"),
    pytest.param(8, 1000, 32, torch.float16, torch.float32, KernelConfig(64, 128, 1, 8), 0, id="w32-fp32-probe-tf32"),
    pytest.param(1, 96, 16, torch.float32, torch.float16, KernelConfig(16, 32, 2), 0, id="w16-fp16-probe"),
    pytest.param(5, 4096, 0, torch.bfloat16, torch.bfloat16, KernelConfig(4, 512, 8), 9, id="linear-9-features-split"),
    pytest.param(8, 1536, 32, torch.bfloat16, torch.bfloat16, KernelConfig(16, 64, 1), 9, id="w32-9-features"),
]


def _compile(monkeypatch, case, config: KernelConfig, arch: int):
    """Compile the launch `_launch` would make for this case, without a GPU."""
    kernel, calls = KERNEL, []
    recorder = type("Recorder", (), {"__getitem__": lambda self, grid: lambda *a, **k: calls.append((a, k))})()
    monkeypatch.setattr(triton_kernel, "_probe_score_kernel", recorder)
    monkeypatch.setattr(triton_kernel, "kernel_is_interpreted", lambda: False)
    n = case.rows.shape[0]
    triton_kernel._launch(*case, torch.empty(n), torch.empty(n, dtype=torch.bool), config)
    ((args, kwargs),) = calls
    constexprs = {name: kwargs[name] for name in kernel.arg_names if name in kwargs}
    signature = {name: mangle_type(value) for name, value in zip(kernel.arg_names, args)}
    signature.update(dict.fromkeys(constexprs, "constexpr"))
    options = {k: v for k, v in kwargs.items() if k not in constexprs}
    return triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", arch, 32), options=options)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("batch", "hidden_size", "width", "dtype", "weight_dtype", "config", "n_features"), VARIANTS)
def test_compiles_for_gpu(monkeypatch, batch, hidden_size, width, dtype, weight_dtype, config, n_features, arch):
    case = make_case(
        batch, hidden_size, width, dtype, weight_dtype=weight_dtype, n_features=n_features, feature_dtype=torch.float32
    )
    compiled = _compile(monkeypatch, case, config, arch)
    assert compiled.asm["cubin"]
    assert compiled.metadata.shared <= SHARED_MEMORY[arch]
    tickets = [line for line in compiled.asm["ptx"].splitlines() if "atom.global" in line]
    assert len(tickets) == 1 and "atom.global.gpu.acq_rel.add" in tickets[0] and tickets[0].lstrip().startswith("@")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "width", [pytest.param(0, id="linear"), pytest.param(32, id="w32"), pytest.param(256, id="w256")]
)
@pytest.mark.parametrize("dtype", [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float32, id="fp32")])
def test_every_tuning_candidate_compiles_and_most_fit(monkeypatch, dtype, width, arch):
    case = make_case(256, 8192, width, dtype)
    candidates = gpu_candidates(256, 8192, width, sm_count=132) + gpu_candidates(1, 8192, width, sm_count=132)
    shared = [_compile(monkeypatch, case, config, arch).metadata.shared for config in candidates]
    fits = [s <= SHARED_MEMORY[arch] for s in shared]
    assert sum(fits) >= len(fits) / 2, list(zip(candidates, shared))  # the tuner skips the rest
