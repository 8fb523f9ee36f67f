"""textgen: train character-level language models on your own text and generate from them.

The public Python API (the command line and the server are its clients); importing it imports
no framework (training imports the chosen one)::

    import textgen
    run = textgen.train("corpora/tinyshakespeare.txt", config="quick", max_minutes=1)
    run.plot()                                   # loss curves (inline in a notebook)
    print(run.evaluate())                        # held-out loss beside baselines
    gen = run.generator()                        # or textgen.load("checkpoints/latest")
    print(gen.generate(prime="ROMEO:", chars=200, temperature=0.5, seed=1))
    run.export("shakespeare.html")               # a web page; .keras: a Keras model

The names below are loaded on first use (PEP 562), so ``textgen --help`` does not pay for
NumPy.
"""

from typing import TYPE_CHECKING

from ._version import __version__

# name -> the module that defines it (imported on first use)
_HOMES = {
    "train": "api", "open_run": "api", "Run": "api", "Evaluation": "api", "Best": "api",
    "Recipe": "trainer", "Interrupted": "trainer",
    "load": "sample", "Generator": "sample", "Sample": "sample", "Batch": "sample",
    "SampleRequest": "sampling", "SamplingError": "sampling",
    "Config": "config", "page_html": "export",
    "TextgenError": "errors", "ConfigError": "errors", "CorpusError": "errors",
    "RunError": "errors", "PrimeError": "errors", "TrainingDiverged": "errors",
    "DiskFull": "errors",
}
__all__ = ["__version__", *_HOMES]

if TYPE_CHECKING:
    from .api import Best, Evaluation, Run, open_run, train
    from .config import Config
    from .errors import (ConfigError, CorpusError, DiskFull, PrimeError, RunError,
                         TextgenError, TrainingDiverged)
    from .export import page_html
    from .sample import Batch, Generator, Sample, load
    from .sampling import SampleRequest, SamplingError
    from .trainer import Interrupted, Recipe


def __getattr__(name: str):
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'textgen' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
