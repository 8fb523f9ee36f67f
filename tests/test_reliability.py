"""Bad input and hostile run folders: clear one-line errors, nothing a user has is lost."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from textgen import runs

from .conftest import TINY_FLAGS, invoke


@pytest.mark.parametrize("target", ["config.json", "log.csv", "steps.csv", "weights.h5",
                                    ".last.h5.new", "state.json", "samples.txt"])
def test_full_disk_at_every_write_keeps_what_was_there(run_copy, tiny_corpus, monkeypatch,
                                                       target):
    out = run_copy
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    real_write = runs.write_file

    def full_disk(path, data):
        if Path(path).name.startswith(f".{target}."):  # the temp file beside the target
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(runs, "write_file", full_disk)
    result = invoke(["train", tiny_corpus, "--out", out, "--resume", "--epochs", "3",
                     "--sample-every", "1"])
    assert result.exit_code == 4, result.output
    assert "no space left on" in result.stderr and target.strip(".").removesuffix(".new") in \
        result.stderr
    assert len(result.stderr.strip().splitlines()[-1]) < 300 and "Traceback" not in result.output
    for name in ("last.h5", "weights.h5", "vocab.json", "corpus.json"):
        if target.strip(".").startswith(name):  # the file being written keeps its old bytes
            assert (out / name).read_bytes() == before[name]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    monkeypatch.setattr(runs, "write_file", real_write)  # space freed: the run resumes
    again = invoke(["train", tiny_corpus, "--out", out, "--resume", "--epochs", "3"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 3


def _edit_config(run, edit):
    doc = json.loads((run / "config.json").read_text())
    edit(doc)
    (run / "config.json").write_text(json.dumps(doc))


def test_incompatible_run_format_is_refused(run_copy, tiny_corpus):
    out = run_copy
    _edit_config(out, lambda d: d.update(version=99, textgen="9.0"))
    for args in (["sample", "--run", out, "--chars", "5"], ["info", out]):
        result = invoke(args)
        assert result.exit_code == 1 and "format 99 (textgen 9.0) is not supported" in result.output


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["config"]["model"].update(cell="Lambda"), "model.cell must be one of"),
    (lambda d: d["config"].update(module={"name": "os"}), "unknown section"),
    (lambda d: d["config"]["model"].update(activation="eval"), "unknown key"),
])
def test_config_naming_unknown_layers_or_modules_is_refused(run_copy, tiny_corpus, edit, message):
    out = run_copy
    _edit_config(out, edit)
    result = invoke(["sample", "--run", out, "--chars", "5"])
    assert result.exit_code == 1 and message in result.output


def test_weights_file_that_is_not_textgen_is_refused(run_copy, tiny_corpus):
    out = run_copy
    import h5py

    with h5py.File(out / "weights.h5", "w") as f:  # e.g. a Keras .h5 put in its place
        f.create_dataset("model_weights", data=np.zeros(3))
    result = invoke(["sample", "--run", out, "--chars", "5"])
    assert result.exit_code == 1 and "not a textgen weights file" in result.output


def test_large_vocabulary_cjk_and_emoji_trains_and_samples(tmp_path):
    rng = np.random.default_rng(0)
    alphabet = [chr(0x4E00 + i) for i in range(400)] + [chr(0x1F600 + i) for i in range(40)]
    text = "".join(rng.choice(alphabet, size=3000)) + "".join(alphabet)
    corpus = tmp_path / "cjk.txt"
    corpus.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    result = invoke(["train", corpus, "--out", out, *TINY_FLAGS])
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "vocab.json").read_text())["chars"]) == 440
    sample = invoke(["sample", "--run", out, "--chars", "30", "--seed", "1", "--prime", "\U0001F600"])
    assert sample.exit_code == 0 and set(sample.stdout.strip()) <= set(alphabet)


def test_best_weights_are_not_replaced_by_worse_after_restart(run_copy, tiny_corpus):
    out = run_copy
    _, _, attrs = runs.read_weights(out / "weights.h5")
    best_before = attrs["loss"]
    last = runs.read_weights(out / "last.h5")[2]
    assert last["best"] == best_before  # the best value travels with the checkpoint
    assert invoke(["train", tiny_corpus, "--out", out, "--resume", "--epochs", "4"]).exit_code == 0
    log = (out / "log.csv").read_text().splitlines()[1:]
    val_losses = [float(row.split(",")[3]) for row in log]
    _, _, attrs = runs.read_weights(out / "weights.h5")
    assert attrs["loss"] == pytest.approx(min(val_losses))
    assert attrs["loss"] <= best_before


def test_whitespace_only_corpus(tmp_path):
    corpus = tmp_path / "blank.txt"
    corpus.write_text("   \n\n\t  \n")
    result = invoke(["train", corpus, "--out", tmp_path / "run"])
    assert result.exit_code == 1 and "empty or only whitespace" in result.output
    assert not (tmp_path / "run").exists()
