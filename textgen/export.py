"""A run folder -> one self-contained web page, or a standard Keras model file.

``textgen export RUN -o page.html`` writes a single HTML file holding the weights (float32,
base64, little-endian), the vocabulary, the cleaning rules a prime text gets and a JavaScript
sampler that mirrors textgen/sample.py step for step: the same forward pass (every cell of
cells.py, any depth, styles), the same prime checks, the same chain of sampling processors
(sampling.py) and the same inverse-CDF draw. At temperature 0 the page writes exactly what
``textgen sample --temperature 0`` prints; with a temperature the draws come from the page's own
seeded generator (mulberry32), a stream different from NumPy's, so page seeds and CLI seeds give
different texts. A Content-Security-Policy meta tag forbids every network request: the page
works from disk or any static host.

The page's form and query parameters are the sampling settings that sampling.py declares for the
page (``prime``, ``chars`` up to sampling.PAGE_CHARS_MAX, ``temperature``, ``top_k``, ``top_p``,
``min_p``, ``seed``, ``style``), checked by the same ranges; ``autorun=1`` generates on load
(the element ``#output`` then holds the prime and the text and gets ``data-done="1"``).
``debug=probs`` writes, as JSON into ``#output``, the next-token distribution after each token
of the prime (``window.textgenProbs`` returns the same).

``textgen export RUN -o model.keras`` builds textgen's model from built-in Keras layers only,
loads the run's weights and saves it, so ``keras.saving.load_model`` opens it without custom
objects. The HTML export needs only NumPy and h5py; Keras is imported for ``.keras`` only.
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from . import cells, runs
from ._version import __version__
from .errors import RunError
from .model import weight_names
from .sample import default_prime
from .sampling import page_fields
from .vocab import NO_SPACE_AFTER, NO_SPACE_BEFORE

HTML_SUFFIXES = (".html", ".htm")
KERAS_SUFFIXES = (".keras",)
SUFFIXES = HTML_SUFFIXES + KERAS_SUFFIXES
TEMPLATE = Path(__file__).with_name("export_page.html")
DATA_MARK = "/*TEXTGEN_DATA*/"
CELLS_MARK = "/*TEXTGEN_CELLS*/"
PAGE_FORMAT = "textgen-page"


def export_run(run_dir: str | Path, output: str | Path) -> Path:
    """Write ``output`` (.html/.htm: the web page; .keras: a Keras model). Never overwrites."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in SUFFIXES:
        raise RunError(f"{output}: unknown output type {output.suffix or '(none)'!r}; "
                       f"name it .html, .htm or .keras")
    if suffix in HTML_SUFFIXES:  # each checks the output path first
        return export_html(run_dir, output)
    return export_keras(run_dir, output)


def _check_output(output: Path) -> None:
    if output.exists() or output.is_symlink():
        raise RunError(f"{output} already exists; choose another -o or remove it")
    if not output.parent.is_dir():
        raise RunError(f"{output.parent}: no such folder; create it first")


def _load(run_dir: str | Path) -> tuple[runs.Run, dict[str, np.ndarray]]:
    run = runs.open_run(run_dir)
    path = run.file(runs.BEST_WEIGHTS)
    if not path.exists():
        raise RunError(f"{run.path}: no weights yet (weights.h5 is written after the first epoch)")
    named = run.read_weights()  # checked against config.json, vocab.json and the styles
    names = weight_names(run.config.model, styled=bool(run.styles))
    return run, {n: named[n] for n in names}


# ----------------------------------------------------------------------------- the web page


def export_html(run_dir: str | Path, output: str | Path) -> Path:
    output = Path(output)
    _check_output(output)
    runs.write_text(output, page_html(run_dir), resumable=False)
    return output


def page_html(run_dir: str | Path) -> str:
    """The whole page as text (weights, vocabulary, config and sampler inline)."""
    run, named = _load(run_dir)
    data = page_data(run, named)
    # Inside <script type="application/json"> only "</script" or "<!--" could end the block;
    # "<" occurs only inside JSON strings, where \u003c means the same.
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    template = TEMPLATE.read_text(encoding="utf-8")
    if template.count(DATA_MARK) != 1 or template.count(CELLS_MARK) != 1:
        raise RunError(f"{TEMPLATE}: damaged page template (reinstall textgen)")
    return template.replace(CELLS_MARK, cell_script(run.config.model.cell)).replace(DATA_MARK, text)


