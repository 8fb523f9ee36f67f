"""Reliability, round 3 (issue 29): a changed corpus on resume, outputs that appear only when
complete, repeated signals, a read-only working directory, non-UTF-8 file names, a
one-character vocabulary, hostile run folders, temporary files, a missing backend, and small
things (closed stdin, odd files for classify, full disks on export, TOML infinities).

Each test names the defect it guards; each failed on the code before the fix."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from textgen import runs

from .conftest import TINY_FLAGS, TINY_TEXT, invoke

REPO = Path(__file__).resolve().parents[1]


def one_line_error(result, *words, code=1):
    """The CLI failed with exit ``code`` and a last stderr line ``Error: ...`` naming every word,
    without a traceback; returns that line."""
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[-1], lines[-1]
    return lines[-1]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


def temps_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name != ".lock")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_toml_max_minutes_must_be_finite(tiny_corpus, tmp_path, value):
    config = tmp_path / "c.toml"
    config.write_text(f"[train]\nmax_minutes = {value}\n")
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, "--config", config, *TINY_FLAGS])
    one_line_error(result, "c.toml", "train.max_minutes")
    assert not out.exists()


# ----------------------------------------------------------------------------- in a real process


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TEXTGEN_FAULT",)}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def _spawn(args, cwd, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd,
                            env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _run(args, cwd, timeout=600, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd,
                          env=_env(**env), capture_output=True, text=True, timeout=timeout)


def _last_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert lines and "Traceback" not in stderr, stderr[-3000:]
    return lines[-1]


@pytest.mark.parametrize("flag, value, message", [
    ("--pad-to", "100000000000", "clean.pad_to must be at most 1000000"),
    ("--epochs", "100000000000000000000", "train.epochs must be at most 1000000"),
    ("--batch-size", str(2**40), "window.batch_size must be at most 2147483647"),
    ("--units", "100000", "model.units must be at most 16384"),
    ("--layers", "65", "model.layers must be at most 64"),
])
def test_sizes_beyond_the_caps_are_usage_errors(tiny_corpus, tmp_path, flag, value, message):
    """--pad-to 10**11 was a MemoryError traceback, --epochs 10**20 TensorFlow's ValueError."""
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, flag, value])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not out.exists()


# ----------------------------------------------------------------------------- 8. hostile run folders


def _edit_config(run: Path, edit) -> None:
    doc = json.loads((run / "config.json").read_text())
    edit(doc)
    (run / "config.json").write_text(json.dumps(doc))


def _sparse(path: Path, size: int) -> None:
    path.unlink(missing_ok=True)
    path.touch()
    os.truncate(path, size)  # takes no disk space; reading it whole would take `size` bytes


def _set_model(**values):
    return lambda run: _edit_config(run, lambda d: d["config"]["model"].update(values))


def _write(name: str, text: str):
    return lambda run: (run / name).write_text(text)


