"""Benchmark results as data: one JSON record per bench run, under bench/results/<bench>/.

Every bench script ends by calling ``write_record``; ``bench/report.py`` renders the docs'
tables (and the README's headline table) from the records, and a test checks that the committed
tables are exactly what it renders. No figure is typed by hand.

A record::

    {
      "schema": 1,
      "bench": "speed",                      # the script (and the folder the record lives in)
      "date": "2026-12-06T10:00:00Z",        # when it was measured (UTC)
      "status": "measured",                  # measured | carried | cited
      "source": null,                        # carried: where the figure was copied from;
                                             # cited: the publication it comes from
      "host": {"cpu": "AMD EPYC ...", "cores": 2, "isa": ["avx2", ...], "gpu": null,
               "machine": "x86_64", "system": "Linux"},
      "versions": {"python": "3.11.7", "textgen": "0.2.0", "keras": "3.15.1", ...},
      "commit": "789af99...",                # git HEAD (+ "-dirty" when the tree had changes)
      "command": "python bench/speed.py",
      "config": {...},                       # what was measured, as the script describes it
      "figures": {...},                      # the results: numbers, or rows of numbers
      "notes": "..."                         # optional: one or two sentences
    }

``carried`` records hold figures measured before records existed (copied from the README of an
earlier commit, with their original date and host description); ``cited`` records hold figures
from elsewhere (e.g. nanoGPT's published validation loss), with their source.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SCHEMA = 1
STATUSES = ("measured", "carried", "cited")
# Instruction-set extensions worth knowing when comparing CPU figures across hosts.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni",
             "avx512_bf16", "amx_bf16", "amx_tile", "asimd", "sve")
PACKAGES = ("numpy", "keras", "tensorflow", "tensorflow-cpu", "jax", "jaxlib", "torch",
            "h5py", "click")


def host() -> dict[str, Any]:
    """What machine this is: CPU model, cores, ISA extensions, GPU (if any)."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        name = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = name.group(1).strip() if name else cpu
        found = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, re.M)
        flags = set(found.group(1).split()) if found else set()
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "isa": [f for f in ISA_FLAGS if f in flags],
            "gpu": gpu_name(), "machine": platform.machine(), "system": platform.system()}


def gpu_name() -> str | None:
    """The first NVIDIA GPU's name (nvidia-smi), else None."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], text=True,
                             capture_output=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out else None


def versions() -> dict[str, str]:
    """Python's and the installed packages' versions (read from metadata: no framework is
    imported); textgen's from the textgen that runs (an editable install's metadata can lag)."""
    out = {"python": platform.python_version()}
    try:
        from textgen._version import __version__ as textgen_version

        out["textgen"] = textgen_version
    except ImportError:
        pass
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def commit() -> str | None:
    """git HEAD of the checkout, with "-dirty" when tracked files had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=20)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               text=True, capture_output=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty else "")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_record(bench: str, config: dict[str, Any], figures: dict[str, Any], *,
                command: str | None = None, notes: str | None = None) -> dict[str, Any]:
    """A ``measured`` record of this run on this machine at this commit."""
    return {"schema": SCHEMA, "bench": bench, "date": now(), "status": "measured",
            "source": None, "host": host(), "versions": versions(), "commit": commit(),
            "command": command or " ".join(["python", *map(str, sys.argv)]),
            "config": config, "figures": figures, **({"notes": notes} if notes else {})}


def write_record(bench: str, config: dict[str, Any], figures: dict[str, Any], *,
                 command: str | None = None, notes: str | None = None,
                 results: Path | None = None) -> Path:
    """Write a measured record as bench/results/<bench>/<date>.json; returns its path."""
    record = make_record(bench, config, figures, command=command, notes=notes)
    return save(record, results)


def results_dir() -> Path:
    """Where new records go: bench/results, or $TEXTGEN_BENCH_RESULTS when set (a smoke run of
    a bench script on a busy machine writes there, not into the committed records)."""
    return Path(os.environ.get("TEXTGEN_BENCH_RESULTS") or RESULTS)


def save(record: dict[str, Any], results: Path | None = None) -> Path:
    """Write ``record`` (checked) under ``results`` (default ``results_dir()``), named by its
    date (a counter is added if two records of one bench share a second)."""
    check(record)
    folder = (results or results_dir()) / record["bench"]
    folder.mkdir(parents=True, exist_ok=True)
    stem = record["date"].replace(":", "").replace("-", "")
    path, n = folder / f"{stem}.json", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False, sort_keys=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    print(f"record: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
          file=sys.stderr)
    return path


REQUIRED = {"schema": int, "bench": str, "date": str, "status": str, "host": dict,
            "versions": dict, "config": dict, "figures": dict}


def check(record: dict[str, Any]) -> None:
    """ValueError unless ``record`` has the fields and types above."""
    for key, kind in REQUIRED.items():
        if not isinstance(record.get(key), kind):
            raise ValueError(f"record field {key!r} missing or not a {kind.__name__}")
    if record["status"] not in STATUSES:
        raise ValueError(f"record status {record['status']!r} is not one of {STATUSES}")
    if record["status"] in ("carried", "cited") and not record.get("source"):
        raise ValueError(f"a {record['status']} record needs its source")
    if not re.fullmatch(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\dZ)?", record["date"]):
        raise ValueError(f"record date {record['date']!r} is not YYYY-MM-DD[THH:MM:SSZ]")
    if not re.fullmatch(r"[a-z0-9_-]+", record["bench"]):
        raise ValueError(f"record bench {record['bench']!r}: lowercase letters, digits, - and _")


def load_all(results: Path | None = None) -> list[dict[str, Any]]:
    """Every record under ``results``, checked, oldest first (by date, then file name)."""
    records = []
    for path in sorted((results or RESULTS).glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        try:
            check(record)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        record["_path"] = str(path.relative_to(results or RESULTS))
        records.append(record)
    return sorted(records, key=lambda r: (r["date"], r["_path"]))
