"""The docs hold to the code: every command and option is documented in a hand-written page,
every shell command shown in the docs or the README is real (its command, its flags, the
repository files it names), and the README stays a short introduction."""

import re
import shlex
from pathlib import Path

import click

import textgen
from textgen.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
# Pages made from the code or included from elsewhere: they do not count as documentation.
GENERATED_PAGES = {"cli.md", "python-api.md", "changelog.md"}
TABLE = re.compile(r"<!-- table:[a-z0-9-]+ -->\n.*?<!-- /table -->", re.S)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL = {"bash", "sh", "shell", "console"}
# Paths under these folders named in a command must exist in the repository.
REPO_DIRS = ("corpora/", "configs/", "scripts/", "bench/", ".ci/", "docs/")
# Flags of other tools that the docs show (pip, pytest, mkdocs, chromium, setup.sh's venv).
OTHER_TOOLS_FLAGS = {"--no-deps", "--strict", "--dist", "--headless", "--no-sandbox",
                     "--virtual-time-budget", "--dump-dom", "--system-site-packages"}


def _pages():
    return [p for p in sorted(DOCS.rglob("*.md")) if p.name not in GENERATED_PAGES]


def _prose(text: str) -> str:
    """A page without its generated tables (figures, not documentation)."""
    return TABLE.sub("", text)


HANDWRITTEN = "\n".join(_prose(p.read_text(encoding="utf-8")) for p in _pages())


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in [*getattr(p, "opts", []),
                                                *getattr(p, "secondary_opts", [])]}


COMMANDS = dict(cli.commands)
GLOBAL_OPTIONS = _options(cli) | {"--help", "-h", "--version"}


def _script_flags(path: Path) -> set[str]:
    """The long flags a script's source spells (argparse options, a shell script's case arms)."""
    return set(re.findall(r"--[a-z][a-z0-9-]*", path.read_text(encoding="utf-8")))


def test_every_command_and_option_is_in_the_handwritten_docs():
    missing = []
    for opt in sorted(_options(cli)):
        if opt.startswith("--") and not re.search(rf"{re.escape(opt)}(?![\w-])", HANDWRITTEN):
            missing.append(f"textgen {opt}")
    for name, command in sorted(COMMANDS.items()):
        if f"textgen {name}" not in HANDWRITTEN:
            missing.append(f"command {name}")
        for param in command.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and not re.search(rf"{re.escape(opt)}(?![\w-])",
                                                          HANDWRITTEN):
                    missing.append(f"{name} {opt}")
    assert not missing, f"not in any hand-written page of docs/: {missing}"


# ------------------------------------------------------------------------ shell commands shown

def _shell_blocks(text: str) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang in SHELL]


