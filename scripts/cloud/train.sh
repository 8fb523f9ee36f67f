#!/usr/bin/env bash
# Train on a (possibly preemptible) GPU instance until the run is complete: textgen train in a
# loop that resumes after preemption or a crash, logging to the run folder and optionally
# syncing the run folder to a destination of your choice.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: scripts/cloud/train.sh [--dry-run] [--help] CORPUS RUN [extra textgen train args...]

Runs `textgen train CORPUS --out RUN ...` and, whenever it stops early, runs it again with
--resume, until training completes. Output is appended to RUN/train.log.

Exit codes of textgen train and what this script does:
  0              training complete: final sync, exit 0
  143, 130, 129  stopped by SIGTERM / SIGINT / SIGHUP after saving (preemption), or at once
                 by a second signal, keeping the last checkpoint: resume
  137            killed (SIGKILL, out of memory): resume from the last checkpoint
  1, 2           a problem with the input or the flags: stop and report it
  3              the loss diverged: stop (resuming would diverge again)
  4              the disk is full: stop (what was saved is intact; free space, run this again)
  anything else  a crash: resume, at most TEXTGEN_MAX_RETRIES times in a row

Environment:
  TEXTGEN              the textgen command (default: .venv/bin/textgen if present, else textgen)
  TEXTGEN_SYNC_DEST    if set, the run folder is copied there after every attempt and every
                       TEXTGEN_SYNC_EVERY seconds while training (default 600)
  TEXTGEN_SYNC_CMD     the copy command, given RUN/ and the destination (default: rsync -a)
  TEXTGEN_MAX_RETRIES  crashes in a row before giving up (default 5)
  TEXTGEN_BACKEND      the Keras backend, passed as --backend unless the arguments give one
                       (default: what scripts/cloud/setup.sh wrote to .venv/textgen-backend)

Example:
  TEXTGEN_SYNC_DEST=me@laptop:runs/ scripts/cloud/train.sh corpora/tinyshakespeare.txt \
      checkpoints/shakespeare --config configs/best-cpu.toml --save-every 500
USAGE
}

dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
if [[ $# -lt 2 ]]; then
  echo "train.sh: need CORPUS and RUN (see --help)" >&2
  exit 2
fi
corpus="$1"
run_dir="$2"
shift 2

# shellcheck source=scripts/cloud/common.sh
source "$(dirname "$0")/common.sh"
read -r -a sync_cmd <<<"${TEXTGEN_SYNC_CMD:-rsync -a}"
sync_dest="${TEXTGEN_SYNC_DEST:-}"
sync_every="${TEXTGEN_SYNC_EVERY:-600}"
max_retries="${TEXTGEN_MAX_RETRIES:-5}"
backend="${TEXTGEN_BACKEND:-}"
if [[ -z "$backend" && -f .venv/textgen-backend ]]; then
  backend="$(<.venv/textgen-backend)"
fi

say() { printf 'train.sh: %s\n' "$*" >&2; }

sync_run() {
  [[ -n "$sync_dest" ]] || return 0
  if [[ $dry_run -eq 1 ]]; then
    printf 'would sync:'; printf ' %q' "${sync_cmd[@]}" "$run_dir/" "$sync_dest"; printf '\n'
    return 0
  fi
  "${sync_cmd[@]}" "$run_dir/" "$sync_dest" || say "sync to $sync_dest failed (will retry)"
}

attempt_cmd() {
  local cmd=("${textgen[@]}" train "$corpus" --out "$run_dir")
  if [[ -f "$run_dir/config.json" ]]; then
    cmd+=(--resume)
  fi
  cmd+=("$@")
  if [[ -n "$backend" && " $* " != *" --backend "* ]]; then
    cmd+=(--backend "$backend")
  fi
  printf '%s\0' "${cmd[@]}"
}

if [[ $dry_run -eq 1 ]]; then
  mapfile -d '' first < <(attempt_cmd "$@")
  printf 'would run:'; printf ' %q' "${first[@]}"; printf ' >> %q 2>&1\n' "$run_dir/train.log"
  echo "then, on exit 143/130/129/137 or a crash, again with --resume (at most $max_retries crashes in a row)"
  sync_run
  exit 0
fi

crashes=0
while true; do
  mkdir -p "$run_dir"
  mapfile -d '' cmd < <(attempt_cmd "$@")
  say "running: ${cmd[*]}"
  sync_pid=""
  if [[ -n "$sync_dest" ]]; then
    ( while sleep "$sync_every"; do sync_run; done ) &
    sync_pid=$!
  fi
  set +e
  "${cmd[@]}" >>"$run_dir/train.log" 2>&1
  rc=$?
  set -e
  if [[ -n "$sync_pid" ]]; then
    kill "$sync_pid" 2>/dev/null || true
    wait "$sync_pid" 2>/dev/null || true
  fi
  sync_run
  case "$rc" in
    0) say "training complete: $run_dir"; exit 0 ;;
    143|130|129|137) say "stopped (exit $rc), resuming"; crashes=0 ;;
    1|2) say "textgen train failed (exit $rc); see $run_dir/train.log"; exit "$rc" ;;
    3) say "loss diverged (exit 3); see $run_dir/train.log"; exit 3 ;;
    4) say "disk full (exit 4): free space, then run this again; see $run_dir/train.log"; exit 4 ;;
    *)
      crashes=$((crashes + 1))
      if [[ $crashes -ge $max_retries ]]; then
        say "crashed $crashes times in a row (last exit $rc); giving up"
        exit "$rc"
      fi
      say "crashed (exit $rc), resuming (attempt $((crashes + 1)) of $max_retries)"
      sleep 5
      ;;
  esac
done
