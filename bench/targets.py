"""The benchmark targets' numbers, defined once: the cases record against them, the report checks.

Speed targets live here and in `python -m bench.report --check`, never in timed tests.
"""

from __future__ import annotations

# Capacity: every full-sweep size joins within this many seconds.
CAPACITY_CLIENTS = (1000, 10000)
JOIN_TARGET_S = 10.0
# TLS beside plain in the same run (bench/test_tls.py): burst fan-out over TLS at least this share
# of plain, paced p99 over TLS at most this many times plain, this many TLS clients joined within
# TLS_JOIN_TARGET_S, nothing lost in any TLS case.
TLS_BURST_VS_PLAIN_MIN = 0.5
TLS_PACED_P99_VS_PLAIN_MAX = 1.3
TLS_JOIN_CLIENTS = 10000
TLS_JOIN_TARGET_S = 30.0
# Rate sweep: the default server keeps up (delivers this share of the offered rate) at each rate.
REQUIRED_RATES_PER_S = (1000, 2000, 4000, 8000)
KEPT_UP_FRACTION = 0.9

# Hostile clients (issue 9), measured with the default server at --quiet, each beside the same
# run without the attacker (bench/test_hostile_*.py, judged by bench/report_hostile.py).
# Flood: one client floods at wire speed while this many chat at this rate each.
FLOOD_CHATTERS = 50
FLOOD_CHAT_RATE_PER_S = 10.0
FLOOD_P99_VS_CALM_MAX = 2.0  # the chatters' p99 at most this many times the run without flooder
FLOOD_HELD_MARGIN = 1.1  # the flooder's fan-out rate past its burst, at most this x --flood-rate
# Burst: this many readers, one sender, this many bytes of 1000-byte lines.
BURST_READERS = 30
BURST_BYTES = 50_000_000
BURST_LINE_BYTES = 1000
# Memory: this many clients spam /help and never read; RSS stays under baseline + the budget.
MEMORY_SPAMMERS = 100
# Lock-out: silent and dribbling connections from 127.0.0.2 and up; every legitimate client from
# 127.0.0.1 joins within this many seconds.
LOCKOUT_SILENT = 9000
LOCKOUT_DRIBBLING = 5000
LOCKOUT_LEGIT_TRIES = 10
LOCKOUT_JOIN_TARGET_S = 1.0
# Mass disconnect: this many clients leave at once; a message between two others arrives within
# MASS_MESSAGE_TARGET_MS, and SIGTERM during it exits 0 within MASS_SIGTERM_TARGET_S.
MASS_CLIENTS = 10000
MASS_MESSAGE_TARGET_MS = 500.0
MASS_SIGTERM_TARGET_S = 2.0

# The cluster dimension (issue 13): the same cases against one node and two on Redis, same run
# (bench/test_cluster*.py, judged by bench/report_cluster.py).
CLUSTER_PACED_P99_VS_SINGLE_MAX = 1.5  # paced 100 msg/s to 500 clients: p99 at most this x 1 node
CLUSTER_CLIENTS = 20000  # in one room over two nodes, joined within CLUSTER_JOIN_TARGET_S
CLUSTER_JOIN_TARGET_S = 20.0
CLUSTER_BACK_TARGET_S = 2.0  # Redis restarted: every node's clients told the bus is back within
# A SIGKILLed node's names are free again within its lease (chat/bus_names.py LEASE_S) plus one
# heartbeat (chat/bus.py HEARTBEAT_S), in which the others see that it expired; from the kill.
CLUSTER_LEASE_S = 5.0
CLUSTER_NAME_FREE_TARGET_S = CLUSTER_LEASE_S + 0.5
