"""Benchmarks for sd-allocator (`make bench`); see bench/run.py."""
