"""Benchmarks (not tests): ``python -m adafocus.bench.data``."""
