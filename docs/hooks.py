"""MkDocs hooks for the textgen site (mkdocs.yml `hooks:`; not a page: `exclude_docs`).

mkdocs-click copies a command's help text into the page line by line, so Click's ``\\b``
paragraphs (the example commands each docstring ends with, kept unwrapped by Click) would run
together into one Markdown paragraph. Here they become code blocks, as `--help` shows them,
and flags named in the prose are set as code.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator

import click

FLAG = re.compile(r"(?<![\w`-])(--[a-z][a-z0-9-]*)")


def _description(ctx: click.Context, remove_ascii_art: bool = False) -> Iterator[str]:
    help_string = ctx.command.help or ctx.command.short_help
    if not help_string:
        return
    for paragraph in re.split(r"\n[ \t]*\n", inspect.cleandoc(help_string)):
        lines = paragraph.splitlines()
        if lines and lines[0].strip() == "\b":  # Click: keep this paragraph as written
            yield "```text"
            yield from lines[1:]
            yield "```"
        else:  # prose: flags as code (outside code spans), so no line breaks inside one
            parts = paragraph.split("`")
            parts[::2] = [FLAG.sub(r"`\1`", part) for part in parts[::2]]
            yield from "`".join(parts).splitlines()
        yield ""


def on_startup(command: str, dirty: bool) -> None:
    from mkdocs_click import _docs

    _docs._make_description = _description