HOSTILE = {
    "layers 10**400": (_set_model(layers=10**400), "model.layers must be at most 64"),
    "layers 10**6": (_set_model(layers=10**6), "model.layers must be at most 64"),
    "units 10**9": (_set_model(units=10**9), "model.units must be at most 16384"),
    "lr 1e400 as an integer": (lambda r: _edit_config(r, lambda d: d["config"]["train"].update(
        lr=10**400)), "train.lr"),
    "config.json 300 MB": (lambda r: _sparse(r / "config.json", 300 * 2**20),
                           "config.json: over 16,000,000 bytes"),
    "config.json 100,000 deep": (_write("config.json", "[" * 100_000 + "]" * 100_000),
                                 "config.json: nested too deeply"),
    "config.json a list": (_write("config.json", "[]"), "not a textgen run config"),
    "config section a list": (lambda r: _edit_config(r, lambda d: d.update(config=[1])),
                              "config.json: 'config' must be a table"),
    "corpus paths [1, 2]": (lambda r: _edit_config(r, lambda d: d.update(corpus=[1, 2])),
                            "config.json: 'corpus' must be a list of paths"),
    "styles a string": (lambda r: _edit_config(r, lambda d: d.update(styles="ab")),
                        "config.json: 'styles'"),
    "rare_chars numbers": (lambda r: _edit_config(r, lambda d: d.update(rare_chars=[1])),
                           "config.json: 'rare_chars'"),
    "state.json []": (_write("state.json", "[]"), "state.json: damaged"),
    "state.json best_loss low": (_write("state.json", '{"best_loss": "low"}'),
                                 "state.json: damaged (best_loss"),
    "state.json 100,000 deep": (_write("state.json", "{\"a\":" * 100_000 + "1" + "}" * 100_000),
                                "state.json: nested too deeply"),
    "state.json 2 GB": (lambda r: _sparse(r / "state.json", 2**31), "state.json: over"),
    "vocab.json 2 GB": (lambda r: _sparse(r / "vocab.json", 2**31), "vocab.json: over"),
    "config.json a FIFO": (lambda r: _fifo(r / "config.json"), "config.json: not a regular file"),
    "vocab.json a FIFO": (lambda r: _fifo(r / "vocab.json"), "vocab.json: not a regular file"),
    "state.json a FIFO": (lambda r: _fifo(r / "state.json"), "state.json: not a regular file"),
}


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)  # opening it to read would wait for a writer forever


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("command", ["info", "sample", "export"])
def test_hostile_run_folder_files_are_checked_before_use(run_copy, tmp_path, case, command):
    """Issue 29.8: hangs (layers = 10**400), 690 MB (10**6), whole reads of huge files, and
    tracebacks. Each a one-line error, in bounded time and memory (a subprocess limited to
    2 GB of address space and 120 s)."""
    damage, message = HOSTILE[case]
    damage(run_copy)
    if command != "info" and case.startswith("state.json"):
        message = None  # sampling never reads state.json; a page leaves its figures out
    args = {"info": ["info", run_copy],
            "sample": ["sample", "--run", run_copy, "--chars", "5", "--seed", "1"],
            "export": ["export", run_copy, "-o", tmp_path / "page.html"]}[command]
    done = subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_2gb)
    if message is None:
        assert done.returncode == 0, done.stderr[-3000:]
        return
    assert done.returncode == 1, done.stderr[-3000:]
    assert message in _last_line(done.stderr)
    assert not (tmp_path / "page.html").exists()


def _limit_2gb():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 * 2**30, 2 * 2**30))


@pytest.mark.parametrize("target", ["corpus.json [1, 2]", "corpus.json 2 GB", "log.csv 2 GB",
                                    "log.csv text"])
def test_export_checks_the_corpus_report_and_log(run_copy, tmp_path, target):
    """export's page header reads corpus.json and log.csv: [1, 2] was a traceback; a damaged
    one leaves the figure out, a huge one is not read."""
    name, _, kind = target.partition(" ")
    path = run_copy / name
    if kind == "2 GB":
        _sparse(path, 2**31)
    elif kind == "[1, 2]":
        path.write_text("[1, 2]")
    else:
        path.write_text("epoch,step,loss,val_loss\nx,y,z,w\n")
    done = subprocess.run([sys.executable, "-m", "textgen", "export", str(run_copy), "-o",
                           str(tmp_path / "page.html")], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_2gb)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "" and (tmp_path / "page.html").exists()


def _unallocated_weights(run: Path, units: int) -> None:
    """A weights.h5 of the right names and shapes for ``units``, every dataset chunked and
    never written: a few KB on disk, whatever the shapes."""
    _edit_config(run, lambda d: d["config"]["model"].update(units=units))
    opened = runs.open_run(run)
    shapes = runs.weight_shapes(opened.config.model, len(opened.vocab), len(opened.styles))
    attrs = dict(h5py.File(run / "weights.h5", "r").attrs)
    with h5py.File(run / "weights.h5", "w") as f:
        f.attrs.update(attrs)
        for name, shape in shapes.items():
            f.create_dataset(name, shape=shape, dtype="f4", chunks=True)


