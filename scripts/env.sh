#!/usr/bin/env bash
# Create (or reuse) the project-local virtual environment .venv with ssl3d and its dev tools.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it only installs what is missing).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[ssl3d] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
VPY="$here/.venv/bin/python"
pipq() { "$VPY" -m pip install --disable-pip-version-check -q "$@" 2>&1 | grep -vE "^WARNING: Location|^$" || true; }
# torch first: a CPU build of 2.13.0 lies on this machine's disk; a bare `torch` requirement would pull a multi-GB CUDA build.
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[ssl3d] installing torch==2.13.0 (override with an existing torch in the venv)"
  pipq "torch==${SSL3D_TORCH_VERSION:-2.13.0}"
fi
stamp=".venv/.ssl3d-installed"
want="$(cat settings.ini setup.py | md5sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[ssl3d] installing ssl3d (editable) with the dev extra"
  pipq -e ".[dev]"
  "$VPY" -c "import torch, ssl3d, nbdev" || { echo "[ssl3d] install failed"; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$here/.venv/bin:$PATH"
