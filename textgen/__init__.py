"""textgen: train character-level language models on your own text and generate from them.

Importing textgen does not import TensorFlow; only training does. For scripts::

    import textgen
    text = textgen.load("checkpoints/latest").generate(prime="ROMEO:", chars=200, temperature=0.5)
"""

__version__ = "0.1.0"


def load(run_dir="checkpoints/latest"):
    """Open a run folder for generation; see ``textgen.sample.Generator``."""
    from .sample import load as _load

    return _load(run_dir)


__all__ = ["__version__", "load"]
