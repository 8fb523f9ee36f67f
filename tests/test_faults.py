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

from .conftest import TINY_FLAGS, TINY_TEXT, finish, invoke

REPO = Path(__file__).resolve().parents[1]
# No --steps-per-epoch cap: the steps per epoch follow the corpus's size, as in real runs.
UNCAPPED = ["--units", "8", "--embedding-dim", "4", "--window", "16", "--step", "4",
            "--batch-size", "64", "--epochs", "1", "--seed", "7", "--sample-every", "0"]


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


# ----------------------------------------------------------------------------- 1. the corpus changed


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A run of one full epoch on TINY_TEXT (5 steps of 64 windows), trained once."""
    root = tmp_path_factory.mktemp("one-epoch")
    corpus = root / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    out = root / "run"
    result = invoke(["train", corpus, "--out", out, *UNCAPPED])
    assert result.exit_code == 0, result.output
    return corpus, out


@pytest.mark.parametrize("change", ["grown 3x", "a quarter", "same size, other order"])
def test_resume_after_the_corpus_changed_is_refused_and_nothing_changes(one_epoch_run, tmp_path,
                                                                         change):
    """Issue 29.1: exit 0, "trained 1 epochs" and nothing saved, on every later resume too."""
    corpus, trained = one_epoch_run
    out = Path(shutil.copytree(trained, tmp_path / "run"))
    lines = TINY_TEXT.splitlines(keepends=True)
    text = {"grown 3x": TINY_TEXT * 3, "a quarter": TINY_TEXT[: len(TINY_TEXT) // 4],
            "same size, other order": "".join(lines[1:] + lines[:1])}[change]
    changed = tmp_path / "tiny.txt"
    changed.write_text(text, encoding="utf-8")
    before = files_of(out)
    result = invoke(["train", changed, "--out", out, "--resume", "--epochs", "2"])
    line = one_line_error(result, "corpus changed since this run started", "--init-from")
    assert len(line.replace(str(out), "RUN")) < 300
    assert files_of(out) == before  # log.csv, state.json, last.h5 ... untouched
    again = invoke(["train", corpus, "--out", out, "--resume", "--epochs", "2"])
    assert again.exit_code == 0, again.output  # the original text still resumes
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2


def test_a_damaged_data_record_is_refused_in_one_line(one_epoch_run, tmp_path):
    corpus, trained = one_epoch_run
    out = Path(shutil.copytree(trained, tmp_path / "run"))
    doc = json.loads((out / "config.json").read_text())
    doc["data"]["ids"] = "many"
    (out / "config.json").write_text(json.dumps(doc))
    result = invoke(["train", corpus, "--out", out, "--resume", "--epochs", "2"])
    one_line_error(result, "corpus changed", "a damaged record")


def test_evaluate_refuses_a_changed_training_corpus(one_epoch_run, tmp_path):
    """The validation split is the corpus's tail: another text of the same characters gave
    figures for another split."""
    corpus, trained = one_epoch_run
    out = Path(shutil.copytree(trained, tmp_path / "run"))
    lines = TINY_TEXT.splitlines(keepends=True)
    other = tmp_path / "other.txt"
    other.write_text("".join(lines[1:] + lines[:1]), encoding="utf-8")
    result = invoke(["evaluate", out, "--train-corpus", other])
    one_line_error(result, "is not the text the run was trained on", "--train-corpus")
    assert invoke(["evaluate", out, "--train-corpus", corpus]).exit_code == 0


def _drop_data_record(run: Path) -> None:
    doc = json.loads((run / "config.json").read_text())
    doc.pop("data", None)
    (run / "config.json").write_text(json.dumps(doc))


def test_a_run_from_before_the_record_resumes_on_its_corpus_and_is_then_checked(one_epoch_run,
                                                                                tmp_path):
    """Runs made before the data record: a changed size of epoch is refused from the
    checkpoint's position; the same corpus resumes, and the record is written then."""
    corpus, trained = one_epoch_run
    out = Path(shutil.copytree(trained, tmp_path / "run"))
    _drop_data_record(out)
    grown = tmp_path / "grown.txt"
    grown.write_text(TINY_TEXT * 3, encoding="utf-8")
    before = files_of(out)
    result = invoke(["train", grown, "--out", out, "--resume", "--epochs", "2"])
    one_line_error(result, "steps per epoch", "--init-from")
    assert files_of(out) == before
    ok = invoke(["train", corpus, "--out", out, "--resume", "--epochs", "2"])
    assert ok.exit_code == 0, ok.output
    assert "cannot check" in ok.stderr  # said once, then recorded
    assert json.loads((out / "config.json").read_text())["data"]["train_windows"] > 0


