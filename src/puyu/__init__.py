"""puyu: a toolkit for the whole life of an open large language model."""

__version__ = "0.1.0"
