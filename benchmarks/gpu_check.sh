#!/usr/bin/env bash
# GPU check: each method's preset with AMP and the batched pipeline, then a small label-efficiency grid (papermill).
# Usage: benchmarks/gpu_check.sh [--device cuda|cpu] [--tiny] [--out DIR] [--steps N] [--workers N] [--methods a,b]
# Writes DIR/report.json and DIR/report.md (format: benchmarks/README.md). Exit status 0 when every part ran.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