# ----------------------------------------------------------------------------- 5. checkpoints/latest


def _read_only_folder(path: Path) -> bool:
    """Make ``path`` a folder nobody can write to: a read-only tmpfs as root, else mode 555."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return True
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.mark.parametrize("where", ["checkpoints is a file", "read-only working directory"])
def test_latest_pointer_that_cannot_be_updated_is_a_warning(tiny_corpus, tmp_path, monkeypatch,
                                                            where):
    """Issue 29.5: the pointer is a convenience; training with a writable --out goes on."""
    cwd = tmp_path / "cwd"
    if where == "checkpoints is a file":
        cwd.mkdir()
        (cwd / "checkpoints").write_text("mine")
    elif not _read_only_folder(cwd):
        if os.environ.get("CI"):
            pytest.fail("CI runs as root and must be able to mount a tmpfs")
        pytest.skip("mounting a read-only tmpfs needs root")
    monkeypatch.chdir(cwd)
    out = tmp_path / "run"
    try:
        result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--sample-every", "0"])
    finally:
        os.chdir(tmp_path)
        subprocess.run(["umount", str(cwd)], capture_output=True)
    assert result.exit_code == 0, result.output
    assert "warning: cannot point checkpoints/latest at" in result.stderr
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2
    if where == "checkpoints is a file":
        assert (cwd / "checkpoints").read_text() == "mine"


# ----------------------------------------------------------------------------- 6. file names

BAD_NAME = os.fsdecode(b"x\xff.txt")  # not UTF-8: the name holds a lone surrogate in Python


@pytest.fixture
def odd_names(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text(TINY_TEXT, encoding="utf-8")
    (folder / BAD_NAME).write_text(TINY_TEXT, encoding="utf-8")
    return folder


def test_clean_report_json_with_a_non_utf8_file_name(odd_names, tmp_path):
    """Issue 29.6: UnicodeEncodeError. Names are stored exactly (JSON \\udcff escapes, valid
    UTF-8) and read back to the same bytes."""
    report = tmp_path / "report.json"
    result = invoke(["clean", odd_names, "--report-json", report, "-o", tmp_path / "out.txt"])
    assert result.exit_code == 0, result.output
    files = json.loads(report.read_bytes().decode("utf-8"))["files"]
    assert [os.fsencode(f) for f in files] == [os.fsencode(odd_names / "a.txt"),
                                               os.fsencode(odd_names / BAD_NAME)]


@pytest.mark.parametrize("cache", ["on", "off"])
def test_train_on_a_folder_with_a_non_utf8_file_name(odd_names, tmp_path, monkeypatch, cache):
    if cache == "off":
        monkeypatch.setenv("TEXTGEN_CACHE_DIR", "")
    out = tmp_path / "run"
    result = invoke(["train", odd_names, "--out", out, *TINY_FLAGS, "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "corpus.json").read_bytes().decode("utf-8"))["files"][1] == \
        str(odd_names / BAD_NAME)
    info = invoke(["info", out, "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["corpus"] == str(odd_names.resolve())
    again = invoke(["train", odd_names, "--out", out, "--resume", "--epochs", "3"])
    assert again.exit_code == 0, again.output


def test_info_shows_a_non_utf8_corpus_path_escaped(odd_names, tmp_path):
    out = tmp_path / "run"
    bad = odd_names / BAD_NAME
    result = invoke(["train", bad, "--out", out, *TINY_FLAGS, "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_bytes().decode("utf-8"))["corpus"] == \
        [str(bad.resolve())]  # stored exactly
    info = invoke(["info", out])
    assert info.exit_code == 0, info.output
    assert "x\\xff.txt" in info.stdout  # shown with the byte escaped


# ----------------------------------------------------------------------------- 7. one character


@pytest.mark.parametrize("char", ["a", "\u00e9"])
def test_a_one_character_vocabulary_is_refused_before_anything_is_written(tmp_path, char):
    """Issue 29.7: a crash inside Keras, and a run folder that can never train."""
    corpus = tmp_path / "one.txt"
    corpus.write_text(char * 600, encoding="utf-8")
    out = tmp_path / "run"
    result = invoke(["train", corpus, "--out", out, *TINY_FLAGS])
    one_line_error(result, "one.txt", "one distinct character", repr(char))
    assert not out.exists()


# ----------------------------------------------------------------------------- 16. small things


def test_clean_refuses_the_same_file_for_output_and_report(tiny_corpus, tmp_path):
    same = tmp_path / "same.txt"
    result = invoke(["clean", tiny_corpus, "-o", same, "--report-json", same])
    assert result.exit_code == 2 and "same file" in result.stderr, result.output
    assert not same.exists()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_toml_max_minutes_must_be_finite(tiny_corpus, tmp_path, value):
    config = tmp_path / "c.toml"
    config.write_text(f"[train]\nmax_minutes = {value}\n")
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--out", out, "--config", config, *TINY_FLAGS])
    one_line_error(result, "c.toml", "train.max_minutes")
    assert not out.exists()


def test_word_level_summary_is_in_nats_per_token(tmp_path):
    corpus = tmp_path / "words.txt"
    corpus.write_text("the cat sat on the mat .\nthe dog sat on the log .\n" * 30)
    out = tmp_path / "run"
    result = invoke(["train", corpus, "--out", out, *TINY_FLAGS, "--level", "word",
                     "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    assert "nats/token" in result.stderr and "nats/char" not in result.stderr
    info = invoke(["info", out])
    assert "nats/token" in info.stdout and "nats/char" not in info.stdout


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


def _wait_until(condition, proc, timeout=300.0) -> None:
    """Poll ``condition`` (a deterministic point: a file appears) while ``proc`` runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the process never reached the point"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- 2, 3, 9. signals


