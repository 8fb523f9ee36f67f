import json
from pathlib import Path

import pytest

from textgen.config import Config, merge, resolve
from textgen.errors import ConfigError

from .conftest import TINY_FLAGS, invoke


def test_defaults_are_the_design_card():
    c = Config()
    assert (c.model.cell, c.model.layers, c.model.units, c.model.dropout) == ("lstm", 2, 128, 0.2)
    assert (c.train.optimizer, c.train.lr) == ("rmsprop", 0.01)
    assert (c.window.window, c.window.step, c.window.val_split) == (40, 3, 0.1)
    assert c.window.batch_size == 128


def test_default_toml_matches_builtin_defaults():
    from textgen.config import load_toml

    default = Path(__file__).resolve().parents[1] / "configs" / "default.toml"
    assert merge(Config(), load_toml(default), "default.toml") == Config()


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs")
                                         .glob("*.toml")), ids=lambda p: p.name)
def test_bundled_configs_resolve_and_round_trip(path):
    """Every config in configs/ is valid, and a run's config.json of it rebuilds it."""
    config = resolve(path, {})
    assert Config.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_precedence_default_toml_flag(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nunits = 64\nlayers = 3\n[train]\nlr = 0.002\n")
    c = resolve(toml, {"model": {"units": 32, "layers": None}})
    assert c.model.units == 32  # flag beats TOML
    assert c.model.layers == 3  # TOML beats default
    assert c.train.lr == 0.002
    assert c.model.dropout == 0.2  # default kept


@pytest.mark.parametrize("toml, message", [
    ("[model]\nunit = 3\n", "unknown key"),
    ("[modle]\nunits = 3\n", "unknown section"),
    ("[model]\nunits = 'many'\n", "must be an integer"),
    ("[model]\ncell = 'transformer'\n", "model.cell must be one of"),
    ("[window]\nval_split = 1.5\n", "val_split"),
    ("[model\n", "invalid TOML"),
])
def test_bad_config_files(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        resolve(path, {})


def test_cli_precedence_is_recorded_in_run_folder(tmp_path, tiny_corpus):
    toml = tmp_path / "c.toml"
    toml.write_text("[model]\nunits = 12\ndropout = 0.3\n[window]\nwindow = 20\n")
    out = tmp_path / "run"
    result = invoke(["train", tiny_corpus, "--config", toml, "--out", out, *TINY_FLAGS,
                     "--units", "10", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / "config.json").read_text())["config"]
    assert recorded["model"]["units"] == 10  # flag
    assert recorded["model"]["dropout"] == 0.3  # TOML
    assert recorded["window"]["window"] == 16  # flag (TINY_FLAGS) beats TOML's 20
    assert recorded["model"]["layers"] == 2  # default
    assert recorded["train"]["seed"] == 7


def test_config_error_is_one_line_exit_1(tmp_path, tiny_corpus):
    result = invoke(["train", tiny_corpus, "--config", tmp_path / "missing.toml"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "config file not found" in result.output


def test_a_preset_name_is_looked_up_in_configs(tmp_path, monkeypatch):
    """--config quick (and textgen.train(config="quick")) read configs/quick.toml."""
    from textgen.config import preset_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "shout.toml").write_text("[clean]\nlowercase = true\n")
    (tmp_path / "c.txt").write_text("The Cat SAT\n" * 20)
    assert preset_path("shout") == Path("configs/shout.toml")
    assert preset_path("nothing") == Path("nothing")  # not a preset: a path, refused later
    result = invoke(["clean", tmp_path / "c.txt", "--config", "shout", "-o", tmp_path / "o.txt"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.txt").read_text().startswith("the cat sat")
