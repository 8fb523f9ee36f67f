"""Put on PYTHONPATH by tests/test_backends.py: in that process ``import tensorflow`` fails as if
TensorFlow were not installed (``importlib.util.find_spec`` still answers, as PyTorch's import
machinery asks it without importing)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from block_imports import block  # noqa: E402

block("tensorflow")
