"""The benchmark targets' numbers, defined once: the cases record against them, the report checks.

Speed targets live here and in `python -m bench.report --check`, never in timed tests.
"""

from __future__ import annotations

# Capacity: every full-sweep size joins within this many seconds.
CAPACITY_CLIENTS = (1000, 10000)
JOIN_TARGET_S = 10.0
# Rate sweep: the default server keeps up (delivers this share of the offered rate) at each rate.
REQUIRED_RATES_PER_S = (1000, 2000, 4000, 8000)
KEPT_UP_FRACTION = 0.9
