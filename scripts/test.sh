#!/usr/bin/env bash
# All checks: set up .venv, check notebooks and library are in sync, run notebook tests, pytest, docs build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export MPLBACKEND=Agg PYTHONWARNINGS="ignore::UserWarning:nbdev.doclinks"
status_of() { git status --porcelain -- ssl3d nbs README.md 2>/dev/null | md5sum; }
echo "== nbdev sync check"
before="$(status_of)"
nbdev_export
nbdev_clean
after="$(status_of)"
if [ "$before" != "$after" ]; then
  echo "FAIL: nbdev_export/nbdev_clean changed files (library out of sync with notebooks, or notebooks unclean):"
  git status --porcelain -- ssl3d nbs
  exit 1
fi
echo "== README and docs"
python scripts/build_docs.py --check
echo "== nbdev_test"
nbdev_test --n_workers 2 --timing
echo "== pytest"
python -m pytest tests/ -q -p no:cacheprovider "$@"
