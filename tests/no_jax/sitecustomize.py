"""Put on PYTHONPATH by tests/test_faults.py: in that process ``import jax`` fails as if JAX were
not installed (as tests/no_tensorflow does for TensorFlow)."""

import importlib.abc
import importlib.machinery
import sys


class _Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by the test)",
                                  name=spec.name)

    def exec_module(self, module):
        pass


class _BlockJax(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("jax", "jaxlib") or name.startswith(("jax.", "jaxlib.")):
            return importlib.machinery.ModuleSpec(name, _Refuse())
        return None


sys.meta_path.insert(0, _BlockJax())
