"""Benchmarks for the hub; run with `python -m bench.run ingest` (see README.md).

Never imported by the test suite except for tests/test_bench_smoke.py.
"""

from __future__ import annotations
