"""textgen: train character-level language models on your own text and generate from them.

The public Python API; importing it does not import TensorFlow (only training does)::

    import textgen
    gen = textgen.load("checkpoints/latest")
    text = gen.generate(prime="ROMEO:", chars=200, temperature=0.5)
    samples = gen.sample(textgen.SampleRequest(prime="ROMEO:", chars=200, n=3, seed=1))
"""

from ._version import __version__
from .sample import Generator, Sample, SampleRequest, load

__all__ = ["__version__", "Generator", "Sample", "SampleRequest", "load"]
