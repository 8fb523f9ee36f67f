"""The README documents every command and every option (and only real ones)."""

import re
from pathlib import Path

import click

from textgen.cli import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands():
    return sorted(cli.commands.items())


def test_every_command_and_option_is_in_the_readme():
    missing = []
    for name, command in _commands():
        if f"textgen {name}" not in README:
            missing.append(f"command {name}")
        for param in command.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    if opt.startswith("--") and not re.search(rf"{re.escape(opt)}(?![\w-])", README):
                        missing.append(f"{name} {opt}")
    assert not missing, missing


def test_readme_flags_exist():
    known = {opt for _, c in _commands() for p in c.params
             for opt in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
    known |= {"--help", "--version", "--traceback"}
    scripts = Path(__file__).resolve().parents[1] / "scripts" / "cloud"
    for script in scripts.glob("*.sh"):  # the cloud scripts' own flags
        known |= set(re.findall(r"--[a-z][a-z-]*", script.read_text()))
    mentioned = set(re.findall(r"`(--[a-z][a-z-]*)", README))
    assert mentioned - known == set()


def test_readme_opens_with_the_two_commands():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "textgen train corpora/tinyshakespeare.txt --config configs/quick.toml" in first_block
    assert 'pip install -e ".[test]" && python -m pytest -q' in first_block
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest -q' in ci