def _commands_in(block: str) -> list[list[str]]:
    """Each simple command of a shell block as its words, without leading VAR=value
    assignments; continuation lines joined, comments dropped, split at && || | ;."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words = []
        for token in lexer:
            if token in {"&&", "||", "|", ";", "(", ")", "<", ">"}:
                commands.append(words)
                words = []
            else:
                words.append(token)
        commands.append(words)
    out = []
    for words in commands:
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]
        if words:
            out.append(words)
    return out


def _flags(words: list[str]) -> list[str]:
    """The flags among ``words`` (a quoted value such as "--units 256" is not one)."""
    return [w.split("=", 1)[0] for w in words if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", w)]


def _check_textgen(words: list[str], where: str) -> list[str]:
    rest = list(words)
    while rest and rest[0] in GLOBAL_OPTIONS:
        rest = rest[1:]
    if not rest:
        return []
    name, args = rest[0], rest[1:]
    if name not in COMMANDS:
        return [f"{where}: `textgen {name}` is not a command"]
    known = _options(COMMANDS[name]) | {"--help", "-h"}
    return [f"{where}: `textgen {name}` has no option {f}" for f in _flags(args) if f not in known]


def _check_script(words: list[str], where: str) -> list[str]:
    """scripts/cloud/*.sh: their own flags, and train.sh / sample.sh pass the rest to
    textgen train / sample; python bench/X.py and scripts/X.py: the flags their source spells."""
    path = ROOT / words[0]
    if not path.is_file():
        return [f"{where}: {words[0]} does not exist"]
    known = _script_flags(path) | {"--help", "-h"}
    for script, command in (("train.sh", "train"), ("sample.sh", "sample")):
        if path.name == script:
            known |= _options(COMMANDS[command])
    return [f"{where}: {words[0]} has no option {f}" for f in _flags(words[1:]) if f not in known]


def _check_command(words: list[str], where: str) -> list[str]:
    problems = [f"{where}: {w} does not exist" for w in words
                if w.startswith(REPO_DIRS) and not (ROOT / w.rstrip("/")).exists()
                and "*" not in w]
    if words[0] == "textgen":
        return problems + _check_textgen(words[1:], where)
    if words[0] in ("python", "python3") and words[1:3] == ["-m", "textgen"]:
        return problems + _check_textgen(words[3:], where)
    if words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        return problems + _check_script(words[1:], where)
    if words[0].startswith("scripts/"):
        return problems + _check_script(words, where)
    return problems


def _shown_commands():
    for path in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        for block in _shell_blocks(path.read_text(encoding="utf-8")):
            for words in _commands_in(block):
                yield path.relative_to(ROOT), words


def test_shell_commands_shown_are_real():
    shown = list(_shown_commands())
    assert sum(1 for _, w in shown if w[0] == "textgen") > 50, "the parser finds too few"
    problems = [p for where, words in shown for p in _check_command(words, str(where))]
    assert not problems, problems


def test_the_command_checker_catches_what_it_should():
    bad = ["textgen trian corpora/tinyshakespeare.txt",
           "textgen sample --temprature 0.5",
           "textgen train corpora/nosuch.txt",
           "scripts/cloud/train.sh corpora/tinyshakespeare.txt RUN --no-such-flag",
           "python bench/quality.py --minuets 5"]
    for line in bad:
        (words,) = _commands_in(line)
        assert _check_command(words, "x"), line
    (words,) = _commands_in("X=1 textgen train corpora/tinyshakespeare.txt --config quick "
                            "--max-minutes 3  # a comment --nonsense")
    assert words[0] == "textgen" and not _check_command(words, "x")


def test_flags_named_in_prose_exist():
    known = GLOBAL_OPTIONS | OTHER_TOOLS_FLAGS
    known |= {o for c in COMMANDS.values() for o in _options(c)}
    for path in [*(ROOT / "scripts" / "cloud").glob("*.sh"), *(ROOT / "bench").glob("*.py")]:
        known |= _script_flags(path)
    texts = [README, *(p.read_text(encoding="utf-8") for p in DOCS.rglob("*.md"))]
    mentioned = {f for t in texts for f in re.findall(r"`(--[a-z][a-z0-9-]*[a-z0-9])", t)}
    assert mentioned - known == set()


def test_every_public_name_has_an_api_entry():
    page = (DOCS / "python-api.md").read_text(encoding="utf-8")
    missing = [n for n in textgen.__all__ if not n.startswith("_")
               and not re.search(rf"^::: textgen\.{n}$", page, re.M)]
    assert not missing, f"docs/python-api.md lacks a `::: textgen.NAME` line for {missing}"


# ------------------------------------------------------------------------ the README

def test_readme_opens_with_the_two_commands():
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "textgen train corpora/tinyshakespeare.txt --config configs/quick.toml" in first_block
    assert 'pip install -e ".[test]" && python -m pytest -q' in first_block
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[test]" && python -m pytest -q' in ci


def test_readme_is_a_short_introduction():
    lines = README.splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; at most 250"
    head = "\n".join(lines[:40])
    assert "pip install . && textgen train corpora/tinyshakespeare.txt" in head
    assert 'pip install -e ".[test]" && python -m pytest' in head
    assert "textgen sample" in head
    dated = re.findall(r"20\d\d-\d\d-\d\d", TABLE.sub("", README))
    assert not dated, f"dated history belongs in the records and the changelog: {dated}"


def test_readme_links_and_images_exist():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"^[a-z]+://", t)]
    assert local, "the README links into docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, missing
