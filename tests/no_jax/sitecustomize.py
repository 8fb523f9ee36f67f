"""Put on PYTHONPATH by tests/test_faults.py: in that process ``import jax`` fails as if JAX were
not installed (as tests/no_tensorflow does for TensorFlow)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from block_imports import block  # noqa: E402

block("jax", "jaxlib")
