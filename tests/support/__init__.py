"""Helpers of the tests and benchmarks (not part of the product): importable as ``support.*``."""
