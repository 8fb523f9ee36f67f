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

__all__ = ["__version__", "Generator", "Sample", "SampleRequest", "load"]

if TYPE_CHECKING:
    from .sample import Generator, Sample, SampleRequest, load


def __getattr__(name: str):
    if name in __all__:
        from . import sample

        return getattr(sample, name)
    raise AttributeError(f"module 'textgen' has no attribute {name!r}")
