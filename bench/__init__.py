"""Benchmark suite: a client swarm, an asyncio peer server and the cases that compare servers.

Run `pytest bench/ --benchmark-only` for the full sweep and `python -m bench.report
results/bench.json` for the report; docs/BENCHMARKS.md says what each case measures.
"""
