"""Benchmark tooling around ``conveyor bench``: peers, comparison, report (not a package
dependency; see benchmarks/README.md)."""
