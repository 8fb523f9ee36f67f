#!/usr/bin/env bash
# Set up textgen on a GPU cloud instance with the framework the machine already has: a CUDA
# build of PyTorch or JAX is used as it is (nothing reinstalled); otherwise the GPU build of
# TensorFlow is installed. Then a check of the GPUs the backend sees and whether the LSTM layers
# will run the fused cuDNN kernel.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/cloud/setup.sh [--venv DIR] [--backend auto|tensorflow|jax|torch] [--dry-run] [--help]

Creates a virtual environment (default: .venv) with textgen on one Keras backend:
  auto (default)  the first of these that python3 (or $PYTHON) already has:
                    a CUDA build of PyTorch that sees a GPU   -> torch
                    JAX that sees a GPU                       -> jax
                  else                                        -> tensorflow
  torch, jax      the virtual environment sees the packages of python3 (or $PYTHON);
                  textgen is installed with --no-deps, then Keras, NumPy, Click and h5py: the
                  framework is never reinstalled
  tensorflow      pip install ".[gpu]" (tensorflow[and-cuda])
The choice is printed and written to DIR/textgen-backend, which scripts/cloud/train.sh passes
to textgen train as --backend. Then `textgen info --devices --backend B` prints the GPUs the
backend sees and whether the fused cuDNN kernel will run (on JAX for LSTM, not GRU).

  --venv DIR     where to create the virtual environment (default: .venv)
  --backend B    skip the detection
  --dry-run      print the commands instead of running them
  -h, --help     show this help
USAGE
}

venv=".venv"
backend="auto"
dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --venv) venv="${2:?--venv needs a directory}"; shift 2 ;;
    --backend) backend="${2:?--backend needs auto, tensorflow, jax or torch}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$backend" in
  auto|tensorflow|jax|torch) ;;
  *) echo "setup.sh: --backend must be auto, tensorflow, jax or torch" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/../.."
py="${PYTHON:-python3}"

run() {
  if [[ $dry_run -eq 1 ]]; then
    printf 'would run:'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

why="chosen with --backend"
if [[ "$backend" == "auto" ]]; then
  if "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    backend="torch"; why="$py has PyTorch with CUDA and sees a GPU; nothing reinstalled"
  elif "$py" -c 'import sys, jax; sys.exit(0 if any(d.platform == "gpu" for d in jax.devices()) else 1)' 2>/dev/null; then
    backend="jax"; why="$py has JAX and it sees a GPU; nothing reinstalled"
  else
    backend="tensorflow"; why="no CUDA PyTorch or GPU JAX in $py: installing tensorflow[and-cuda]"
  fi
fi
echo "setup.sh: backend $backend ($why)" >&2

if [[ "$backend" == "tensorflow" ]]; then
  run "$py" -m venv "$venv"
  run "$venv/bin/pip" install --upgrade pip
  run "$venv/bin/pip" install ".[gpu]"
else
  # The system's PyTorch/JAX stays as it is: textgen without its dependencies (TensorFlow),
  # then only the pure-Python ones Keras and textgen need.
  run "$py" -m venv --system-site-packages "$venv"
  # --system-site-packages shows the base interpreter's packages; when $py is itself a
  # virtual environment's python (as on images that keep PyTorch in /opt/.../.venv), the
  # framework lies in that environment instead. A .pth file adds $py's own site-packages, after
  # the new environment's own.
  if [[ $dry_run -eq 1 ]]; then
    echo "would write: $py's site-packages > $venv/.../site-packages/textgen-framework.pth"
  else
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$py" -c 'import site; print("\n".join(site.getsitepackages()))' >"$site/textgen-framework.pth"
  fi
  run "$venv/bin/pip" install --no-deps .
  run "$venv/bin/pip" install "keras>=3.15,<3.16" "numpy>=2.4,<3" "click>=8.5,<9" "h5py>=3.14,<4"
fi
if [[ $dry_run -eq 1 ]]; then
  echo "would write: $backend > $venv/textgen-backend"
else
  echo "$backend" > "$venv/textgen-backend"
fi
run "$venv/bin/textgen" info --devices --backend "$backend"
