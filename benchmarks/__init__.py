"""Benchmarks for ``make bench``: each ``bench_*.py`` module exposes ``run() -> dict``.

See :mod:`benchmarks.run` for the result format and how docs/benchmarks.md is written.
"""
