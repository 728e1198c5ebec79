"""Benchmark scripts: figures and ratios printed side by side (`python -m benchmarks.<name> --help`); not tests."""
