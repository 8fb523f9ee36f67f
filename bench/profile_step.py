"""Where a training step's time goes: PyTorch's profiler and XLA's compiled program, summarised.

    python bench/profile_step.py --backend torch             # default config, this machine
    python bench/profile_step.py --backend jax --config gpu --json profile.json

For one textgen Keras step (``fit`` on batches in memory, as textgen trains) and one bare step
(bench/bare_kernel.py) of the same shape:

* PyTorch: ``torch.profiler`` over a few steps after a warm-up: wall time, kernel (device) time
  and host (CPU) time per step, the top operators by self time, and per step the number of
  kernel launches, memory copies (cudaMemcpy*, host<->device), synchronisations
  (cuda*Synchronize) and matrix products (``aten::mm``/``addmm``: a per-timestep Python loop
  shows window x layers of them, the fused kernel none). ``cudnn_rnn`` says whether cuDNN's
  RNN ran (``aten::_cudnn_rnn`` in the trace): the check for keras-team/keras PR #22874, where
  Keras's PyTorch LSTM silently fell back to a per-timestep loop on a GPU.
* JAX: the compiled XLA program of the step (the same function Keras jits): instruction,
  fusion, while-loop, convert (cast) and copy counts, custom calls (``cudnn_rnn``: cuDNN's RNN
  among them), XLA's FLOP and byte estimates (they count a while loop's body once, not once
  per step of the sequence); and host dispatch time against wall time per
  step (a step whose Python call returns long before the device finishes is device-bound).

Prints a table; ``--json`` writes the summaries; ``--record`` writes a bench/results record.
bench/gpu.py calls ``profile_torch``/``profile_jax`` for its profiler section.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP = 12  # operators listed per profile
CUDNN_RNN_OPS = ("aten::_cudnn_rnn", "aten::_cudnn_rnn_backward")
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm")


def _self_device_us(event) -> float:
    for name in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def _count(averages, test) -> int:
    return sum(e.count for e in averages if test(e.key))


def profile_torch(run, steps: int, cuda: bool) -> dict:
    """``run(steps)`` runs and synchronises ``steps`` training steps (already warmed up);
    profiled with torch.profiler. Times in ms per step."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        run(steps)
        wall = time.perf_counter() - start
    averages = prof.key_averages()
    # device time: the GPU's own events (kernels, copies), each counted once
    device_us = sum(e.time_range.elapsed_us() for e in prof.events()
                    if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    host_us = sum(float(e.self_cpu_time_total) for e in averages)
    ranked = sorted(averages, key=lambda e: (_self_device_us(e) if cuda else 0.0,
                                             float(e.self_cpu_time_total)), reverse=True)
    top = [{"op": e.key[:90], "calls": round(e.count / steps, 2),
            "self_device_ms": round(_self_device_us(e) / 1e3 / steps, 4),
            "self_cpu_ms": round(float(e.self_cpu_time_total) / 1e3 / steps, 4)}
           for e in ranked[:TOP]]
    per = lambda n: round(n / steps, 2)  # noqa: E731
    return {
        "profiler": f"torch.profiler (torch {torch.__version__})", "steps": steps,
        "wall_ms": round(wall * 1e3 / steps, 3),
        "device_ms": round(device_us / 1e3 / steps, 3) if cuda else None,
        "host_ms": round(host_us / 1e3 / steps, 3),
        "cudnn_rnn": any(e.key in CUDNN_RNN_OPS for e in averages),
        "cudnn_rnn_calls": per(_count(averages, lambda k: k == "aten::_cudnn_rnn")),
        "lstm_calls": per(_count(averages, lambda k: k == "aten::lstm")),
        "matmuls": per(_count(averages, lambda k: k in MATMUL_OPS)),
        "launches": per(_count(averages, lambda k: k in ("cudaLaunchKernel", "cuLaunchKernel",
                                                         "cudaLaunchKernelExC"))),
        "memcpy": per(_count(averages, lambda k: "memcpy" in k.lower())),
        "syncs": per(_count(averages, lambda k: k.startswith("cuda") and "Synchronize" in k)),
        "item_calls": per(_count(averages, lambda k: k in ("aten::item",
                                                           "aten::_local_scalar_dense"))),
        "top": top,
    }


def xla_summary(jitted, *args) -> dict:
    """Counts over the optimised HLO that ``jitted`` (a jax.jit function) compiles to for
    ``args``, and XLA's cost estimate."""
    compiled = jitted.lower(*args).compile()
    text = compiled.as_text()
    targets = re.findall(r'custom_call_target="([^"]+)"', text)
    try:
        costs = compiled.cost_analysis()
        costs = costs[0] if isinstance(costs, list) else costs
    except Exception:  # noqa: BLE001 - an estimate, where the backend gives one
        costs = {}
    costs = costs or {}
    return {
        "instructions": len(re.findall(r"^\s*\S+ = ", text, re.M)),
        "fusions": len(re.findall(r"\bfusion\(", text)),
        "while_loops": len(re.findall(r"\bwhile\(", text)),
        "converts": len(re.findall(r"\bconvert\(", text)),
        "copies": len(re.findall(r"\bcopy\(", text)),
        "dots": len(re.findall(r"\bdot\(", text)),
        "custom_calls": sorted(set(targets)),
        "cudnn_rnn": any("rnn" in t.lower() for t in targets),
        "gflop": round(float(costs.get("flops", 0.0)) / 1e9, 3),
        "mbytes_accessed": round(float(costs.get("bytes accessed", 0.0)) / 1e6, 2),
    }


def dispatch_times(call, sync, steps: int) -> dict:
    """Per step: how long ``call()`` takes to return (host: tracing cache, argument handling,
    dispatch) and how long until ``sync(result)`` (wall)."""
    dispatch = []
    start = time.perf_counter()
    result = None
    for _ in range(steps):
        t = time.perf_counter()
        result = call()
        dispatch.append(time.perf_counter() - t)
    sync(result)
    wall = time.perf_counter() - start
    return {"steps": steps, "dispatch_ms": round(sum(dispatch) * 1e3 / steps, 3),
            "wall_ms": round(wall * 1e3 / steps, 3)}


def profile_jax(jitted, args, call, sync, steps: int) -> dict:
    import jax

    summary = {"profiler": f"XLA compiled program (jax {jax.__version__})",
               **xla_summary(jitted, *args)}
    summary.update(dispatch_times(call, sync, steps))
    return summary


def print_table(profiles: dict) -> None:
    """``profiles``: {label: summary}; one Markdown table for the torch summaries, one for the
    XLA ones, then each torch summary's top operators."""
    torch_rows = {k: v for k, v in profiles.items() if v.get("profiler", "").startswith("torch")}
    xla_rows = {k: v for k, v in profiles.items() if v.get("profiler", "").startswith("XLA")}
    if torch_rows:
        print("| step | wall ms | device ms | host ms | cuDNN RNN | matmuls | launches | "
              "memcpy | syncs | .item() |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|")
        for label, s in torch_rows.items():
            device = "-" if s["device_ms"] is None else f"{s['device_ms']:.2f}"
            print(f"| {label} | {s['wall_ms']:.2f} | {device} | {s['host_ms']:.2f} | "
                  f"{'yes' if s['cudnn_rnn'] else 'no'} | {s['matmuls']} | {s['launches']} | "
                  f"{s['memcpy']} | {s['syncs']} | {s['item_calls']} |")
    if xla_rows:
        print("\n| step | wall ms | dispatch ms | instructions | fusions | while | converts | "
              "cuDNN RNN | GFLOP |")
        print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
        for label, s in xla_rows.items():
            print(f"| {label} | {s['wall_ms']:.2f} | {s['dispatch_ms']:.2f} | "
                  f"{s['instructions']} | {s['fusions']} | {s['while_loops']} | "
                  f"{s['converts']} | {'yes' if s['cudnn_rnn'] else 'no'} | {s['gflop']} |")
    for label, s in torch_rows.items():
        print(f"\n{label}: top operators (per step)")
        for op in s["top"][:8]:
            print(f"  {op['op'][:60]:60s} calls {op['calls']:>7} device {op['self_device_ms']:8.3f}"
                  f" ms  cpu {op['self_cpu_ms']:8.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("torch", "jax"), required=True)
    parser.add_argument("--config", default="default", help="default, best-cpu or gpu")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the summaries here")
    parser.add_argument("--record", action="store_true",
                        help="also write a record under bench/results/gpu-profile/")
    args = parser.parse_args()
    import gpu  # bench/gpu.py, beside this script: builds the steps as it times them

    profiles = gpu.profile_section(args.backend, args.config, args.precision, args.steps)
    print_table(profiles)
    if args.json:
        args.json.write_text(json.dumps(profiles, indent=1))
    if args.record:
        import records

        records.write_record("gpu-profile", {"backend": args.backend, "config": args.config,
                                             "precision": args.precision,
                                             "steps": args.steps}, profiles)


if __name__ == "__main__":
    main()
