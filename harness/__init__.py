"""The harness: start and stop a server process, find a free port, talk to a server as a peer.

Shared by tests/, bench/ and loadtest/run.py, so each of these pieces exists once; chat/ never
imports it. `harness.process` launches a server and waits for its `listening on HOST:PORT` line,
`harness.ports` finds a free port, `harness.peer` is a raw-socket client with deadlines,
`harness.latency` summarises latencies with HdrHistogram (bench and the load test, mergeable).
"""

from harness.peer import Peer
from harness.ports import free_port
from harness.process import (
    ServerProcess,
    chat_server_command,
    start_chat_server,
    start_process,
)

__all__ = [
    "Peer",
    "ServerProcess",
    "chat_server_command",
    "free_port",
    "start_chat_server",
    "start_process",
]
