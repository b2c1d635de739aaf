"""Benchmarks of the pipeline against a plain single-process loop (not part of the product)."""
