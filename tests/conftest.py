"""Shared fixtures: tiny corpora and one tiny trained run reused by the sampling tests."""

import os
import shutil

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
HEAVY_FIRST = ["test_backends", "test_train", "test_hostile", "test_export", "test_cloud",
               "test_reliability", "test_model", "test_styles", "test_quality", "test_sample"]


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep HEAVY_FIRST's order
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items):
    def weight(item):
        name = item.module.__name__.rsplit(".", 1)[-1]
        return HEAVY_FIRST.index(name) if name in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=weight)  # stable: each module keeps its own order