def cell_script(name: str) -> str:
    """The JavaScript step of a cell registered from outside textgen (cells.Cell.js_source),
    for the page; empty for the cells whose steps the page holds."""
    source = cells.get(name).js_source or ""
    if "</script" in source.lower() or "<!--" in source:
        raise RunError(f"cell {name!r}: its JavaScript step must not contain '</script' or '<!--'")
    return source


def page_data(run: runs.Run, named: dict[str, np.ndarray]) -> dict[str, Any]:
    """Everything the page's sampler needs, as JSON-ready values."""
    cfg, clean, vocab = run.config.model, run.config.clean, run.vocab
    cell = cells.get(cfg.cell)
    tensors, parts, offset = {}, [], 0
    for name, value in named.items():
        value = np.ascontiguousarray(value, dtype="<f4")
        tensors[name] = {"offset": offset, "shape": list(value.shape)}
        parts.append(value.ravel().tobytes())
        offset += value.size
    weights = b"".join(parts)
    page_clean = {
        "unescape_html": clean.unescape_html, "remove_urls": clean.remove_urls,
        "ascii_fold": clean.ascii_fold, "lowercase": clean.lowercase,
        "charset": clean.charset, "collapse_spaces": clean.collapse_spaces,
        "rare_replacement": clean.rare_replacement,
    }
    return {
        "format": PAGE_FORMAT,
        "version": 1,
        "model": {"cell": cfg.cell, "layers": cfg.layers, "units": cfg.units,
                  "embedding_dim": cfg.embedding_dim, "gates": cell.gates,
                  "states": cell.states, "bias_rows": cell.bias_rows, "step": cell.js_step},
        "level": vocab.level,
        "tokens": list(vocab.tokens),
        "unk_id": vocab.unk_id,
        "default_prime": default_prime(vocab),
        "fields": page_fields(),  # the form and query parameters (sampling.py's declaration)
        "styles": run.styles,
        "clean": page_clean,
        "rare_chars": list(run.meta.get("rare_chars") or ()),
        # Python's idea of whitespace and of combining marks (regex \s, ascii_fold), so the
        # page cleans and splits a prime exactly as the NumPy sampler does.
        "spaces": _python_spaces(),
        "combining": _combining_ranges() if clean.ascii_fold else [],
        "no_space_before": "".join(sorted(NO_SPACE_BEFORE)),
        "no_space_after": "".join(sorted(NO_SPACE_AFTER)),
        "tensors": tensors,
        "parameters": int(offset),
        "weights": base64.b64encode(weights).decode("ascii"),
        "kernel_wasm": base64.b64encode(matvec_wasm()).decode("ascii"),
        "about": about(run, int(offset)),
    }


@lru_cache(maxsize=1)
def _python_spaces() -> str:
    return "".join(c for c in map(chr, range(sys.maxunicode + 1)) if c.isspace())


