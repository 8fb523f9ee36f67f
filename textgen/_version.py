"""The version string, importing nothing, so every module (and setup.cfg) may read it."""

__version__ = "0.2.0"