@pytest.fixture(scope="module")
def styled_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("styled")
    for name, text in (("a", "the cat sat on a mat.\n" * 40), ("b", "the cat ran to a dog.\n" * 40)):
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
    out = root / "run"
    result = invoke(["train", "--style", f"a={root / 'a.txt'}", "--style", f"b={root / 'b.txt'}",
                     "--out", out, *TINY_FLAGS, "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("case", ["unknown prime characters", "styled run without --style"])
def test_sample_output_refused_leaves_nothing_and_the_corrected_command_works(
        trained_run, styled_run, tmp_path, case):
    """Issue 29.2: a rejected prime left FILE holding the prime, a styled run without --style
    an empty FILE; the corrected command then refused ("already exists")."""
    target = tmp_path / "s.txt"
    if case == "unknown prime characters":
        args, fixed = ["--run", trained_run, "--prime", "XYZ"], ["--prime", "the "]
    else:
        args, fixed = ["--run", styled_run, "--prime", "the "], ["--style", "a"]
    result = invoke(["sample", *args, "--chars", "20", "--seed", "1", "-o", target])
    assert result.exit_code == 2 and "Error:" in result.stderr, result.output
    assert list(tmp_path.iterdir()) == []
    again = invoke(["sample", *args, *fixed, "--chars", "20", "--seed", "1", "-o", target])
    assert again.exit_code == 0, again.output
    assert target.read_text(encoding="utf-8").startswith("the ") and \
        len(target.read_text(encoding="utf-8")) == 25


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                       (signal.SIGHUP, 129)])
def test_sample_output_stopped_by_a_signal_leaves_nothing(trained_run, tmp_path, sig, code):
    """Issue 29.2/3: Ctrl-C left a truncated FILE under its real name, SIGTERM a
    .__atomic-write* file. Signalled twice, as a preemption may: the first signal's exit."""
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "s.txt"
    proc = _spawn(["sample", "--run", trained_run, "--chars", "100000000", "-o", target],
                  tmp_path)
    _wait_until(lambda: any(folder.iterdir()), proc)  # generating into a temp file beside it
    proc.send_signal(sig)
    proc.send_signal(sig)
    _, err = finish(proc)
    assert proc.returncode == code, err[-3000:]
    assert _last_line(err) == f"Error: stopped by {sig.name}"
    assert list(folder.iterdir()) == []


