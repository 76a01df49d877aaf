"""Benchmarks: run with `python -m bench.<name>`; see docs/benchmarks.md."""
