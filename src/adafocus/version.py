"""The package version (one place: the wheel metadata and model files read it)."""

__version__ = "0.1.0"
