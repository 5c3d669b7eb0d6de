"""Benchmarks (``dcl-cstp bench ...``): measured with scripts, never with timed tests."""