def test_a_swallowed_signal_still_stops_the_generation(trained_run, monkeypatch):
    """A signal landing while numpy.random was first imported (from Cython's start-up code)
    had its Signalled cleared there: sample went on for ever (a suite run timed out). The
    raise is remembered and the generation loop raises it again."""
    from textgen import SampleRequest, errors, load
    from textgen.sample import run_alone

    monkeypatch.setattr(errors, "_RAISED", [])
    gen = load(trained_run)
    request = SampleRequest(chars=10_000, seed=1)
    job = gen.job(request)
    errors.signalled(signal.SIGTERM)  # raised once and swallowed, as Cython's code does
    with pytest.raises(errors.Signalled) as raised:
        for _ in run_alone(gen.network, gen.vocab, job):
            pass
    assert raised.value.signum == signal.SIGTERM


def _long_sample(run, tmp_path, sig, disposition):
    """``sample -o`` of 10**8 characters, started with ``sig`` set to ``disposition`` (as a
    shell or nohup would), once it writes its temporary file: (the output folder, process)."""
    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "textgen", "sample", "--run", str(run),
                             "--chars", "100000000", "-o", str(folder / "s.txt")], cwd=tmp_path,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(sig, disposition))
    _wait_until(lambda: any(folder.iterdir()), proc)
    return folder, proc


@pytest.mark.parametrize("gap", [0.02, 0.05, 0.1])
def test_a_different_late_signal_keeps_the_first_exit(trained_run, tmp_path, gap):
    """SIGTERM then SIGINT tens of milliseconds later: the handlers were put back before the
    process ended, so the late SIGINT killed it (exit -2) instead of its 143."""
    folder, proc = _long_sample(trained_run, tmp_path, signal.SIGINT, signal.SIG_DFL)
    proc.send_signal(signal.SIGTERM)
    time.sleep(gap)
    proc.send_signal(signal.SIGINT)
    _, err = finish(proc)
    assert proc.returncode == 143, err[-3000:]
    assert list(folder.iterdir()) == []


def test_an_ignored_sighup_stays_ignored(trained_run, tmp_path):
    """Under nohup (SIGHUP ignored) a hang-up does not stop a command; SIGTERM still does."""
    folder, proc = _long_sample(trained_run, tmp_path, signal.SIGHUP, signal.SIG_IGN)
    proc.send_signal(signal.SIGHUP)
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=3)  # still generating
    proc.send_signal(signal.SIGTERM)
    _, err = finish(proc)
    assert proc.returncode == 143 and _last_line(err) == "Error: stopped by SIGTERM"
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("command", ["clean", "evaluate", "sample", "train"])
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_commands_stopped_by_a_signal_exit_128_plus_it(trained_run, tiny_corpus, tmp_path,
                                                       command, sig, code):
    """Issue 29.3: SIGINT to clean, evaluate, sample gave "Aborted!" (exit 1) or a
    traceback. The signal is sent once the command has started (TEXTGEN_FAULT)."""
    args = {"clean": ["clean", tiny_corpus, "-o", tmp_path / "o.txt"],
            "evaluate": ["evaluate", trained_run],
            "sample": ["sample", "--run", trained_run, "-o", tmp_path / "o.txt"],
            "train": ["train", tiny_corpus, "--out", tmp_path / "o.txt"]}[command]
    done = _run(args, tmp_path, TEXTGEN_FAULT=f"{sig.name[3:]}@command@{command}")
    assert done.returncode == code, done.stderr[-3000:]
    assert _last_line(done.stderr) == f"Error: stopped by {sig.name}"
    assert not (tmp_path / "o.txt").exists() and not temps_in(tmp_path)


@pytest.mark.parametrize("args, name", [
    (["clean", "{corpus}", "-o", "{out}/cleaned.txt"], "cleaned.txt"),
    (["export", "{run}", "-o", "{out}/page.html"], "page.html"),
    (["export", "{run}", "-o", "{out}/model.keras"], "model.keras"),
])
def test_sigterm_while_an_output_is_written_leaves_nothing(trained_run, tiny_corpus, tmp_path,
                                                           args, name):
    """Issue 29.9: SIGTERM during clean -o / export -o left .NAME.*.tmp in the user's folder.
    The signal arrives when the output is complete in its temp file, before the rename."""
    folder = tmp_path / "out"
    folder.mkdir()
    args = [a.format(corpus=tiny_corpus, run=trained_run, out=folder) for a in args]
    done = _run(args, tmp_path, TEXTGEN_FAULT=f"TERM@write@{name}")
    assert done.returncode == 143, done.stderr[-3000:]
    assert _last_line(done.stderr) == "Error: stopped by SIGTERM"
    assert list(folder.iterdir()) == []


