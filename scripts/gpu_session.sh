#!/usr/bin/env bash
# The one command for a session that has a GPU (issue 33): run it first thing, through the
# device tool, from the repository root. Every step is bounded (timeout) and independent (one
# that fails stops no other), and what each step made is written to $OUT as soon as it is done,
# so a call stopped at its limit still brings back what was measured.
#
# The device tool's call (one call, about 9 minutes of the 15; the machine's start comes on top):
#   run(command="TEXTGEN_COMMIT=<the checkout's git rev-parse HEAD> bash scripts/gpu_session.sh",
#       carry=[".whl"], timeout_s=600)
# (the machine gets the tree without .git: TEXTGEN_COMMIT names the commit in the records)
# (a second call on the still-warm machine, time allowing, for a quality run of its own:
#   run(command="TEXTGEN_COMMIT=... bash scripts/gpu_session.sh --parts quality --budget 280 \
#       --quality-minutes 3",
#       carry=[".whl"], timeout_s=300))
# It brings back in $OUT (at most 8 files; everything else is inside session.tar.gz):
#   session.log       this script's output: the tables, each step's status and duration
#   gpu-record.json   bench/gpu.py's record (bench/results/gpu/...): Keras vs bare per backend,
#                     shape and precision, the levers, the profiler summaries
#   resume-torch.json, resume-jax.json (resume-jax-det.json)   the preemption check's records
#   quality.txt       bench/quality.py's table, when time allowed a quality run
#   session.tar.gz    every record, log and JSON of the session (refreshed after each step)
# Copy the records into bench/results/ of the checkout to keep them.
#
# The GPU machine (nvidia-h100-x1 / nvidia-h200) has Python 3.12, PyTorch 2.11 (CUDA 13), JAX
# 0.11 with CUDA, h5py, NumPy, Click, matplotlib, absl-py, rich, ml-dtypes, packaging; NO
# TensorFlow, NO Keras, no network. Keras and the two pure needs it lacks travel as wheels in
# .whl/ (git-ignored: /.whl/ in .git/info/exclude), downloaded here before the session with:
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#     keras==3.15.1 namex==0.1.0 optree==0.20.0
#
# (keras 3.15.1 needs absl-py, numpy, rich, namex, h5py, optree, ml-dtypes, packaging: only
# namex and optree are missing there; optree needs typing-extensions, which is there.) 2.9 MB
# in all (2,893,481 bytes); with the tracked tree (6.8 MB), well under the 64 MiB that travel.
# The device tool sends the checkout the session started in: the wheels must lie in ITS .whl/.
#
# Rehearsal on a CPU (no GPU): bash scripts/gpu_session.sh --cpu --wheels DIR --python PY runs
# every step small (bench/gpu.py --cpu --quick, the preemption check with one thread per run, a
# one-minute quality run of a tiny config) in a virtual environment like the GPU machine's (no
# TensorFlow, Keras only from the wheels; DIR holds wheels for that Python).
set -uo pipefail

usage() {
  sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'USAGE'
Usage: scripts/gpu_session.sh [--cpu] [--budget S] [--parts "bench preempt quality"]
                              [--wheels DIR] [--python PY] [--quality-minutes M]
  --budget           seconds for the whole script (default 560; the device tool stops a
                     command at 600)
  --parts            which steps to run, in this order (default: all three)
  --wheels           the wheels to install (default .whl); "none": install nothing
  --python           the Python to use (default python3)
  --quality-minutes  the quality run's training minutes (default: what the budget leaves, at
                     most 5; it runs only when at least 2.5 minutes are left)
  --cpu              rehearsal on a CPU: every step small
USAGE
}

cpu=0
budget=560
parts="bench preempt quality"
wheels=".whl"
py="python3"
qminutes=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu) cpu=1; shift ;;
    --budget) budget="$2"; shift 2 ;;
    --parts) parts="$2"; shift 2 ;;
    --wheels) wheels="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    --quality-minutes) qminutes="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_session.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
