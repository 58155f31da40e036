"""Benchmark of the ML Event Bridge: raw aiokafka pass-through vs the full bridge, on the local test broker.

Run it with ``make bench`` or ``python -m bench.run [--events N]``; see BENCHMARKS.md for what is measured
and how.
"""