SAVE_FLAGS = [*TINY_FLAGS, "--epochs", "2", "--steps-per-epoch", "4", "--save-every", "1",
              "--sample-every", "0"]


@pytest.mark.parametrize("sig, code", [("TERM", 143), ("INT", 130), ("HUP", 129)])
def test_a_second_signal_keeps_the_first_ones_exit(tiny_corpus, tmp_path, sig, code):
    """Issue 29.3: the second SIGTERM raised KeyboardInterrupt: "Aborted!", exit 1, which
    scripts/cloud/train.sh reads as bad input. Here the second one arrives inside the save
    the first one asked for: training stops at once, the last checkpoint stays."""
    out = tmp_path / "run"
    done = _run(["train", tiny_corpus, "--out", out, *SAVE_FLAGS], tmp_path,
                TEXTGEN_FAULT=f"{sig}@start@2,{sig}@written@2")
    assert done.returncode == code, done.stderr[-3000:]
    line = _last_line(done.stderr)
    assert line.startswith(f"Error: {out}: stopped by SIG{sig} twice") and "--resume" in line
    assert runs.read_weights(out / runs.LAST_WEIGHTS)[2]["step"] == 1
    assert temps_in(out) == []
    again = invoke(["train", tiny_corpus, "--out", out, "--resume"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "state.json").read_text())["steps_done"] == 8


def test_train_script_resumes_after_two_sigterms(tiny_corpus, tmp_path):
    """scripts/cloud/train.sh resumes after a doubled preemption signal (exit 143)."""
    wrapper = tmp_path / "textgen-once"
    wrapper.write_text(f"""#!/usr/bin/env bash
if [[ ! -e {tmp_path}/signalled ]]; then
  touch {tmp_path}/signalled
  export TEXTGEN_FAULT="TERM@start@2,TERM@written@2"
fi
exec {sys.executable} -m textgen "$@"
""")
    wrapper.chmod(0o755)
    run = tmp_path / "run"
    result = subprocess.run(["bash", str(REPO / "scripts" / "cloud" / "train.sh"), str(tiny_corpus),
                             str(run), *SAVE_FLAGS], cwd=tmp_path, capture_output=True, text=True,
                            env=_env(TEXTGEN=str(wrapper)), timeout=900)
    assert result.returncode == 0, result.stderr + (run / "train.log").read_text()[-3000:]
    assert "stopped (exit 143), resuming" in result.stderr
    assert json.loads((run / "state.json").read_text())["steps_done"] == 8


@pytest.mark.parametrize("resume", [False, True])
def test_a_signal_while_the_corpus_is_read_stops_before_writing(run_copy, tiny_corpus, tmp_path,
                                                               resume):
    """Ctrl-C while a large corpus is read: it went on to write the run folder first."""
    out = run_copy if resume else tmp_path / "new"
    before = files_of(run_copy)
    args = ["--resume", "--epochs", "3"] if resume else TINY_FLAGS
    done = _run(["train", tiny_corpus, "--out", out, *args], tmp_path,
                TEXTGEN_FAULT="INT@prepared@train")
    assert done.returncode == 130, done.stderr[-3000:]
    assert _last_line(done.stderr).endswith("stopped by SIGINT before training started; "
                                            "nothing was written")
    assert files_of(run_copy) == before and not (tmp_path / "new").exists()


def test_sighup_to_train_saves_and_exits_129(tiny_corpus, tmp_path):
    """A hang-up (a closed terminal) saves at the next step like SIGTERM (it killed before)."""
    out = tmp_path / "run"
    done = _run(["train", tiny_corpus, "--out", out, *SAVE_FLAGS], tmp_path,
                TEXTGEN_FAULT="HUP@saved@2")
    assert done.returncode == 129, done.stderr[-3000:]
    assert "stopped by SIGHUP with its checkpoint at step 3" in _last_line(done.stderr)
    assert runs.read_weights(out / runs.LAST_WEIGHTS)[2]["step"] == 3


# ----------------------------------------------------------------------------- 10. no JAX


