#!/usr/bin/env bash
# Sample from a run folder copied back from a GPU instance, on a laptop's CPU. Sampling uses
# NumPy only (no TensorFlow import), so it needs no GPU and starts in a fraction of a second.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/cloud/sample.sh [--dry-run] [--help] RUN [extra textgen sample args...]

Runs `textgen sample --run RUN ...` on the CPU (CUDA_VISIBLE_DEVICES is cleared). Without
extra arguments it prints 500 characters at temperature 0.5.

Example:
  scripts/cloud/sample.sh runs/shakespeare --chars 300 --temperature 0.2 --temperature 0.8
USAGE
}

dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) break ;;
  esac
done
if [[ $# -lt 1 ]]; then
  echo "sample.sh: need RUN (see --help)" >&2
  exit 2
fi
run_dir="$1"
shift
# shellcheck source=scripts/cloud/common.sh
source "$(dirname "$0")/common.sh"
args=("$@")
if [[ ${#args[@]} -eq 0 ]]; then
  args=(--chars 500 --temperature 0.5)
fi
cmd=("${textgen[@]}" sample --run "$run_dir" "${args[@]}")
if [[ $dry_run -eq 1 ]]; then
  printf 'would run: CUDA_VISIBLE_DEVICES='; printf ' %q' "${cmd[@]}"; printf '\n'
  exit 0
fi
CUDA_VISIBLE_DEVICES="" exec "${cmd[@]}"
