"""The layers hold: which package may import which (docs/architecture.md), only the engine layer imports vLLM,
and every package is installed under `probexit.*`."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each installed package's folder, innermost layers first; a module belongs to the longest matching prefix.
LAYERS = {
    "probexit.assets": "assets",
    "probexit.kernels": "kernels",
    "probexit.probes": "probes",
    "probexit.rewards": "rewards",
    "probexit.engine": "engine",
    "probexit.server": "http",
    "probexit.training": "training",
    "probexit.benchmarks": "benchmarks",
    "probexit.cli": "cli",
}
# What each layer may import besides itself and the embedded default's paths.
ALLOWED = {
    "assets": set(),
    "kernels": set(),
    "probes": {"kernels"},
    "rewards": {"kernels", "probes"},
    "engine": {"kernels", "probes", "rewards"},
    "http": {"kernels", "probes", "rewards", "engine"},
    "training": {"kernels", "probes", "rewards", "engine"},
    "benchmarks": {"kernels", "probes", "rewards", "engine", "training"},
    "cli": {"kernels", "probes", "rewards", "engine", "http", "training", "benchmarks"},
}
FOLDERS = {
    "assets": "assets",
    "kernels": "kernels",
    "probes": "probes",
    "rewards": "rewards",
    "engine": "engine",
    "http": "server",
    "training": "training",
    "benchmarks": "benchmarks",
    "cli": "cli",
}


def layer_of(module: str) -> str | None:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    return LAYERS[max(matches, key=len)] if matches else None


def imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside functions (relative imports are not used here)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from probexit.server import engine`
    return found


def source_files(layer: str) -> list[Path]:
    return sorted((ROOT / FOLDERS[layer]).rglob("*.py"))


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_imports_point_one_way(layer):
    wrong = []
    for path in source_files(layer):
        for module in imports(path):
            target = layer_of(module)
            if target is not None and target != layer and target != "assets" and target not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module} ({layer} -> {target})")
    assert not wrong, "\n".join(sorted(set(wrong)))


@pytest.mark.parametrize("layer", [layer for layer in ALLOWED if layer != "engine"])
def test_only_the_engine_layer_imports_vllm(layer):
    wrong = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in source_files(layer)
        for module in imports(path)
        if module == "vllm" or module.startswith("vllm.")
    ]
    assert not wrong, "\n".join(wrong)


def test_every_package_is_installed():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}
    expected = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            expected.add(".".join((name, *parts)))
    assert expected == set(setuptools["packages"])


@pytest.mark.parametrize(
    "module, layer",
    [
        ("probexit.server.app", "http"),
        ("probexit.engine.offline", "engine"),
        ("probexit.server", "http"),
        ("probexit.rewards.ensemble", "rewards"),
        ("probexit.training.tinyworld.build", "training"),
        ("numpy", None),
    ],
)
def test_modules_are_placed_in_their_layer(module, layer):
    assert layer_of(module) == layer


def test_a_wrong_import_is_found(tmp_path):
    (tmp_path / "job.py").write_text("def run():\n    from probexit.server.app import build_app\n")
    assert "probexit.server.app" in imports(tmp_path / "job.py")
    assert layer_of("probexit.server.app") not in ALLOWED["training"]


def test_the_engine_layers_public_surface_imports_neither_vllm_nor_torch():
    """Benchmarks and the command line read the engine's constants and build request arguments without paying
    for vLLM's or torch's import (seconds), so that surface must stay light."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import probexit.engine\n"
        "from probexit.engine import EXTRA_ARGS_KEY, PROCESSOR_FQCN, EngineConfig, request_extra_args\n"
        "from probexit.engine.constants import ENGINE_DEAD, ensure_cpu_kv_cache\n"
        "from probexit.engine.requests import early_exit_engine_options, parse_request_args\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'torch'))\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"importing the engine's surface loaded: {result.stdout.strip()[:200]}"


def test_loading_a_probe_and_scoring_on_the_host_imports_no_triton(tmp_path):
    """A probe file is read and a CPU decode step scores its rows without Triton (the kernel's import is for GPUs
    and the interpreter only)."""
    import os
    import subprocess
    import sys

    from tests.conftest import random_linear_probe

    model = ROOT / "assets" / "tinyworld" / "policy"
    if not (model / "config.json").is_file():
        pytest.skip("the embedded policy is not built")
    random_linear_probe(model, tmp_path / "probe")
    code = (
        "import sys, torch\n"
        "from probexit.probes.probe import Probe\n"
        "from probexit.kernels.probe_score import score_boundary_rows\n"
        f"probe = Probe.load({str(tmp_path / 'probe')!r})\n"
        "weights = probe.weights\n"
        "hidden = torch.zeros(3, weights.hidden_size)\n"
        "scores, _ = score_boundary_rows(hidden, torch.tensor([0, 2]), weights, torch.full((2,), 0.5))\n"
        "assert scores.shape == (2,)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'triton')))\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "", f"loading a probe imported: {result.stdout.strip()[:200]}"