def test_backend_without_its_framework_is_refused_before_anything_is_written(tiny_corpus,
                                                                             tmp_path):
    """Issue 29.10: config.json was written before Keras failed to start, so the folder was
    stuck. (tests/no_jax hides JAX as tests/no_tensorflow hides TensorFlow.)"""
    out = tmp_path / "run"
    path = os.pathsep.join([str(REPO / "tests" / "no_jax"), str(REPO)])
    done = _run(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--backend", "jax"], tmp_path,
                PYTHONPATH=path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert 'pip install "textgen[jax]"' in _last_line(done.stderr)
    assert not out.exists() and not (tmp_path / "checkpoints").exists()


# ----------------------------------------------------------------------------- 11. odd inputs


@pytest.mark.parametrize("command", ["clean", "train"])
def test_closed_stdin_is_one_line(tmp_path, command):
    out = tmp_path / "run"
    extra = f"--out {out} {' '.join(TINY_FLAGS)}" if command == "train" else ""
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m textgen {command} - {extra} <&-"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "<stdin>: standard input is closed" in _last_line(done.stderr)
    assert not out.exists()


def test_export_with_a_nonsense_keras_backend_is_one_line(trained_run, tmp_path):
    done = _run(["export", trained_run, "-o", tmp_path / "m.keras"], tmp_path,
                KERAS_BACKEND="nonsense")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "unknown backend 'nonsense'" in _last_line(done.stderr)
    assert not (tmp_path / "m.keras").exists()


def _limited_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))  # a regression fails fast


@pytest.mark.parametrize("content, message", [
    (None, "/dev/zero is over 1,000,000 bytes"),
    (b"caf\xe9 au lait", "byte 0xe9 at offset 3 is not UTF-8"),
    (b"ab\x00cd", "looks like a binary file (NUL byte at offset 2)"),
])
def test_classify_file_that_is_endless_latin1_or_binary(trained_run, tmp_path, content,
                                                        message):
    """Issue 29.11: /dev/zero was read until MemoryError; Latin-1 was a traceback. (Run with
    4 GB of address space, so that a regression fails fast instead of filling the machine.)"""
    path = Path("/dev/zero")
    if content is not None:
        path = tmp_path / "passage.txt"
        path.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "textgen", "classify", str(trained_run),
                           "--file", str(path)], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=_limited_memory)
    assert done.returncode == 2, done.stderr[-3000:]
    assert message in _last_line(done.stderr) and "--file" in done.stderr


# ----------------------------------------------------------------------------- 16. exports


def test_keras_export_prints_no_framework_banner(trained_run, tmp_path):
    env = {k: v for k, v in _env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "textgen", "export", str(trained_run), "-o",
                           str(tmp_path / "m.keras")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout.strip().endswith("m.keras")


def _tiny_disk(path: Path, size: str) -> None:
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                                            "tmpfs", str(path)], capture_output=True).returncode:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root and must be able to mount a tmpfs")
        pytest.skip("mounting a tmpfs needs root")


@pytest.mark.parametrize("name", ["page.html", "model.keras"])
def test_export_on_a_full_disk_exits_4_without_a_resume_hint(trained_run, tmp_path, name):
    """Issue 29.16: the .keras export exited 1, and the page's message said "resume"."""
    disk = tmp_path / "disk"
    _tiny_disk(disk, "8k")
    try:
        done = _run(["export", trained_run, "-o", disk / name], tmp_path)
        leftovers = list(disk.iterdir())
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
    assert done.returncode == 4, done.stderr[-3000:]
    line = _last_line(done.stderr)
    assert line.startswith("Error: no space left on ") and name in line
    assert "resume" not in line and leftovers == []


# ----------------------------------------------------------------------------- the adversarial pass
# Other streams, paths and sizes than the issue named.


@pytest.mark.parametrize("command", ["clean", "sample"])
def test_closed_stdout_is_one_line(trained_run, tiny_corpus, tmp_path, command):
    """`clean >&-` printed nothing and exited 0; `sample >&-` was a traceback."""
    args = (f"clean {tiny_corpus}" if command == "clean"
            else f"sample --run {trained_run} --chars 5")
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m textgen {args} >&-"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "standard output is closed" in _last_line(done.stderr)


def test_closed_stderr_trains_and_keeps_stdout_for_the_run_path(tiny_corpus, tmp_path):
    """With stderr closed, the first file opened took descriptor 2 (and the frameworks' log
    lines) and training failed silently; progress went to stdout."""
    out = tmp_path / "run"
    flags = " ".join([*TINY_FLAGS, "--sample-every", "0"])
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m textgen train {tiny_corpus} "
                           f"--out {out} {flags} 2>&-"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout == f"{out}\n", done.stdout[-3000:]
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 2


