#!/usr/bin/env bash
# The preemption check (issue 33, item 5): scripts/cloud/train.sh on a small config, its
# textgen process sent SIGTERM in the middle (train.sh then resumes it, as after a preemption),
# against two uninterrupted runs of the same command; per backend, the final checkpoints
# (last.h5: weights, optimizer state, RNG state, position) and best weights (weights.h5) must be
# bit-identical. The second uninterrupted run tells run-to-run nondeterminism (of the device's
# kernels) from a resume that lost something. The three runs of a backend train at the same
# time (a small model: the GPU has room); each is bounded by --timeout.
set -uo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/gpu_preempt.sh [--backends "torch jax"] [--out DIR] [--timeout S] [--python PY]
                              [--threads N] [--results DIR]

Writes DIR/preempt-BACKEND.json (the comparison) and DIR/preempt-BACKEND-*.log (each run's
train.log) and one record under bench/results/gpu-resume/ per backend; prints one line per
backend. Exit 0 when every backend's resumed run ended bit-identical to the uninterrupted one.
  --backends  Keras backends to check (default "torch jax"); "jax-det" is JAX with XLA's
              deterministic GPU kernels (XLA_FLAGS=--xla_gpu_deterministic_ops=true)
  --out       where the results and logs go (default: a new temporary folder)
  --timeout   seconds allowed to each training run, resumes included (default 240)
  --python    the Python that runs textgen (default: python3); textgen must import there
  --results   the records' folder (default bench/results)
  --threads   CPU threads per run (OMP_NUM_THREADS; default: the frameworks' own), for a
              rehearsal on a small shared CPU, where three runs at once compete for cores
USAGE
}

backends="torch jax"
out=""
limit=240
py="${PYTHON:-python3}"
threads=""
results=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --backends) backends="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --timeout) limit="$2"; shift 2 ;;
    --python) py="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --results) results="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_preempt.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${out:-$(mktemp -d)}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
