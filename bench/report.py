"""Render every benchmark table in the docs, and the README's headline table, from the records.

    python bench/report.py            # rewrite each table between its markers
    python bench/report.py --check    # exit 1, naming each table that differs from its rendering

A table lives in README.md or in a page under docs/ between two marker comments::

    <!-- table:NAME -->
    (rendered here: never edit by hand)
    <!-- /table -->

NAME is one of ``TABLES`` below; each renders from the JSON records under bench/results/
(bench/records.py). Every row says when its figure was taken, on which host (short), and
whether it was measured by a bench script, carried over from the README of an earlier commit,
or cited from elsewhere. tests/test_report.py runs the check, so a figure typed into a table
fails the suite.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import records

ROOT = records.ROOT
MARKER = re.compile(r"(<!-- table:([a-z0-9-]+) -->\n)(.*?)(<!-- /table -->)", re.S)
Record = dict[str, Any]


# --- helpers ----------------------------------------------------------------------------------

def day(r: Record) -> str:
    return r["date"][:10]


def host_label(host: dict) -> str:
    """A short name for the host: "1 x H200", "2-core AMD EPYC, AVX-512", "2-core x86-64"."""
    if host.get("gpu"):
        return "1 x " + re.sub(r"^NVIDIA\s+", "", host["gpu"])
    cpu = host.get("cpu") or ""
    cpu = re.sub(r"\((R|TM|tm)\)|\bCPU\b|\bProcessor\b|@.*$|\d+-Core", "", cpu)
    cpu = " ".join(cpu.split())
    if not cpu or "not recorded" in cpu or cpu in ("x86_64", "x86_64 (model not recorded)"):
        cpu = "x86-64"
        isa = ""
    else:
        flags = host.get("isa") or []
        isa = ", AVX-512" if "avx512f" in flags else ", AVX2" if "avx2" in flags else ""
    cores = host.get("cores")
    return f"{cores}-core {cpu}{isa}" if cores else cpu


def stamp(r: Record) -> str:
    """The record column: date, host, status."""
    return f"{day(r)} · {host_label(r['host'])} · {r['status']}"


def num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def table(head: list[str], rows: Iterable[list[Any]], align: str | None = None) -> str:
    """A Markdown table; ``align`` one letter per column (l or r), left by default."""
    align = align or "l" * len(head)
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def of(recs: list[Record], bench: str) -> list[Record]:
    return [r for r in recs if r["bench"] == bench]


def latest(recs: list[Record], bench: str, keep: Callable[[Record], bool] = lambda r: True
           ) -> Record | None:
    found = [r for r in of(recs, bench) if keep(r)]
    return found[-1] if found else None  # load_all sorts oldest first


def none_yet(what: str) -> str:
    return f"_No record of {what} yet: run the bench script named on this page._"


# --- quality ----------------------------------------------------------------------------------

def quality_rows(recs: list[Record]) -> list[tuple[Record, dict]]:
    """(record, row) for every quality row with a validation loss."""
    return [(r, row) for r in of(recs, "quality") for row in r["figures"].get("rows", [])
            if row.get("val_nats_per_char") is not None]


def current_quality(recs: list[Record], corpus: str) -> list[dict]:
    """Per (config, budget, device) the latest day's runs of the bundled config unchanged,
    seeds pooled: the current figure. Sorted GPU last, then by budget."""
    groups: dict[tuple, list[tuple[Record, dict]]] = {}
    for r, row in quality_rows(recs):
        if r["config"].get("corpus") != corpus or row.get("change"):
            continue
        key = (row["config"], row["minutes"], host_label(r["host"]) if r["host"].get("gpu")
               else "cpu")
        groups.setdefault(key, []).append((r, row))
    out = []
    for key, runs in groups.items():
        last = max(day(r) for r, _ in runs)
        runs = [(r, row) for r, row in runs if day(r) == last]
        vals = [row["val_nats_per_char"] for _, row in runs]
        out.append({"config": key[0], "minutes": key[1], "gpu": key[2] != "cpu",
                    "record": runs[-1][0], "row": runs[-1][1], "mean": statistics.mean(vals),
                    "low": min(vals), "high": max(vals), "n": len(vals),
                    "steps": [row["steps"] for _, row in runs if row.get("steps")]})
    return sorted(out, key=lambda g: (g["gpu"], g["minutes"], g["config"]))


def loss_cell(g: dict) -> str:
    if g["n"] == 1:
        return f"{g['mean']:.4f}"
    return f"{g['mean']:.4f} (mean of {g['n']} seeds, {g['low']:.4f}-{g['high']:.4f})"


def steps_cell(steps: list[int]) -> str:
    if not steps:
        return "-"
    lo, hi = min(steps), max(steps)
    return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"


def render_quality(recs: list[Record], corpus: str = "tinyshakespeare") -> str:
    groups = current_quality(recs, corpus)
    if not groups:
        return none_yet(f"quality on {corpus}")
    rows = []
    for g in groups:
        kn = g["row"]["kn_6gram"]
        rows.append([f"{g['minutes']:g} min", f"`{g['config']}`", g["row"]["model"],
                     loss_cell(g), f"{kn:.4f}", f"{100 * (g['mean'] / kn - 1):+.1f}%",
                     steps_cell(g["steps"]), stamp(g["record"])])
    nano = latest(recs, "nanogpt") if corpus == "tinyshakespeare" else None
    if nano is not None:  # for scale: a small GPT on a datacenter GPU, on the same split
        kn, val = groups[0]["row"]["kn_6gram"], nano["figures"]["val_loss_nats_per_char"]
        rows.append([f"about {nano['config']['minutes']:g} min", "nanoGPT (cited)",
                     nano["config"]["model"], f"{val:.4f}", f"{kn:.4f}",
                     f"{100 * (val / kn - 1):+.1f}%", "-", stamp(nano)])
    return table(["budget", "config", "model trained", "val nats/char", "6-gram KN", "vs KN",
                  "steps", "record"], rows, "llllrrrl")


def render_quality_pymanual(recs: list[Record]) -> str:
    return render_quality(recs, "pymanual")


def render_quality_history(recs: list[Record]) -> str:
    """Every run of a bundled config, unchanged as it was then, on tinyshakespeare."""
    rows = [[f"{row['minutes']:g} min", f"`{row['config']}`", row["model"], row["seed"],
             f"{row['val_nats_per_char']:.4f}", num(row.get("steps")), stamp(r)]
            for r, row in quality_rows(recs)
            if r["config"].get("corpus") == "tinyshakespeare" and not row.get("change")]
    rows.sort(key=lambda x: (float(x[0].split()[0]), x[1], x[-1]))
    return table(["budget", "config", "model trained (the config then)", "seed",
                  "val nats/char", "steps", "record"], rows, "llllrrl")


def render_quality_screen(recs: list[Record]) -> str:
    """The latest day's 5-minute runs of best-cpu.toml and copies of it with one change, one
    row per change, a column per seed."""
    runs = [(r, row) for r, row in quality_rows(recs) if row["minutes"] == 5
            and row["config"] == "best-cpu.toml"
            and r["config"].get("corpus") == "tinyshakespeare" and not r["host"].get("gpu")]
    if not runs:
        return none_yet("the 5-minute screen")
    last = max(day(r) for r, _ in runs)
    groups: dict[str, dict] = {}
    for r, row in runs:
        if day(r) == last:
            g = groups.setdefault(row.get("change") or "none",
                                  {"model": row["model"], "seeds": {}, "steps": [], "r": r})
            g["seeds"][row["seed"]] = row["val_nats_per_char"]
            g["steps"] += [row["steps"]] if row.get("steps") else []
    seeds = sorted({s for g in groups.values() for s in g["seeds"]})
    rows = [[change, g["model"], *[num(g["seeds"].get(s), 4) for s in seeds],
             steps_cell(g["steps"]), stamp(g["r"])]
            for change, g in sorted(groups.items(),
                                    key=lambda kv: (kv[0] != "none", min(kv[1]["seeds"].values())))]
    return table(["change to best-cpu.toml", "model trained", *[f"seed {s}" for s in seeds],
                  "steps", "record"], rows, "ll" + "r" * len(seeds) + "rl")


# --- the other training benches ---------------------------------------------------------------

def render_levers(recs: list[Record]) -> str:
    """The latest levers record: config {"base": str, "steps": int}, figures {"rows": [{"lever":
    str, "val_log_best": float}]} (the carried record's shape; bench/levers.py writes none yet)."""
    r = latest(recs, "levers")
    if r is None:
        return none_yet("bench/levers.py")
    rows = [[row["lever"], f"{row['val_log_best']:.4f}", stamp(r)] for row in r["figures"]["rows"]]
    return table([f"change to {r['config']['base']}",
                  f"best log.csv val loss after {r['config']['steps']:,} steps", "record"],
                 rows, "lrl")


def render_init_from(recs: list[Record]) -> str:
    latest_rows: dict[tuple, tuple[Record, dict]] = {}
    for r in of(recs, "init_from"):
        for row in r["figures"]["rows"]:
            latest_rows[(row["corpus"], row["minutes"])] = (r, row)
    if not latest_rows:
        return none_yet("bench/init_from.py")
    rows = []
    for (corpus, minutes), (r, row) in sorted(latest_rows.items(),
                                              key=lambda kv: (kv[0][0] != "sonnets", kv[0][1])):
        rows.append([corpus, f"{minutes:g} min",
                     f"{row['scratch']:.4f} ({row['scratch_steps']:,})",
                     f"{row['init']:.4f} ({row['init_steps']:,})",
                     f"{row['scratch'] - row['init']:+.4f}", num(row.get("start"), 4),
                     f"{row['kn_6gram']:.4f}", stamp(r)])
    return table(["corpus", "budget", "from scratch (steps)", "`--init-from` (steps)", "gain",
                  "starting point", "6-gram KN", "record"], rows, "llrrrrrl")


def render_char_vs_word(recs: list[Record]) -> str:
    latest_rows: dict[tuple, tuple[Record, dict]] = {}
    for r in of(recs, "char_vs_word"):
        for row in r["figures"]["rows"]:
            latest_rows[(row["minutes"], row["level"])] = (r, row)
    if not latest_rows:
        return none_yet("bench/char_vs_word.py")
    rows = [[f"{m:g} min", level, num(row["steps"]), f"{row['val_nats_per_char']:.4f}",
             f"{row['kn_6gram']:.4f}", num(row.get("vocabulary")),
             "-" if row.get("unk_rate") is None else f"{row['unk_rate']:.2%}", stamp(r)]
            for (m, level), (r, row) in sorted(latest_rows.items())]
    return table(["budget", "level", "steps", "val nats/char", "6-gram KN nats/char",
                  "vocabulary", "tokens as `<unk>`", "record"], rows, "llrrrrrl")


def render_styles(recs: list[Record]) -> str:
    r = latest(recs, "styles")
    if r is None:
        return none_yet("the styles measurement")
    f = r["figures"]
    rows = [[f"{row['style_balance']:g}", f"x{row['sonnets_drawn']}", row["epochs"],
             f"{row['val_nats_per_char']:.4f}", f"{row['accuracy']:.1%}",
             f"{row['balanced']:.1%}", f"{row['sonnets']:.1%}", f"{row['plays']:.1%}",
             f"{row['naive_bayes']:.1%}", stamp(r)] for row in f["rows"]]
    return table(["`--style-balance`", "sonnets drawn", "epochs",
                  f"held-out nats/char (6-gram KN {f['kn_6gram']:.4f})", "model accuracy",
                  "balanced", "sonnets", "plays", "naive Bayes 3-grams", "record"], rows,
                 "lrrrrrrrrl")


# --- speed ------------------------------------------------------------------------------------

def render_sampling_speed(recs: list[Record]) -> str:
    r = latest(recs, "speed")
    if r is None:
        return none_yet("bench/speed.py")
    f, s = r["figures"], stamp(r)
    wall, seed_wall = f["sample_500_wall_s"], f["seed_style_sample_500_s"]
    rows = [["`textgen sample --chars 500`, whole process (s)", f"{wall:.2f}",
             f"{seed_wall:.1f}", f"{seed_wall / wall:.0f}x", s]]
    if f.get("sample_500_script_wall_s") is not None:
        rows.append(["same, through the `textgen` console script (s)",
                     f"{f['sample_500_script_wall_s']:.2f}", "", "", s])
    rows.append(["sampling chars/s, batch 1", num(f["chars_per_s_batch1"]),
                 num(f["seed_style_chars_per_s"], 1),
                 f"{f['chars_per_s_batch1'] / f['seed_style_chars_per_s']:.0f}x", s])
    rows.append(["sampling chars/s, batch 32", num(f["chars_per_s_batch32"]), "", "", s])
    return table(["measure", "textgen", "seed-style", "ratio", "record"], rows, "lrrrl")


def render_corpus_scale(recs: list[Record]) -> str:
    r = latest(recs, "corpus_scale")
    if r is None:
        return none_yet("bench/corpus_scale.py")
    f, s = r["figures"], stamp(r)
    rows = [[f"read + clean + encode + windows, cold ({f['corpus_mb']:.0f} MB, "
             f"{f['characters']:,} characters)", f"{f['cold_s']:.1f}", num(f["cold_rss_mb"]), s],
            ["the same, ids from the cache (warm)", f"{f['warm_s']:.1f}", num(f["warm_rss_mb"]), s],
            ["`textgen clean` with 3 rules, whole process", f"{f['clean_s']:.1f}",
             num(f["clean_rss_mb"]), s]]
    return table(["step", "seconds", "peak RSS (MB)", "record"], rows, "lrrl")


DEFAULT = "2 x LSTM 128, batch 128 x 40"


def short_name(name: str) -> str:
    """A train_speed row's name, without what every row repeats."""
    name = name.replace(f"default ({DEFAULT})", "default")
    return name.replace(" (NumPy one-hot arrays, model.fit(x, y))", "")


def train_speed_full(recs: list[Record]) -> Record | None:
    return latest(recs, "train_speed", lambda r: r["config"].get("mode") == "full"
                  and r["figures"].get("rows", [{}])[0].get("low") is not None)


def render_train_speed(recs: list[Record]) -> str:
    r = train_speed_full(recs)
    if r is None:
        return none_yet("a full bench/train_speed.py run")
    f, s = r["figures"], stamp(r)
    peak, seed = f["roofline_gflops"], f["rows"][-1]["targets_s"]

    def ms(x: float | None, d: int) -> str:
        return "-" if x is None else f"{1000 * x:.{d}f}"

    rows = [[short_name(row["name"]), num(row["targets_s"]),
             f"{row['low']:,.0f}-{row['high']:,.0f}",
             f"{row['targets_s'] / seed:.1f}", f"{row['gflops']:.1f}",
             f"{100 * row['gflops'] / peak:.0f}%", ms(row["split"]["pipeline"], 2),
             ms(row["split"]["model"], 1), ms(row["split"]["real"], 1), s]
            for row in f["rows"]]
    out = table(["model", "targets/s", "range", "x seed-style", "GFLOP/s", "% of roofline",
                 "pipeline ms/step", "model ms/step", "real ms/step", "record"], rows,
                "lrrrrrrrrl")
    extra = [f"\"default\" is {DEFAULT}. Roofline (NumPy float32 2048^3 matmul) in this run: "
             f"{peak:.0f} GFLOP/s."]
    if "default_vs_seed_as_written" in f:
        extra.append(f"The default config against the seed-style model as the seed code runs "
                     f"it: {f['default_vs_seed_as_written']:.1f}x.")
    if "train_rss_mb" in f:
        m = f["train_rss_mb"]
        extra.append(f"Peak RSS of `textgen train` (default config, 50 steps): {m['big']:,.0f} "
                     f"MB on a {m['big_corpus_mb']:.0f} MB corpus, {m['tinyshakespeare']:,.0f} "
                     "MB on tinyshakespeare (1.1 MB).")
    if "help_ms" in f:
        extra.append(f"`textgen --help`: {f['help_ms']:.0f} ms (median of 5).")
    return out + "\n\n" + " ".join(extra)


def render_train_speed_history(recs: list[Record]) -> str:
    """The default config's and best-cpu's targets/s in every train_speed record."""
    rows = []
    for r in of(recs, "train_speed"):
        by = {row["name"]: row["targets_s"] for row in r["figures"].get("rows", [])}
        default = by.get(f"default ({DEFAULT})")
        best = next(((n, v) for n, v in by.items() if n.startswith("best-cpu (")), None)
        pydata = next((v for n, v in by.items() if "PyDataset" in n), None)
        rows.append([r["config"].get("mode", "full") + (" (quick)" if r["config"].get("rounds")
                                                        == 3 else ""),
                     num(r["figures"].get("roofline_gflops")), num(default),
                     "-" if best is None else f"{best[1]:,.0f} ({best[0][10:-1]})", num(pydata),
                     stamp(r)])
    return table(["run", "roofline GFLOP/s", f"default ({DEFAULT}) targets/s", "best-cpu targets/s",
                  "default through a PyDataset", "record"], rows, "lrrrrl")


def render_backends_cpu(recs: list[Record]) -> str:
    r = latest(recs, "train_speed", lambda r: any(
        row["name"].endswith(" backend") and row.get("low") for row in r["figures"]["rows"]))
    if r is None:
        return none_yet("bench/train_speed.py's backend rows")
    rows = [row for row in r["figures"]["rows"] if row["name"].endswith(" backend")]
    tf = next((row["targets_s"] for row in rows if "tensorflow" in row["name"]), None)
    return table(["backend (default config, own process)", "targets/s", "range",
                  "vs TensorFlow", "record"],
                 [[row["name"].rsplit(", ", 1)[1].replace(" backend", ""),
                   num(row["targets_s"]), f"{row['low']:,.0f}-{row['high']:,.0f}",
                   f"{row['targets_s'] / tf:.0%}" if tf else "-", stamp(r)] for row in rows],
                 "lrrrl")


def render_fast_mode(recs: list[Record]) -> str:
    rows = [["textgen, default config" if r["config"]["model"] == "textgen"
             else "plain Keras model (TensorFlow's own threads)", r["config"]["starts"],
             num(r["figures"]["median"]),
             f"{r['figures']['min']:,.0f}-{r['figures']['max']:,.0f}", stamp(r)]
            for r in of(recs, "fast_mode")]
    if not rows:
        return none_yet("bench/fast_mode.py")
    return table(["model", "process starts", "median targets/s", "min-max", "record"], rows,
                 "lrrrl")


def render_export_speed(recs: list[Record]) -> str:
    r = latest(recs, "export_speed")
    if r is None:
        return none_yet("bench/export_speed.py")
    f, s, unit = r["figures"], stamp(r), r["config"]["unit"]
    names = {"wasm": "web page, WebAssembly SIMD", "js": "web page, plain JavaScript fallback",
             "numpy": "NumPy (`textgen sample`)"}
    rows = [[f"{names[row['engine']]}, temperature {row['temperature']:g}", num(row["rate"]), s]
            for row in f["rows"]]
    speed = table(["sampler", f"{unit} (batch 1)", "record"], rows, "lrl")
    sizes = table(["file", "bytes", "record"],
                  [["weights.h5", num(f["weights_bytes"]), s],
                   ["page.html (float32 weights, base64)",
                    f"{f['page_bytes']:,} ({f['page_bytes'] / f['weights_bytes']:.2f} x "
                    "weights.h5)", s]], "lrl")
    return (f"{speed}\n\nModel: {r['config']['model']}, {r['config']['parameters']:,} "
            f"parameters, vocabulary {r['config']['vocabulary']}; {r['config']['browser']}.\n\n"
            f"{sizes}")


# --- GPU --------------------------------------------------------------------------------------

def render_gpu_runs(recs: list[Record]) -> str:
    rows = []
    for r, row in quality_rows(recs):
        if r["host"].get("gpu"):
            rows.append([f"`{r['command']}`", f"{row['minutes']:g} min",
                         f"{row['epochs']} ({row['steps']:,})", steps_ms(row),
                         num(row.get("targets_s")), f"{row['val_nats_per_char']:.4f}", stamp(r)])
    for r in of(recs, "cloud_train"):
        f = r["figures"]
        rows.append([f"`{r['command']}`", f"{r['config']['minutes']:g} min",
                     f"{f['epochs']} ({f['steps']:,})", steps_ms(
                         {"ms_per_step": f.get("ms_per_step_epochs_2_3")}),
                     num(f.get("targets_s")), f"{f['val_log_best']:.4f} (log.csv)", stamp(r)])
    if not rows:
        return none_yet("a GPU run")
    return table(["command", "budget", "epochs (steps)", "ms/step", "targets/s (about)",
                  "val nats/char", "record"], rows, "llrrrrl")


def steps_ms(row: dict) -> str:
    ms = row.get("ms_per_step")
    return "-" if not ms else f"{ms[0]}-{ms[1]}"


def render_deepbench(recs: list[Record]) -> str:
    r = latest(recs, "deepbench")
    if r is None:
        return none_yet("DeepBench")
    rows = [[row["hidden"], f"{row['float32_ms']:.2f}", f"{row['mixed_ms']:.2f}",
             num(row.get("titanxp_float32_ms"), 2), stamp(r)] for row in r["figures"]["rows"]]
    return (table(["hidden units", "V100 float32 ms", "V100 mixed precision ms",
                   "TitanXp float32 ms", "record"], rows, "rrrrl")
            + f"\n\n{r['config']['layer']}; source: {r['source']}.")


def render_serve(recs: list[Record]) -> str:
    """The latest bench/serve.py record: rows per server and number of clients."""
    r = latest(recs, "serve")
    if r is None:
        return none_yet("bench/serve.py")
    rows = [[row["server"], row["clients"], num(row["aggregate_chars_per_s"]),
             num(row["per_client_chars_per_s"]), f"{row['ttfc_p50_ms']:.1f}",
             f"{row['ttfc_p99_ms']:.1f}", num(row["peak_rss_mb"]), stamp(r)]
            for row in r["figures"]["rows"]]
    f = r["figures"]
    ratios = [f"32 clients against 1: **{f['aggregate_32_over_1']:.2f}x**"
              if "aggregate_32_over_1" in f else "",
              f"batching against one request at a time, 32 clients: "
              f"**{f['batching_over_one_at_a_time_32']:.2f}x**"
              if "batching_over_one_at_a_time_32" in f else ""]
    return (table(["server", "clients", "aggregate chars/s", "per client chars/s",
                   "first char p50 ms", "first char p99 ms", "peak RSS MB", "record"], rows,
                  "lrrrrrrl") + "\n\n" + "; ".join(x for x in ratios if x) + ".")


def render_serve_soak(recs: list[Record]) -> str:
    r = latest(recs, "serve-soak")
    if r is None:
        return none_yet("bench/serve.py --soak")
    f = r["figures"]
    return table(["clients", "minutes", "RSS after 1 min MB", "RSS at the end MB", "change",
                  "record"], [[f["clients"], f"{f['seconds'] / 60:g}", f["rss_mb_after_1_min"],
                               f["rss_mb_at_end"], f"{100 * f['change_after_1_min']:+.1f}%",
                               stamp(r)]], "rrrrrl")


def render_sampling_rules(recs: list[Record]) -> str:
    """The latest bench/sampling_rules.py record."""
    r = latest(recs, "sampling-rules")
    if r is None:
        return none_yet("bench/sampling_rules.py")
    rows = [[row["temperature"], row["rule"], f"{row['kn_nats_per_char']:.4f}",
             f"{row['distinct_5grams']:.4f}", f"{row['mean_longest_copy']:.1f}", stamp(r)]
            for row in r["figures"]["rows"]]
    c = r["config"]
    return (table(["T", "rule", "6-gram KN nats/char of the samples (lower: more plausible)",
                   "distinct 5-grams (higher: more varied)", "longest copy (chars)", "record"],
                  rows, "rlrrrl")
            + f"\n\n{len(c['primes'])} primes x {c['seeds']} seeds x {c['chars']} characters "
              f"per rule, from {c['run']} (best validation loss {c['model_best_val_loss']:.4f}).")


def render_gpu_bench(recs: list[Record]) -> str:
    """The latest bench/gpu.py record on a GPU: textgen's step against the bare kernel."""
    r = latest(recs, "gpu", lambda r: bool(r["host"].get("gpu")))
    return none_yet("bench/gpu.py on a GPU") if r is None else _steps_table(r)


def render_gpu_bench_cpu(recs: list[Record]) -> str:
    """The latest bench/gpu.py --cpu record: the same comparison where no GPU is lent."""
    r = latest(recs, "gpu", lambda r: r["config"].get("mode") == "cpu")
    return none_yet("bench/gpu.py --cpu") if r is None else _steps_table(r)


def _steps_table(r: Record) -> str:
    rows = []
    for res in r["figures"]["backends"]:
        for row in res.get("rows", []):
            tg, bare = row.get("textgen fit"), row.get("bare")
            rows.append([row["label"], res["backend"], num(tg and tg["ms"], 2),
                         num(row.get("keras step") and row["keras step"]["ms"], 2),
                         num(bare and bare["ms"], 2), num(row.get("textgen fit / bare"), 2),
                         num(tg and tg["targets_s"]), stamp(r)])
    return table(["shape, precision", "backend", "textgen step ms", "Keras step ms",
                  "bare kernel ms", "textgen / bare", "targets/s", "record"], rows, "llrrrrrl")


# --- every record ----------------------------------------------------------------------------

def render_records(recs: list[Record]) -> str:
    """An index of every record, rendered in a table above or not."""
    rows = [[f"`{r['_path']}`", day(r), host_label(r["host"]), r["status"],
             f"`{r['command']}`" if r.get("command") else "-",
             (r.get("notes") or "").replace("|", "/")] for r in recs]
    return table(["record (under bench/results/)", "date", "host", "status", "command", "notes"],
                 rows)


# --- the README's headline table ----------------------------------------------------------------

HEADLINE_CPU = {("best-cpu.toml", 5), ("best-cpu-hour.toml", 60)}


def render_headline(recs: list[Record]) -> str:
    rows = []
    for g in current_quality(recs, "tinyshakespeare"):
        if g["gpu"] or (g["config"], g["minutes"]) in HEADLINE_CPU:
            host = g["record"]["host"]
            where = (f"one {host_label(host)[4:]} GPU" if g["gpu"]
                     else f"{host.get('cores')} CPU cores")
            seeds = "" if g["n"] == 1 else f" (mean of {g['n']} seeds)"
            rows.append([f"held-out loss after {g['minutes']:g} min on {where} "
                         f"(`configs/{g['config']}`)", f"**{g['mean']:.4f}** nats/char{seeds}",
                         f"6-gram Kneser-Ney: {g['row']['kn_6gram']:.4f}", stamp(g["record"])])
    nano = latest(recs, "nanogpt")
    if nano is not None:
        rows.append(["nanoGPT's small GPT, about 3 min on one A100 (for scale)",
                     f"{nano['figures']['val_loss_nats_per_char']:.4f} nats/char", "",
                     stamp(nano)])
    speed = latest(recs, "speed")
    if speed is not None:
        f = speed["figures"]
        rows.append(["sampling with NumPy, batch 1", f"{f['chars_per_s_batch1']:,.0f} chars/s",
                     f"`textgen sample --chars 500`: {f['sample_500_wall_s']:.2f} s in all",
                     stamp(speed)])
    page = latest(recs, "export_speed")
    if page is not None:
        rate = next(row["rate"] for row in page["figures"]["rows"]
                    if row["engine"] == "wasm" and row["temperature"] == 1.0)
        rows.append(["sampling in the exported web page (WebAssembly), batch 1",
                     f"{rate:,.0f} chars/s", "", stamp(page)])
    return table(["tinyshakespeare (1.1 MB), last 10% held out", "textgen", "baseline",
                  "record"], rows)


TABLES: dict[str, Callable[[list[Record]], str]] = {
    "headline": render_headline,
    "quality": render_quality,
    "quality-history": render_quality_history,
    "quality-screen": render_quality_screen,
    "quality-pymanual": render_quality_pymanual,
    "levers": render_levers,
    "init-from": render_init_from,
    "char-vs-word": render_char_vs_word,
    "styles": render_styles,
    "sampling-speed": render_sampling_speed,
    "corpus-scale": render_corpus_scale,
    "train-speed": render_train_speed,
    "train-speed-history": render_train_speed_history,
    "backends-cpu": render_backends_cpu,
    "fast-mode": render_fast_mode,
    "export-speed": render_export_speed,
    "gpu-runs": render_gpu_runs,
    "deepbench": render_deepbench,
    "serve": render_serve,
    "serve-soak": render_serve_soak,
    "sampling-rules": render_sampling_rules,
    "gpu-bench": render_gpu_bench,
    "gpu-bench-cpu": render_gpu_bench_cpu,
    "records": render_records,
}


# --- the markers ------------------------------------------------------------------------------

def render_text(text: str, recs: list[Record], where: str = "") -> tuple[str, list[str]]:
    """``text`` with every marked table rendered, and the names of the tables that changed.
    An unknown table name is a ValueError."""
    changed = []

    def one(m: re.Match) -> str:
        name = m.group(2)
        if name not in TABLES:
            raise ValueError(f"{where}: unknown table {name!r} (known: {', '.join(TABLES)})")
        body = "\n" + TABLES[name](recs) + "\n\n"
        if body != m.group(3):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return MARKER.sub(one, text), changed


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def run(check_only: bool, root: Path = ROOT, results: Path | None = None) -> list[str]:
    """Render (or only compare) every document's tables; returns "FILE: table NAME" for each
    table that differed from its rendering."""
    recs = records.load_all(results or root / "bench" / "results")
    stale = []
    for path in documents(root):
        text = path.read_text(encoding="utf-8")
        new, changed = render_text(text, recs, str(path.relative_to(root)))
        stale += [f"{path.relative_to(root)}: table {name}" for name in changed]
        if changed and not check_only:
            path.write_text(new, encoding="utf-8")
    return stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a committed table differs from its "
                             "rendering")
    args = parser.parse_args()
    stale = run(args.check)
    for line in stale:
        print(f"{line} {'differs from' if args.check else 'rendered from'} the records",
              file=sys.stderr)
    if args.check and stale:
        print("run `python bench/report.py` to render them (never edit a table by hand)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
