#!/usr/bin/env bash
# Set up textgen on a GPU cloud instance: a fresh virtual environment with the GPU build of
# TensorFlow, then a check that TensorFlow sees the GPU(s) and that the LSTM layers can use the
# fused cuDNN kernel.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/cloud/setup.sh [--venv DIR] [--dry-run] [--help]

Creates a virtual environment (default: .venv) and installs textgen with the GPU build of
TensorFlow (pip install ".[gpu]", i.e. tensorflow[and-cuda]), then runs `textgen info --devices`
to print the GPUs TensorFlow sees and whether the cuDNN LSTM kernel applies.

  --venv DIR   where to create the virtual environment (default: .venv)
  --dry-run    print the commands instead of running them
  -h, --help   show this help
USAGE
}

venv=".venv"
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) venv="${2:?--venv needs a directory}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/../.."

run() {
  if [[ $dry_run -eq 1 ]]; then
    printf 'would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

run python3 -m venv "$venv"
run "$venv/bin/pip" install --upgrade pip
run "$venv/bin/pip" install ".[gpu]"
run "$venv/bin/textgen" info --devices
