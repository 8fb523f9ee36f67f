"""textgen: train character-level language models on your own text and generate from them.

The public Python API; importing it does not import TensorFlow (only training does)::

    import textgen
    gen = textgen.load("checkpoints/latest")
    text = gen.generate(prime="ROMEO:", chars=200, temperature=0.5)
    samples = gen.sample(textgen.SampleRequest(prime="ROMEO:", chars=200, n=3, seed=1))

The names below are loaded on first use (PEP 562), so ``textgen --help`` does not pay for
NumPy.
"""

from typing import TYPE_CHECKING

from ._version import __version__

# name -> the module that defines it (imported on first use)
_HOMES = {"Generator": "sample", "Sample": "sample", "load": "sample", "Batch": "sample",
          "SampleRequest": "sampling", "SamplingError": "sampling",
          "TextgenError": "errors", "PrimeError": "errors", "page_html": "export"}
__all__ = ["__version__", *_HOMES]

if TYPE_CHECKING:
    from .errors import PrimeError, TextgenError
    from .export import page_html
    from .sample import Batch, Generator, Sample, load
    from .sampling import SampleRequest, SamplingError


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'textgen' has no attribute {name!r}")
