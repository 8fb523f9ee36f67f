"""Put on PYTHONPATH by tests/test_backends.py: in that process ``import tensorflow`` fails as if
TensorFlow were not installed (``importlib.util.find_spec`` still answers, as PyTorch's import
machinery asks it without importing)."""

import importlib.abc
import importlib.machinery
import sys


class _Refuse(importlib.abc.Loader):
    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by the test)",
                                  name=spec.name)

    def exec_module(self, module):
        pass


class _BlockTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, _Refuse())
        return None


sys.meta_path.insert(0, _BlockTensorFlow())