OUT="${OUT:-$(mktemp -d /tmp/gpu-session-out.XXXX)}"
mkdir -p "$OUT"
work="$(mktemp -d /tmp/gpu-session.XXXX)"
results="$work/results"  # every record of this session (bench/records.py's folder layout)
mkdir -p "$results"
exec > >(tee -a "$OUT/session.log") 2>&1
start=$SECONDS
declare -A status=()

say() { printf '[%s +%3ds] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - start))" "$*"; }
left() { echo $((budget - (SECONDS - start))); }
wants() { [[ " $parts " == *" $1 "* ]]; }

stamp() {  # records made where git is absent (the device machine gets no .git) name the commit
  [[ -n "${TEXTGEN_COMMIT:-}" ]] || return 0
  "$py" - "$results" "$TEXTGEN_COMMIT" <<'PY'
import json, sys
from pathlib import Path
for path in Path(sys.argv[1]).glob("*/*.json"):
    record = json.loads(path.read_text())
    if not record.get("commit"):
        record["commit"] = sys.argv[2] + " (TEXTGEN_COMMIT: no git on the machine)"
        path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
PY
}

pack() {  # everything so far into $OUT: the archive, and the few files worth reading first
  stamp
  tar -czf "$OUT/session.tar.gz.tmp" -C "$work" --exclude ./site --exclude ./cache . 2>/dev/null &&
    mv "$OUT/session.tar.gz.tmp" "$OUT/session.tar.gz"
  local newest
  newest="$(find "$results/gpu" -name '*.json' 2>/dev/null | sort | tail -1)"  # named by date
  [[ -n "$newest" ]] && cp "$newest" "$OUT/gpu-record.json"
  for b in torch jax jax-det; do
    newest="$(grep -l "\"backend\": \"$b\"" "$results"/gpu-resume/*.json 2>/dev/null | head -1)"
    [[ -n "$newest" ]] && cp "$newest" "$OUT/resume-$b.json"
  done
  [[ -f "$work/quality.txt" ]] && cp "$work/quality.txt" "$OUT/quality.txt"
  return 0
}

step() {  # NAME SECONDS COMMAND...: run bounded, record its status, pack what it made
  local name="$1" limit="$2"
  shift 2
  say "$name: start (at most ${limit} s)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@"
  local rc=$?
  status[$name]="exit $rc in $((SECONDS - t0)) s"
  [[ $rc -eq 124 || $rc -eq 137 ]] && status[$name]+=" (stopped at its limit)"
  say "$name: ${status[$name]}"
  pack
}

say "gpu_session.sh: budget ${budget} s, parts: $parts$([[ $cpu -eq 1 ]] && echo ', CPU rehearsal')"
say "commit $(git rev-parse HEAD 2>/dev/null || echo "${TEXTGEN_COMMIT:-?} (TEXTGEN_COMMIT)"), $($py --version 2>&1)"
timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
  --format=csv 2>&1 | tee "$work/nvidia-smi.txt" || say "no nvidia-smi (no GPU)"

# 1. Keras and its missing needs, from the carried wheels, into a folder of this session.
if [[ "$wheels" != none ]]; then
  shopt -s nullglob
  files=("$wheels"/*.whl)
  shopt -u nullglob
  if [[ ${#files[@]} -eq 0 ]]; then
    say "no wheels in $wheels: Keras must already be importable"
  else
    step wheels 120 "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$work/site" "${files[@]}"
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export XLA_PYTHON_CLIENT_PREALLOCATE=false TEXTGEN_CACHE_DIR="$work/cache"
KERAS_BACKEND=torch timeout 120 "$py" - <<'PY' 2>&1 | tee "$work/versions.txt"
import importlib
for name in ("keras", "torch", "jax", "jaxlib", "numpy", "h5py", "click", "optree", "namex"):
    try:
        module = importlib.import_module(name)
        print(f"{name} {getattr(module, '__version__', '?')}")
    except Exception as e:  # noqa: BLE001
        print(f"{name}: {type(e).__name__}: {e}")
try:
    import torch
    print("torch.cuda", torch.cuda.is_available(), torch.version.cuda,
          torch.backends.cudnn.version() if torch.cuda.is_available() else None)
except Exception as e:  # noqa: BLE001
    print("torch.cuda:", e)
PY

# 2. bench/gpu.py: each backend in a process of its own, bounded (its own budget per backend,
#    then the grace, then this step's timeout). The preemption check keeps 200 s.
if wants bench; then
  backends=(torch jax)
  if [[ $cpu -eq 1 ]]; then
    bench_args=(--cpu --quick --threads 1 --budget 90 --grace 40)
  else
    keep=0
    wants preempt && keep=200
    per=$(( ($(left) - keep - 40) / ${#backends[@]} - 25 ))
    per=$(( per > 150 ? 150 : per ))
    bench_args=(--budget "$per" --grace 25)
  fi
  step bench $(( $(left) - 10 )) "$py" bench/gpu.py --backends "${backends[@]}" \
    "${bench_args[@]}" --out "$work/bench" --results "$results"
fi

# 3. The preemption check: train.sh, SIGTERM mid-run, resume; against uninterrupted runs.
if wants preempt; then
  if [[ $cpu -eq 1 ]]; then
    pre_args=(--timeout 600 --threads 1)
  else
    pre_args=(--timeout 90)
  fi
  step preempt $(( $(left) - 5 )) bash scripts/gpu_preempt.sh --backends "torch jax" \
    --python "$py" --out "$work/preempt" --results "$results" "${pre_args[@]}"
  # JAX's GPU kernels may differ from run to run (atomics): if the two uninterrupted runs
  # differed, try once more with XLA's deterministic kernels, time allowing
  if grep -q '"identical": false' "$work/preempt/preempt-jax.json" 2>/dev/null && \
     ! grep -A3 '"full_vs_full"' "$work/preempt/preempt-jax.json" | grep -q '"unequal": 0' && \
     [[ $(left) -gt 150 ]]; then
    step preempt-det $(( $(left) - 5 )) bash scripts/gpu_preempt.sh --backends jax-det \
      --python "$py" --out "$work/preempt" --results "$results" "${pre_args[@]}"
  fi
fi

# 4. Quality, time allowing: configs/gpu.toml on tinyshakespeare with PyTorch.
if wants quality; then
  room=$(( $(left) - 90 ))  # start-up, the Kneser-Ney baseline and the evaluation
  if [[ -n "$qminutes" ]]; then
    minutes="$qminutes"
  else
    minutes=$(awk -v s="$room" 'BEGIN { m = s / 60; if (m > 5) m = 5; printf "%.1f", m }')
  fi
  config=configs/gpu.toml
  if [[ $cpu -eq 1 ]]; then
    config="$work/tiny.toml"
    printf '[window]\nwindow = 32\nstep = 16\nbatch_size = 16\n[model]\nunits = 32\n%s\n' \
      "[train]
epochs = 2
steps_per_epoch = 4" >"$config"
    minutes=0.5
  fi
  if [[ $cpu -eq 0 && -z "$qminutes" && $room -lt 60 ]]; then
    say "quality: skipped (only $(left) s left; run it in a call of its own:"
    say "  bash scripts/gpu_session.sh --parts quality --quality-minutes 3)"
    status[quality]="skipped: no time left"
  else
    step quality $(( $(left) > 60 ? $(left) : 60 )) bash -c \
      "set -o pipefail; '$py' bench/quality.py --minutes $minutes --config '$config' \
       --backend torch | tee '$work/quality.txt'"
    cp bench/results/quality-*"$(basename "$config" .toml)"-*min.png "$work/" 2>/dev/null
    pack
  fi
fi

say "summary:"
for name in wheels bench preempt preempt-det quality; do
  [[ -n "${status[$name]:-}" ]] && say "  $name: ${status[$name]}"
done
pack
say "done in $((SECONDS - start)) s; \$OUT holds: $(find "$OUT" -maxdepth 1 -type f -printf '%f ')"
