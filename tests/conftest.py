"""Shared fixtures: tiny corpora and one tiny trained run reused by the sampling tests."""

import os
import shutil
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from textgen.cli import cli  # noqa: E402

# A small, repetitive text: a tiny model learns it a little within a few steps.
TINY_TEXT = (
    "the cat sat on the mat.\nthe dog sat on the log.\n"
    "a cat and a dog sat on a mat and a log.\n"
) * 12


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple:
    """``proc.communicate(timeout=...)``, the process killed if it overruns (a hung child once
    went on using a core for an hour after its test failed, slowing the rest of the suite)."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def invoke(args, **kwargs):
    """Run the CLI in-process; stdout and stderr are kept apart."""
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)
    return result


TINY_FLAGS = ["--units", "8", "--embedding-dim", "4", "--window", "16", "--step", "4",
              "--batch-size", "8", "--epochs", "2", "--steps-per-epoch", "3", "--seed", "7"]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or fill the user's corpus cache."""
    os.environ["TEXTGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True, scope="session")
def _jax_compilation_cache(tmp_path_factory):
    """Child processes on JAX (the backend matrix) compile the same tiny models again and
    again: they share JAX's persistent compilation cache, kept for this session only. The
    cached executable is the one XLA compiled, so results are the same bit for bit."""
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"


@pytest.fixture(autouse=True, scope="session")
def _own_working_directory(tmp_path_factory):
    """Tests run in a folder of their own (session-wide, so module fixtures too): the
    developer's checkpoints/latest, or anything written relative to the working directory, is
    never touched."""
    previous = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(previous)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium. Absent: skip locally, fail under CI. Present but broken: fail."""
    import subprocess

    from textgen.export import dump_dom, find_browser, read_element

    path = find_browser()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must run the browser tests "
                        "(apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install chromium); CI runs these tests")
    try:
        dom = dump_dom("data:text/html,<html><body><p id=x>ok</p></body></html>", path,
                       budget_ms=0)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        pytest.fail(f"{path} cannot start: {e}")
    assert read_element(dom, "x")[0] == "ok"
    return path


CHECKOUT = Path(__file__).resolve().parents[1]
# Ignored by git, rewritten by any Python run: not the tests' writes.
BYTECODE = ("__pycache__/", ".pytest_cache/", ".hypothesis/", ".egg-info/")


def checkout_snapshot(root: Path) -> dict:
    """What a test must never change in the checkout at ``root``: its untracked and ignored
    files (git's listing, bytecode caches left out) and everything under checkpoints/ (ignored
    by git, where textgen writes by default), with link targets, sizes and times."""
    listed = []
    for ignored in ([], ["--ignored", "--directory"]):  # untracked files, then ignored ones
        git = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--others",
                              "--exclude-standard", *ignored], capture_output=True, text=True)
        listed += git.stdout.split("\0") if git.returncode == 0 else []
    others = sorted(p for p in listed if p and not any(b in p for b in BYTECODE)
                    and not p.startswith("checkpoints/"))
    found = {}
    checkpoints = root / "checkpoints"
    for folder, dirs, files in os.walk(checkpoints) if checkpoints.is_dir() else ():
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            found[str(path.relative_to(root))] = (
                os.readlink(path) if path.is_symlink() else None, st.st_size, st.st_mtime_ns)
    return {"untracked and ignored": others, "checkpoints": found}


@pytest.fixture(autouse=True, scope="session")
def _checkout_untouched():
    """The suite leaves the checkout as it found it: no test writes under it (issue 29.15: a
    test had repointed the developer's checkpoints/latest)."""
    if not (CHECKOUT / ".git").exists():
        yield  # e.g. an unpacked sdist: nothing to compare with
        return
    before = checkout_snapshot(CHECKOUT)
    yield
    after = checkout_snapshot(CHECKOUT)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"tests wrote under the checkout {CHECKOUT}: {changed}"


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny LSTM run folder, trained once per test session."""
    root = tmp_path_factory.mktemp("trained")
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    out = root / "run"
    cwd = os.getcwd()
    os.chdir(root)  # checkpoints/latest is made relative to the working directory
    try:
        result = invoke(["train", corpus, "--out", out, *TINY_FLAGS])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A copy of the session's trained run, for tests that damage or extend a run."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


# The heaviest modules first (test time summed per module with --durations=0 on 2 cores), so
# that with pytest-xdist (`-n auto --dist loadscope`, the README's command: a module stays on one
# worker, its module fixtures made once) the two cores finish together instead of one idling
# at the end. xdist would otherwise order modules by their number of tests (pytest_configure).
HEAVY_FIRST = ["test_faults", "test_backends", "test_train", "test_hostile", "test_export",
               "test_cloud", "test_reliability", "test_model", "test_styles", "test_quality",
               "test_sample"]


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep HEAVY_FIRST's order
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    def weight(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=weight)  # stable: each module keeps its own order
