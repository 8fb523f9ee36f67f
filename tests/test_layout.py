"""The code's shape: data flows one way through the modules, functions stay short, and only the
backend modules import a framework by name."""

import ast
from pathlib import Path

import textgen

PACKAGE = Path(textgen.__file__).parent
MAX_FUNCTION_LINES = 60

# Each module may import only modules of a lower rank (STYLE.md's stages, lowest first), inside
# functions too; a circle or an import back up fails. A package's __init__ is ranked by the
# package's name ("backends").
RANK = {
    "_version": 0, "errors": 0,
    "cells": 1,
    "config": 2,
    "vocab": 3, "corpus": 3, "sampling": 3,
    "windows": 4,
    "data": 5, "backends.base": 5,
    "backends.tensorflow": 6, "backends.jax": 6, "backends.torch": 6,
    "backends": 7, "runs": 7,
    "sample": 8,
    "score": 9, "baselines": 9, "model": 9, "devices": 9, "checkpoint": 9, "transfer": 9,
    "callbacks": 10, "classify": 10,
    "trainer": 11, "evaluate": 11, "gradcheck": 11, "plot": 11, "export": 11,
    "api": 12,
    "__init__": 13,
    "serve": 14,
    "cli": 15,
    "__main__": 16,
}
FRAMEWORKS = ("tensorflow", "jax", "torch")
# Where a framework may be imported by name: its backend module (and the top of nothing else).
FRAMEWORK_HOMES = {"backends.tensorflow": {"tensorflow"}, "backends.jax": {"jax"},
                   "backends.torch": {"torch"}}


def _module_id(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_id(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(me: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The textgen module ids an ImportFrom names (the module, or its names when they are
    modules themselves)."""
    if node.level:
        package = _module_id(path).split(".") if path.name == "__init__.py" and me != "__init__" \
            else me.split(".")[:-1]
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
    elif node.module and (node.module == "textgen" or node.module.startswith("textgen.")):
        base, node = [], ast.ImportFrom(module=node.module.removeprefix("textgen").lstrip(".")
                                        or None, names=node.names, level=1)
    else:
        return []
    prefix = [*base, *(node.module.split(".") if node.module else [])]
    found = []
    for alias in node.names:
        candidate = ".".join([*prefix, alias.name])
        found.append(candidate if candidate in RANK else ".".join(prefix) or "__init__")
    return found


def _imports(me: str, path: Path) -> set[str]:
    """The textgen modules a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            found.update(_resolve(me, path, node))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("textgen.") for a in node.names
                         if a.name.startswith("textgen."))
    return {m for m in found if m in RANK}


def _frameworks(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(FRAMEWORKS)


def test_every_module_has_a_rank():
    assert set(_modules()) == set(RANK), set(_modules()) ^ set(RANK)


def test_imports_only_go_down():
    wrong = []
    for me, path in _modules().items():
        for other in _imports(me, path):
            if other != me and RANK[other] >= RANK[me]:
                wrong.append(f"{me} (rank {RANK[me]}) imports {other} (rank {RANK[other]})")
    assert not wrong, wrong


def test_the_resolver_sees_relative_and_package_imports():
    modules = _modules()
    assert {"config", "errors", "windows", "backends.base"} <= _imports(
        "backends.tensorflow", modules["backends.tensorflow"])
    assert {"backends", "cells", "backends.base"} <= _imports("devices", modules["devices"])


def test_only_backend_modules_import_a_framework():
    wrong = []
    for me, path in _modules().items():
        extra = _frameworks(path) - FRAMEWORK_HOMES.get(me, set())
        if extra:
            wrong.append(f"{me} imports {', '.join(sorted(extra))}")
    assert not wrong, wrong


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