def test_sample_output_dash_is_stdout(trained_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["sample", "--run", trained_run, "--chars", "5", "--seed", "1", "-o", "-"])
    assert result.exit_code == 0 and len(result.stdout) == 6 and not Path("-").exists()


def test_non_utf8_run_folder_path_is_printed_as_its_bytes(tiny_corpus, tmp_path):
    out = tmp_path / os.fsdecode(b"run\xff")
    result = invoke(["train", tiny_corpus, "--out", out, *TINY_FLAGS, "--sample-every", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == os.fsencode(out) + b"\n"
    info = invoke(["info", out])
    assert info.exit_code == 0 and "run\\xff" in info.stdout


@pytest.mark.parametrize("to_file", [False, True])
def test_jsonl_record_of_a_non_utf8_run_path(trained_run, tmp_path, to_file):
    """The record's "run" field held a lone surrogate: UnicodeEncodeError on stdout and in
    -o FILE. Now JSON's \\udcff escape, which reads back as the same path."""
    run = Path(shutil.copytree(trained_run, tmp_path / os.fsdecode(b"run\xff")))
    out = tmp_path / "s.jsonl"
    done = _run(["sample", "--run", run, "--chars", "5", "--seed", "1", "--format", "jsonl",
                 *(["-o", out] if to_file else [])], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_bytes() if to_file else done.stdout.encode()
    assert json.loads(text)["run"] == str(run)


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


def _limit_1gb():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))


def test_out_of_memory_is_one_line(tmp_path):
    """2,000 records padded to a million characters each: 2 GB of text, under a 1 GB limit."""
    corpus = tmp_path / "many.jsonl"
    corpus.write_text('{"text": "a b"}\n' * 2000)
    done = subprocess.run([sys.executable, "-m", "textgen", "clean", str(corpus), "--pad-to",
                           "1000000", "-o", str(tmp_path / "out.txt")], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=300, preexec_fn=_limit_1gb)
    assert done.returncode == 1, done.stderr[-3000:]
    assert _last_line(done.stderr).startswith("Error: out of memory in textgen clean")
    assert list(tmp_path.iterdir()) == [corpus]


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


def test_checkpoint_with_unallocated_or_infinite_attributes_falls_back(run_copy, tiny_corpus):
    """last.h5 is checked like weights.h5; an epoch of inf is damage, not an OverflowError."""
    with h5py.File(run_copy / "last.h5", "a") as f:
        f.attrs["epoch"] = np.inf
    result = invoke(["train", tiny_corpus, "--out", run_copy, "--resume", "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "resumed from last.prev.h5" in result.stderr


# ----------------------------------------------------------------------------- 9. the ids cache


def test_a_failed_cache_write_leaves_no_temp_folder(tiny_corpus, tmp_path, monkeypatch):
    """Issue 29.9: .tmp-* folders piled up in the cache when a write failed."""
    from textgen import data
    from textgen.config import Config

    monkeypatch.setenv("TEXTGEN_CACHE_DIR", str(tmp_path / "cache"))

    def full_disk(path, array):
        Path(path).write_bytes(b"\x93NUMPY partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(data.np, "save", full_disk)
    prepared = data.prepare([str(tiny_corpus)], Config())
    assert len(prepared.ids) == len(TINY_TEXT) and not prepared.cached
    assert list((tmp_path / "cache").iterdir()) == []


def test_stale_cache_temp_folders_are_removed_on_the_next_store(tiny_corpus, tmp_path,
                                                                monkeypatch):
    from textgen import data
    from textgen.config import Config

    cache = tmp_path / "cache"
    monkeypatch.setenv("TEXTGEN_CACHE_DIR", str(cache))
    old, fresh = cache / ".tmp-old", cache / ".tmp-fresh"
    for folder in (old, fresh):
        folder.mkdir(parents=True)
        (folder / "ids.npy").write_bytes(b"partial")
    hour_ago = time.time() - 3600
    for p in (old / "ids.npy", old):
        os.utime(p, (hour_ago, hour_ago))
    data.prepare([str(tiny_corpus)], Config())
    names = sorted(p.name for p in cache.iterdir())
    assert ".tmp-old" not in names and ".tmp-fresh" in names  # another writer's may be live
    assert len([n for n in names if not n.startswith(".")]) == 1  # the entry itself


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
