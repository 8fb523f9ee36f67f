"""Training end to end: run folder contents, refusing to overwrite, exact resume, faults."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from textgen import runs

from .conftest import TINY_FLAGS, finish, invoke

# 3 epochs x 4 steps; the plateau callback and dropout are active, so resuming must restore them.
# (Click keeps the last occurrence of an option, so later flags override TINY_FLAGS'.)
RESUME_FLAGS = [*TINY_FLAGS, "--epochs", "3", "--steps-per-epoch", "4"]


def _final_variables(run: Path) -> list[np.ndarray]:
    _, extra, attrs = runs.read_weights(run / runs.LAST_WEIGHTS)
    keys = sorted(extra, key=lambda k: (k.split("/")[0], int(k.split("/")[1])))
    return attrs, [extra[k] for k in keys]


def _assert_same_final_state(a: Path, b: Path):
    attrs_a, vars_a = _final_variables(a)
    attrs_b, vars_b = _final_variables(b)
    assert (attrs_a["epoch"], attrs_a["step"]) == (attrs_b["epoch"], attrs_b["step"])
    assert len(vars_a) == len(vars_b)
    for x, y in zip(vars_a, vars_b):
        assert np.array_equal(x, y)  # bit-identical weights, optimizer state and RNG state
    log_a = (a / "log.csv").read_text().splitlines()
    log_b = (b / "log.csv").read_text().splitlines()
    strip = lambda lines: [",".join(l.split(",")[:-1]) for l in lines]  # noqa: E731 - not seconds
    assert strip(log_a) == strip(log_b)
    # per-step losses and their smoothing continue exactly too
    assert (a / "steps.csv").read_text() == (b / "steps.csv").read_text()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """An uninterrupted run to compare resumed runs against."""
    root = tmp_path_factory.mktemp("baseline")
    corpus = root / "tiny.txt"
    from .conftest import TINY_TEXT

    corpus.write_text(TINY_TEXT)
    out = root / "run"
    result = invoke(["train", corpus, "--out", out, *RESUME_FLAGS])
    assert result.exit_code == 0, result.output
    return corpus, out


def test_train_then_sample_end_to_end(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["train", tiny_corpus, *TINY_FLAGS])
    assert result.exit_code == 0, result.output
    run = Path(result.stdout.strip())
    assert run.parent == Path("checkpoints") and run.name.startswith("tiny-")
    for name in ("config.json", "vocab.json", "weights.h5", "last.h5", "log.csv", "state.json",
                 "corpus.json", "prime-text.txt"):
        assert (run / name).is_file(), name
    assert Path("checkpoints/latest").resolve() == run.resolve()
    log = (run / "log.csv").read_text().splitlines()
    assert log[0].startswith("epoch,step,loss,val_loss,bpc,val_bpc") and len(log) == 3
    sample = invoke(["sample", "--chars", "50", "--temperature", "0.2", "--seed", "1"])
    assert sample.exit_code == 0
    assert len(sample.stdout) == 51 and set(sample.stdout) <= set(tiny_corpus.read_text())
    info = invoke(["info"])
    assert "vocab_size: 15" in info.stdout and "epochs_done: 2 of 2" in info.stdout


def test_never_overwrites_an_existing_run(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    assert invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS]).exit_code == 0
    before = (out / "weights.h5").read_bytes()
    again = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS])
    assert again.exit_code == 1 and "already holds a run" in again.output
    assert (out / "weights.h5").read_bytes() == before
    afile = tmp_path / "file"
    afile.write_text("keep me")
    bad = invoke(["train", tiny_corpus, "--out", afile, *TINY_FLAGS])
    assert bad.exit_code == 1 and "points at a file" in bad.output
    assert afile.read_text() == "keep me"


def test_resume_at_epoch_boundary_is_exact(baseline, tmp_path):
    corpus, full = baseline
    out = tmp_path / "run"
    assert invoke(["train", corpus, "--out", out, *RESUME_FLAGS, "--epochs", "1"]).exit_code == 0
    result = invoke(["train", corpus, "--out", out, "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    _assert_same_final_state(full, out)


def test_resume_in_the_cpu_layout_is_exact(tiny_corpus, tmp_path, monkeypatch):
    """Runs of 500 planned steps or more train in the CPU layout (one chain per core on a small
    CPU-only machine); the tests' runs are shorter, so here it is asked for at any length."""
    from textgen import devices
    from textgen.backends import tensorflow as tensorflow_backend

    monkeypatch.setattr(tensorflow_backend, "CHAINS_MIN_STEPS", 0)
    monkeypatch.setattr(tensorflow_backend, "small_cpu", lambda cores=None: 2)
    layouts, rule = [], devices.cpu_layout

    def recorded(*args, **kwargs):
        layouts.append(rule(*args, **kwargs))
        return layouts[-1]

    monkeypatch.setattr(devices, "cpu_layout", recorded)
    full, out = tmp_path / "full", tmp_path / "run"
    assert invoke(["train", tiny_corpus, "--out", full, *RESUME_FLAGS]).exit_code == 0
    first = invoke(["train", tiny_corpus, "--out", out, *RESUME_FLAGS, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    result = invoke(["train", tiny_corpus, "--out", out, "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert layouts == [{"chains": 2, "window": None}] * 3
    _assert_same_final_state(full, out)


def test_resume_refuses_changed_setup(baseline, tmp_path):
    corpus, full = baseline
    result = invoke(["train", corpus, "--out", full, "--resume", "--units", "9",
                     "--max-minutes", "30"])
    assert result.exit_code == 1 and "model.units 8 -> 9" in result.output
    assert "max_minutes" not in result.output  # when to stop may change
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() + "XYZ")
    result = invoke(["train", other, "--out", full, "--resume"])
    assert result.exit_code == 1 and "vocabulary differs" in result.output


def _spawn(args, cwd, fault=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if fault:
        env["TEXTGEN_FAULT"] = fault  # see textgen/checkpoint.py: signals sent inside a save
    return subprocess.Popen([sys.executable, "-m", "textgen", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kills_inside_saves_and_sigterm_then_resume_match_uninterrupted(baseline, tmp_path):
    """Fault injection where the risk is: SIGKILL after the new checkpoint is written but
    before it replaces last.h5 (mid-epoch), SIGKILL between rotating last.h5 to last.prev.h5
    and renaming the new one (at an epoch end), then SIGTERM; resuming each time must end
    with exactly the uninterrupted run's weights and logs."""
    corpus, full = baseline
    out = tmp_path / "run"
    args = ["train", corpus, "--out", out, *RESUME_FLAGS, "--save-every", "1"]
    for i, fault in enumerate(["KILL@written@3", "KILL@rotated@8"]):
        proc = _spawn(args + (["--resume"] if i else []), tmp_path, fault)
        _, err = finish(proc)
        assert proc.returncode == -signal.SIGKILL, err
        assert (out / runs.LAST_WEIGHTS).exists()  # never a moment without last.h5
    assert runs.read_weights(out / runs.LAST_WEIGHTS)[2]["step"] == 7
    proc = _spawn(args + ["--resume"], tmp_path, "TERM@saved@9")
    _, err = finish(proc)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM with its checkpoint at step 10" in err and "--resume" in err
    assert runs.read_weights(out / runs.LAST_WEIGHTS)[2]["step"] == 10
    result = invoke(["train", corpus, "--out", out, "--resume"])
    assert result.exit_code == 0, result.output
    _assert_same_final_state(full, out)
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".lock"]  # no temp files


def test_unreadable_newest_checkpoint_falls_back_to_previous(baseline, tmp_path):
    corpus, _ = baseline
    out = tmp_path / "run"
    assert invoke(["train", corpus, "--out", out, *RESUME_FLAGS, "--epochs", "2"]).exit_code == 0
    (out / "last.h5").write_bytes(b"truncated")
    result = invoke(["train", corpus, "--out", out, "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "resumed from last.prev.h5" in result.stderr

    (out / "last.h5").write_bytes(b"bad")
    (out / "last.prev.h5").write_bytes(b"bad")
    best = (out / "weights.h5").read_bytes()
    result = invoke(["train", corpus, "--out", out, "--resume", "--epochs", "4"])
    assert result.exit_code == 1 and "no readable checkpoint" in result.output
    assert (out / "weights.h5").read_bytes() == best


def test_diverging_loss_stops_with_clear_error(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--optimizer", "sgd",
                     "--lr", "1e30", "--clipnorm", "0"])
    assert result.exit_code == 3
    assert "loss became" in result.output and "diverged" in result.output
    assert not (out / "weights.h5").exists()  # nothing from the diverged run was saved as best


@pytest.mark.slow
def test_sigint_saves_and_exits_130(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    proc = _spawn(["train", tiny_corpus, "--out", out, *RESUME_FLAGS, "--epochs", "50",
                   "--save-every", "1"], tmp_path, fault="STOP@saved@2")
    _, status = os.waitpid(proc.pid, os.WUNTRACED)  # the process stops itself after step 2
    assert os.WIFSTOPPED(status)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, err = finish(proc)
    assert proc.returncode == 130, err
    assert "stopped by SIGINT" in err
    _, _, attrs = runs.read_weights(out / runs.LAST_WEIGHTS)
    assert attrs["step"] == 3  # saved at the batch boundary after the signal


@pytest.mark.slow
def test_killed_before_the_first_checkpoint_resumes_from_the_start(baseline, tmp_path):
    """Stopped before any checkpoint (here: killed as the first one is being saved): --resume
    trains from the start, to exactly the uninterrupted run."""
    corpus, full = baseline
    out = tmp_path / "run"
    proc = _spawn(["train", corpus, "--out", out, *RESUME_FLAGS, "--save-every", "1"], tmp_path,
                  fault="KILL@start@1")
    _, err = finish(proc)
    assert proc.returncode == -signal.SIGKILL, err
    assert (out / "config.json").exists() and not (out / runs.LAST_WEIGHTS).exists()
    result = invoke(["train", corpus, "--out", out, "--resume"])
    assert result.exit_code == 0, result.output
    _assert_same_final_state(full, out)


def test_a_recipe_gives_training_an_optimizer_a_schedule_and_callbacks(tmp_path):
    """train.Recipe: the caller's optimizer, learning-rate schedule and callbacks are used (the
    plateau halving is off under a schedule) and a resumed run continues exactly with them."""
    import keras

    from textgen.config import by_section, resolve
    from textgen.trainer import Recipe, train

    from .conftest import TINY_TEXT

    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT)

    class Halving(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self, spe):
            self.spe = spe

        def __call__(self, step):  # 0.02, halved every epoch
            return 0.02 * keras.ops.power(0.5, keras.ops.floor_divide(step, self.spe))

    seen = []

    class Seen(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, type(self.model.optimizer).__name__))

    recipe = Recipe(optimizer=lambda cfg, lr: keras.optimizers.Adam(lr, clipnorm=cfg.clipnorm),
                    schedule=lambda cfg, spe, total: Halving(spe), callbacks=(Seen(),))
    flags = {"units": 8, "embedding_dim": 4, "window": 16, "step": 4, "batch_size": 8,
             "epochs": 3, "steps_per_epoch": 3, "seed": 7, "sample_every": 0}
    config = resolve(None, by_section(flags))
    full, part = tmp_path / "full", tmp_path / "part"
    train([str(corpus)], config, full, root=tmp_path, recipe=recipe, verbose=0)
    assert seen == [(0, "Adam"), (1, "Adam"), (2, "Adam")]
    rates = [float(row["lr"]) for row in runs.read_csv(full / runs.LOG_FILE)]
    assert rates == pytest.approx([0.01, 0.005, 0.0025])  # the rate after each epoch's steps
    short = resolve(None, by_section({**flags, "epochs": 1}))
    train([str(corpus)], short, part, root=tmp_path, recipe=recipe, verbose=0)
    train([str(corpus)], config, part, root=tmp_path, recipe=recipe, verbose=0,
          resume=runs.open_run(part))
    _assert_same_final_state(full, part)