say() { printf '[%s] gpu_preempt.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# A small corpus (the first 30,000 characters of tinyshakespeare: validation stays quick) and a
# small model: 3 epochs of 6 steps, a checkpoint every 2 steps; the SIGTERM comes after the
# first checkpoint, so the run stops mid-epoch and resumes there.
head -c 30000 "$root/corpora/tinyshakespeare.txt" >"$work/corpus.txt"
flags=(--units 32 --layers 2 --embedding-dim 16 --window 16 --step 8 --batch-size 16
       --epochs 3 --steps-per-epoch 6 --save-every 2 --optimizer adam --lr 0.003
       --dropout 0.2 --seed 0 --sample-every 0)
if [[ -n "$threads" ]]; then
  export OMP_NUM_THREADS="$threads" TF_NUM_INTRAOP_THREADS="$threads" TF_NUM_INTEROP_THREADS=1
  xla="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=$threads"
  export XLA_FLAGS="${XLA_FLAGS:-} $xla"
fi
export TEXTGEN="$py -m textgen" TEXTGEN_MAX_RETRIES=2 PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=2

train() {  # CHECK RUN: scripts/cloud/train.sh for check CHECK (a backend, or jax-det)
  local extra=()
  [[ "$1" == *-det ]] && extra=(env "XLA_FLAGS=${XLA_FLAGS:-} --xla_gpu_deterministic_ops=true")
  timeout "$limit" "${extra[@]}" bash "$root/scripts/cloud/train.sh" "$work/corpus.txt" "$2" \
    "${flags[@]}" --backend "${1%-det}"
}

run_full() {  # CHECK NAME: an uninterrupted run
  train "$1" "$work/$1-$2" 2>>"$work/$1-$2.sh.log"
}

run_cut() {  # BACKEND: the same run, its textgen process sent SIGTERM after its first checkpoint
  local run="$work/$1-cut" waited=0
  train "$1" "$run" 2>>"$run.sh.log" &
  local loop=$!
  while [[ ! -f "$run/last.h5" && $waited -lt $((limit * 10)) ]] && kill -0 "$loop" 2>/dev/null; do
    sleep 0.1; waited=$((waited + 1))
  done
  if [[ -f "$run/last.h5" && -s "$run/.lock" ]]; then
    local pid
    pid="$(tr -dc 0-9 <"$run/.lock")"
    say "$1: SIGTERM to textgen (pid $pid) after its first checkpoint"
    kill -TERM "$pid" 2>/dev/null || say "$1: the process had already ended"
  else
    say "$1: no checkpoint appeared; nothing to interrupt"
  fi
  wait "$loop"
}

compare() {  # BACKEND: JSON comparison of the cut run with the two full ones; exit 0 if identical
  "$py" - "$work" "$1" "$out/preempt-$1.json" <<'PY'
import json, sys
from pathlib import Path
import numpy as np
from textgen import runs

work, backend, dest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def state(run):
    named, extra, attrs = runs.read_weights(run / runs.LAST_WEIGHTS)
    best = runs.read_weights(run / runs.BEST_WEIGHTS)[0]
    return {**{f"last/{k}": v for k, v in {**named, **extra}.items()},
            **{f"best/{k}": v for k, v in best.items()}}, attrs

def diff(a, b):
    keys = sorted(set(a) | set(b))
    missing = [k for k in keys if k not in a or k not in b]
    unequal = [k for k in keys if k in a and k in b and not np.array_equal(a[k], b[k])]
    worst = max((float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in unequal
                 if a[k].shape == b[k].shape), default=0.0)
    return {"arrays": len(keys), "missing": missing, "unequal": len(unequal),
            "first_unequal": unequal[:5], "max_abs_diff": worst}

result = {"backend": backend}
try:
    full, attrs = state(work / f"{backend}-full")
    again, _ = state(work / f"{backend}-again")
    cut, cut_attrs = state(work / f"{backend}-cut")
    log = (work / f"{backend}-cut" / runs.SCRIPT_LOG).read_text(errors="replace")
    sh = (work / f"{backend}-cut.sh.log").read_text(errors="replace")
    result.update({
        "position": {"full": [attrs.get("epoch"), attrs.get("step")],
                     "cut": [cut_attrs.get("epoch"), cut_attrs.get("step")]},
        "interrupted": "stopped by SIGTERM" in log, "resumed": "resuming" in sh,
        "cut_vs_full": diff(full, cut), "full_vs_full": diff(full, again)})
    result["identical"] = (result["interrupted"] and result["resumed"]
                           and result["cut_vs_full"]["unequal"] == 0
                           and not result["cut_vs_full"]["missing"])
except Exception as e:  # a run that failed: say how, keep going
    result.update({"identical": False, "error": f"{type(e).__name__}: {e}"})
dest.write_text(json.dumps(result, indent=1))
print(json.dumps({k: result.get(k) for k in ("backend", "identical", "interrupted", "resumed",
                                              "error") if k in result}))
sys.exit(0 if result["identical"] else 1)
PY
}

record() {  # the comparisons as one record per backend (bench/records.py)
  "$py" - "$out" "$results" "$@" <<'PY'
import json, sys
from pathlib import Path
sys.path.insert(0, "bench")
import records
out, results, backends = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
for b in backends:
    path = out / f"preempt-{b}.json"
    if path.exists():
        records.write_record("gpu-resume", {"backend": b, "script": "scripts/gpu_preempt.sh",
                                            "runs": "uninterrupted x2, SIGTERM + resume x1"},
                             json.loads(path.read_text()),
                             command="bash scripts/gpu_preempt.sh",
                             results=Path(results) if results else None)
PY
}

read -r -a names <<<"$backends"
status=0
for b in "${names[@]}"; do
  say "$b: three runs at once (uninterrupted x2, interrupted + resumed)"
  start=$SECONDS
  run_full "$b" full & p1=$!
  run_full "$b" again & p2=$!
  run_cut "$b" & p3=$!
  wait $p1 $p2 $p3
  for name in full again cut; do
    cp "$work/$b-$name/train.log" "$out/preempt-$b-$name.log" 2>/dev/null
    cat "$work/$b-$name.sh.log" >>"$out/preempt-$b-$name.log" 2>/dev/null
  done
  compare "$b" || status=1
  say "$b: done in $((SECONDS - start)) s"
done
(cd "$root" && record "${names[@]}") || say "could not write the records"
exit $status
