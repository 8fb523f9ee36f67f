"""Make ``import NAME`` fail in this process as if NAME were not installed: used by the
sitecustomize.py of tests/no_jax and tests/no_tensorflow, which tests put on a child process's
PYTHONPATH (``importlib.util.find_spec`` still answers, as PyTorch's import machinery asks it
without importing)."""

import importlib.abc
import importlib.machinery
import sys


class _Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by the test)",
                                  name=spec.name)

    def exec_module(self, module):
        pass


class _Block(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name in self.names or name.startswith(tuple(f"{n}." for n in self.names)):
            return importlib.machinery.ModuleSpec(name, _Refuse())
        return None


def block(*names: str) -> None:
    sys.meta_path.insert(0, _Block(names))
