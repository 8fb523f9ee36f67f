"""The code's shape: data flows one way through the modules, and functions stay short."""

import ast
from pathlib import Path

import textgen

PACKAGE = Path(textgen.__file__).parent
MAX_FUNCTION_LINES = 60

# Each module may import only modules of a lower rank (STYLE.md's stages, lowest first), inside
# functions too; a circle or an import back up fails.
RANK = {
    "_version": 0, "errors": 0,
    "config": 1,
    "vocab": 2, "corpus": 2,
    "windows": 3,
    "data": 4,
    "runs": 5,
    "sample": 6,
    "score": 7, "baselines": 7, "model": 7, "devices": 7, "checkpoint": 7,
    "transfer": 7,
    "callbacks": 8, "classify": 8,
    "train": 9, "evaluate": 9, "gradcheck": 9, "plot": 9, "export": 9,
    "__init__": 10,
    "cli": 11,
    "__main__": 12,
}


def _imports(path: Path) -> set[str]:
    """The textgen modules a module imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x: module x, or a name from the package front
                found.update(alias.name if alias.name in RANK else "__init__"
                             for alias in node.names)
            elif node.module and node.module.startswith("textgen."):
                found.add(node.module.split(".")[1])
            elif node.module == "textgen":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("textgen."))
    return found & set(RANK)


def test_every_module_has_a_rank():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules == set(RANK), modules ^ set(RANK)


def test_imports_only_go_down():
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        me = path.stem
        for other in _imports(path):
            if other != me and RANK[other] >= RANK[me]:
                wrong.append(f"{me} (rank {RANK[me]}) imports {other} (rank {RANK[other]})")
    assert not wrong, wrong


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long