@lru_cache(maxsize=1)
def _combining_ranges() -> list[list[int]]:
    ranges: list[list[int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.combining(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return ranges


def about(run: runs.Run, parameters: int) -> dict[str, Any]:
    """What the page's header says about the model (from the run folder's files)."""
    cfg = run.config.model
    state = _optional(lambda: run.state) or {}  # a damaged file leaves its figures out
    report = _optional(lambda: runs.read_json(run.file(runs.CORPUS_REPORT)))
    report = report if isinstance(report, dict) else {}
    corpus = [runs.shown_path(Path(p).name) for p in run.meta.get("corpus", [])]
    unit = "char" if run.vocab.level == "char" else "word"
    best = state.get("best_loss")
    val_bpc = _optional(lambda: _best_val_bpc(runs.read_csv(run.file(runs.LOG_FILE))))
    weights = run.file(runs.BEST_WEIGHTS)
    trained = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(weights.stat().st_mtime))
    return {
        "name": (" + ".join(run.styles) if run.styles else ", ".join(corpus)) or run.path.name,
        "corpus": corpus,
        "corpus_chars": report["chars_kept"] if runs.is_count(report.get("chars_kept")) else None,
        "level": run.vocab.level,
        "vocab_size": len(run.vocab),
        "cell": cfg.cell,
        "layers": cfg.layers,
        "units": cfg.units,
        "parameters": parameters,
        "best_loss": best,
        "best_monitor": state.get("best_monitor"),
        "loss_unit": f"nats/{unit}",
        "val_bpc": val_bpc,
        "epochs_done": state.get("epochs_done"),
        "steps_done": state.get("steps_done"),
        "seconds_trained": state.get("seconds"),
        "trained": trained,
        "textgen": run.meta.get("textgen") or __version__,
        "run": run.path.name,
    }


def _optional(read):
    """What ``read()`` returns, or None when the file it reads is missing or damaged."""
    try:
        return read()
    except RunError:
        return None


def _best_val_bpc(rows: list[dict]) -> float | None:
    """Validation bits per character at the best validation loss of log.csv's rows."""
    try:
        losses = [(float(r["val_loss"]), r) for r in rows if r.get("val_loss")]
        best = float(min(losses, key=lambda t: t[0])[1].get("val_bpc") or "nan") if losses else None
    except (ValueError, KeyError, TypeError):
        return None
    return best if best is not None and math.isfinite(best) else None


# ----------------------------------------------------------------------------- WebAssembly
# The page's one hot loop, out = bias + sum_c x[c] * M[c, :] (float32, rows a multiple of 16),
# as a tiny WebAssembly module with 128-bit SIMD, assembled here from its opcodes (readable
# source instead of an opaque blob; nothing to download or compile). Pages fall back to the same
# loop in JavaScript where WebAssembly SIMD is missing.


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def _vec(items: list[bytes]) -> bytes:
    return _uleb(len(items)) + b"".join(items)


def _name(text: str) -> bytes:
    return _uleb(len(text)) + text.encode()


@lru_cache(maxsize=1)
def matvec_wasm() -> bytes:
    """``mv(out, m, x, rows, cols, bias)``, byte addresses into the imported memory env.mem:
    for each block of 16 rows, four f32x4 sums start at the bias and add x[c] * M[c, block]
    for every input c; M is (cols x rows), row-major."""
    i32, v128 = 0x7F, 0x7B
    get = lambda i: b"\x20" + _uleb(i)  # noqa: E731  local.get
    put = lambda i: b"\x21" + _uleb(i)  # noqa: E731  local.set
    tee = lambda i: b"\x22" + _uleb(i)  # noqa: E731  local.tee
    const = lambda n: b"\x41" + _sleb(n)  # noqa: E731  i32.const
    simd = lambda op, *imm: b"\xFD" + _uleb(op) + b"".join(imm)  # noqa: E731
    load = lambda off: simd(0x00, _uleb(4), _uleb(off))  # noqa: E731  v128.load
    store = lambda off: simd(0x0B, _uleb(4), _uleb(off))  # noqa: E731  v128.store
    add, sub, shl, lt_u = b"\x6A", b"\x6B", b"\x74", b"\x49"  # i32 arithmetic
    splat, fadd, fmul = simd(0x13), simd(0xE4), simd(0xE6)  # f32x4
    f32_load = b"\x2A" + _uleb(2) + _uleb(0)
    loop, end, br_if = b"\x03\x40", b"\x0B", b"\x0D"
    out, m, x, rows, cols, bias, r, p, xp, c, stride, xs = range(12)  # params, then locals
    acc = (12, 13, 14, 15)
    code = get(rows) + const(2) + shl + put(stride) + const(0) + put(r) + loop
    for k, a in enumerate(acc):
        code += get(bias) + get(r) + add + load(16 * k) + put(a)
    code += get(m) + get(r) + add + put(p) + get(x) + put(xp) + get(cols) + put(c) + loop
    code += get(xp) + f32_load + splat + put(xs)
    for k, a in enumerate(acc):
        code += get(a) + get(p) + load(16 * k) + get(xs) + fmul + fadd + put(a)
    code += get(p) + get(stride) + add + put(p) + get(xp) + const(4) + add + put(xp)
    code += get(c) + const(1) + sub + tee(c) + br_if + _uleb(0) + end
    for k, a in enumerate(acc):
        code += get(out) + get(r) + add + get(a) + store(16 * k)
    code += get(r) + const(64) + add + tee(r) + get(stride) + lt_u + br_if + _uleb(0) + end + end
    body = _vec([_uleb(5) + bytes([i32]), _uleb(5) + bytes([v128])]) + code
    section = lambda i, content: bytes([i]) + _uleb(len(content)) + content  # noqa: E731
    return (b"\x00asm\x01\x00\x00\x00"
            + section(1, _vec([b"\x60" + _vec([bytes([i32])] * 6) + _vec([])]))  # type
            + section(2, _vec([_name("env") + _name("mem") + b"\x02\x00\x01"]))  # memory
            + section(3, _vec([_uleb(0)]))  # function 0 has type 0
            + section(7, _vec([_name("mv") + b"\x00" + _uleb(0)]))  # export
            + section(10, _vec([_uleb(len(body)) + body])))  # code


# ----------------------------------------------------------------------------- Keras


def export_keras(run_dir: str | Path, output: str | Path) -> Path:
    """A plain Keras model (built-in layers only) with the run's weights, saved atomically."""
    output = Path(output)
    _check_output(output)
    run, named = _load(run_dir)
    from .devices import load_keras
    from .model import build_model, set_named_weights

    load_keras()  # Keras (and its framework) quietly, or one line saying what to install
    model = build_model(run.config.model, len(run.vocab), len(run.styles))
    set_named_weights(model, run.config.model, named)
    tmp = output.parent / f".{output.stem}.{os.getpid()}.tmp.keras"
    try:  # the temp file goes whatever happens, a signal included (Signalled)
        model.save(tmp)
        runs.fault("write", output.name)
        os.replace(tmp, output)
    except OSError as e:
        raise runs.write_error(output, e, resumable=False) from None
    finally:
        tmp.unlink(missing_ok=True)
    return output


# ----------------------------------------------------------------------------- headless browser
# For tests and scripts: load an exported page in headless Chromium and read #output back.

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage")


def find_browser() -> str | None:
    """The path of a Chromium/Chrome executable on PATH (or $TEXTGEN_BROWSER), else None."""
    import shutil

    candidates = [os.environ["TEXTGEN_BROWSER"]] if os.environ.get("TEXTGEN_BROWSER") else BROWSERS
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


def page_url(path: str | Path, **params: Any) -> str:
    """A file:// URL of ``path`` with query parameters (values URL-encoded)."""
    from urllib.parse import urlencode

    query = urlencode({k: v for k, v in params.items() if v is not None})
    return Path(path).resolve().as_uri() + (f"?{query}" if query else "")


def dump_dom(url: str, browser: str | None = None, budget_ms: int = 60_000,
             timeout: float = 120.0, extra_flags: tuple[str, ...] = ()) -> str:
    """The page's DOM after it ran (``--dump-dom``); ``budget_ms`` of virtual time lets a
    generation that yields between chunks finish first. RuntimeError if the browser fails."""
    import subprocess
    import tempfile

    browser = browser or find_browser()
    if browser is None:
        raise RuntimeError("no Chromium/Chrome found (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="textgen-browser-") as profile:
        args = [browser, *BROWSER_FLAGS, f"--user-data-dir={profile}", *extra_flags]
        if budget_ms:
            args.append(f"--virtual-time-budget={budget_ms}")
        proc = subprocess.run([*args, "--dump-dom", url], capture_output=True, timeout=timeout,
                              text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0 or "<html" not in proc.stdout:
        raise RuntimeError(f"{browser} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def read_element(dom: str, element_id: str) -> tuple[str, dict[str, str]]:
    """The text and attributes of the element with ``element_id`` in a dumped DOM."""
    import html
    import re

    match = re.search(rf'<(\w+)([^>]*\bid="{re.escape(element_id)}"[^>]*)>(.*?)</\1>', dom, re.S)
    if match is None:
        raise ValueError(f"no element with id {element_id!r} in the page")
    attrs = {k: html.unescape(v) for k, v in re.findall(r'([\w-]+)="([^"]*)"', match.group(2))}
    text = html.unescape(re.sub(r"<[^>]*>", "", match.group(3)))
    return text, attrs