@pytest.mark.parametrize("command", ["info", "sample", "export"])
def test_weights_whose_storage_cannot_hold_their_shape_are_refused_unread(run_copy, tmp_path,
                                                                          command):
    """Issue 29.8: units 5000 and a 10 KB weights.h5 of unallocated chunked datasets: info
    took 636 MB, sample 1.3 GB."""
    _unallocated_weights(run_copy, 5000)
    assert (run_copy / "weights.h5").stat().st_size < 100_000
    args = {"info": ["info", run_copy, "--json"],
            "sample": ["sample", "--run", run_copy, "--chars", "5"],
            "export": ["export", run_copy, "-o", tmp_path / "page.html"]}[command]
    done = subprocess.run([sys.executable, "-m", "textgen", *map(str, args)], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_2gb)
    expected = "embedding/embeddings holds 0 bytes in the file, its shape needs"
    if command == "info":
        assert done.returncode == 0, done.stderr[-3000:]
        assert expected in json.loads(done.stdout)["parameters"]
    else:
        assert done.returncode == 1, done.stderr[-3000:]
        assert expected in _last_line(done.stderr)


def test_weights_file_that_is_a_fifo_is_refused_unopened(run_copy, tmp_path):
    _fifo(run_copy / "weights.h5")
    done = _run(["sample", "--run", run_copy, "--chars", "5"], tmp_path, timeout=120)
    assert done.returncode == 1 and "weights.h5: not a regular file" in _last_line(done.stderr)
    info = _run(["info", run_copy, "--json"], tmp_path, timeout=120)
    assert info.returncode == 0 and "not a regular file" in json.loads(info.stdout)["parameters"]


def test_weights_attribute_over_the_cap_is_refused_unread(run_copy):
    named, _, attrs = runs.read_weights(run_copy / "weights.h5")
    with h5py.File(run_copy / "weights.h5", "w", libver="latest") as f:  # dense attributes
        f.attrs.update(attrs)
        f.attrs["junk"] = np.zeros(200_000, "f4")  # 800 KB
        for name, value in named.items():
            f.create_dataset(name, data=value)
    result = invoke(["sample", "--run", run_copy, "--chars", "5"])
    one_line_error(result, "attribute 'junk' is over 65,536 bytes")


# ----------------------------------------------------------------------------- 15. the checkout


def test_the_checkout_guard_sees_what_a_test_would_change(tmp_path):
    """Issue 29.15: conftest's session check compares this snapshot of the checkout before and
    after the suite; here it is shown to see the writes the issue found, and to ignore Python's
    bytecode caches."""
    from .conftest import checkout_snapshot

    repo = tmp_path / "checkout"
    (repo / "checkpoints" / "mine").mkdir(parents=True)
    (repo / ".gitignore").write_text("checkpoints/\n__pycache__/\n")
    (repo / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    os.symlink("mine", repo / "checkpoints" / "latest")
    before = checkout_snapshot(repo)
    assert before == checkout_snapshot(repo)
    (repo / "__pycache__").mkdir()
    (repo / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"bytecode")
    assert checkout_snapshot(repo) == before
    (repo / "checkpoints" / "latest").unlink()
    os.symlink("/tmp/pytest-of-root/run", repo / "checkpoints" / "latest")  # repointed
    assert checkout_snapshot(repo) != before
    before = checkout_snapshot(repo)
    (repo / "checkpoints" / "tiny-20260101-000000").mkdir()  # a new run folder
    assert checkout_snapshot(repo) != before
    before = checkout_snapshot(repo)
    (repo / "loss.png").write_bytes(b"png")  # a new file anywhere in the checkout
    assert checkout_snapshot(repo) != before
