"""The exported web page in real headless Chromium: characters per second and page size.

    python bench/export_speed.py                   # trains a throwaway 2 x LSTM 128 run (~30 s)
    python bench/export_speed.py --run checkpoints/latest --chars 50000

Exports RUN with ``textgen export``, then loads the page with ``?debug=bench`` (the page's own
generation loop, batch 1, run synchronously and timed with performance.now(); the interactive
page runs the same loop in 25 ms chunks) at temperature 1 and 0, several times each, on the
WebAssembly SIMD kernel and on the plain JavaScript fallback (``engine=js``, a quarter of the
characters), and prints the medians beside the NumPy sampler's batch-1 speed, and the page's
size beside weights.h5.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import records
from common import make_run

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def page_rate(page: Path, browser: str, chars: int, temperature: float, prime: str,
              engine: str) -> float:
    from textgen.export import dump_dom, page_url, read_element

    url = page_url(page, prime=prime, chars=chars, temperature=temperature, seed=1,
                   debug="bench", engine=engine)
    _, attrs = read_element(dump_dom(url, browser, budget_ms=0, timeout=600), "output")
    if attrs.get("data-done") != "1" or attrs.get("data-engine") != engine:
        raise RuntimeError(f"the page did not finish on {engine}: {attrs}")
    return int(attrs["data-tokens"]) / (float(attrs["data-elapsed-ms"]) / 1000)


def numpy_rate(run: Path, chars: int, prime: str) -> float:
    import textgen
    from textgen.sampling import SampleRequest

    gen = textgen.load(run)
    t = time.perf_counter()
    gen.sample(SampleRequest(prime=prime, chars=chars, seed=1))
    return chars / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="run folder [a throwaway default-size run]")
    parser.add_argument("--chars", type=int, default=20_000, help="characters per page load")
    parser.add_argument("--repeats", type=int, default=3, help="page loads per temperature")
    args = parser.parse_args()

    from textgen.export import export_run, find_browser
    from textgen.sample import load

    browser = find_browser()
    if browser is None:
        sys.exit("no Chromium found: apt-get install chromium")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run = args.run or make_run(tmp)
        page = export_run(run, tmp / "page.html")
        gen = load(run)
        cfg = gen.run.config.model
        prime = gen.default_prime()
        rates = {(engine, t): statistics.median(
                     page_rate(page, browser, args.chars if engine == "wasm" else args.chars // 4,
                               t, prime, engine) for _ in range(args.repeats))
                 for engine in ("wasm", "js") for t in (1.0, 0.0)}
        np_rate = numpy_rate(run, min(args.chars, 5000), prime)
        page_size = page.stat().st_size
        weights_size = (run / "weights.h5").stat().st_size
        params = sum(int(v.size) for v in [gen.network.embedding, gen.network.dense_k,
                                            gen.network.dense_b]
                     + [w for layer in gen.network.layers for w in layer])
        version = subprocess.run([browser, "--version"], capture_output=True, text=True).stdout
    unit = "chars/s" if gen.vocab.level == "char" else "words/s"
    print(f"Model: {cfg.layers} x {cfg.cell.upper()} {cfg.units}, vocabulary {len(gen.vocab)}, "
          f"{params:,} parameters; {args.chars:,} tokens per load, median of {args.repeats}; "
          f"{version.strip()}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs\n")
    print(f"| sampler | {unit} (batch 1) |")
    print("|---|---:|")
    for (engine, t), rate in rates.items():
        name = "WebAssembly SIMD" if engine == "wasm" else "plain JavaScript fallback"
        print(f"| web page, {name}, temperature {t:g} | {rate:,.0f} |")
    print(f"| NumPy (`textgen sample`), temperature 1.0 | {np_rate:,.0f} |")
    print()
    print("| file | bytes |")
    print("|---|---:|")
    print(f"| weights.h5 | {weights_size:,} |")
    print(f"| page.html (float32 weights, base64) | {page_size:,} "
          f"({page_size / weights_size:.2f} x weights.h5) |")
    records.write_record(
        "export_speed",
        {"model": f"{cfg.layers} x {cfg.cell.upper()} {cfg.units}", "vocabulary": len(gen.vocab),
         "parameters": params, "unit": unit, "tokens_per_load": args.chars,
         "repeats": args.repeats, "browser": version.strip(),
         "run": str(args.run) if args.run else None},
        {"rows": [{"engine": engine, "temperature": t, "rate": rate}
                  for (engine, t), rate in rates.items()]
         + [{"engine": "numpy", "temperature": 1.0, "rate": np_rate}],
         "weights_bytes": weights_size, "page_bytes": page_size})


if __name__ == "__main__":
    main()
