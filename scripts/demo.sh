#!/usr/bin/env bash
# Main job on the embedded phantom data: set up .venv, then pretrain -> fine-tune -> evaluate and print a table.
# Extra arguments go to `ssl3d demo` (see `ssl3d demo --help`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec ssl3d demo "$@"
