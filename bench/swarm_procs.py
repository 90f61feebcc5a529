"""Swarms in processes of their own: one per node, for rooms bigger than one process's files.

A process may hold only so many sockets (the open-files limit here is 20,000), so 20,000 clients
over two nodes are two swarm processes, each with the clients of one node. `SwarmProcess` runs
a `Swarm` in a child process (multiprocessing, spawned: nothing of the parent's epoll or
threads comes along) and does what the parent asks over a pipe: join, then a window in which
its own senders send and lines from the other processes' senders are expected, then the check.
Every call is bounded; `close` ends the child (terminated, by its PID, if it does not go).
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import Any

from bench.swarm import SenderPlan, Swarm

REPLY_MARGIN_S = 30.0
CLOSE_TIMEOUT_S = 10.0


def _serve(conn: Connection, address: tuple[str, int], prefix: str) -> None:
    """The child: a swarm of `address`, driven by the parent's requests until `close`."""
    swarm = Swarm(address, prefix)
    try:
        while True:
            request, args = conn.recv()
            if request == "close":
                break
            try:
                conn.send(("ok", _handle(swarm, request, args)))
            except Exception as exc:  # the parent raises it, with what it was
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        swarm.close()
        conn.close()


def _handle(swarm: Swarm, request: str, args: dict[str, Any]) -> Any:
    if request == "connect":
        report = swarm.connect(args["count"], timeout_s=args["timeout_s"])
        swarm.settle(quiet_s=0.5, timeout_s=args["timeout_s"])
        return {**asdict(report), "names": [c.name for c in swarm.clients]}
    if request == "window":
        swarm.begin_window()
        for name, count in args["foreign"].items():
            swarm.expect_from(name, count)
        return None
    if request == "drive":
        plans = [SenderPlan(*plan) for plan in args["plans"]]
        report = swarm.drive(plans, args["timeout_s"])
        verdict = swarm.verify()
        return {
            **asdict(report),
            "verdict": {k: getattr(verdict, k) for k in VERDICT_COUNTS},
            "latencies_ns": verdict.latencies_ns,
        }
    raise ValueError(f"unknown request {request!r}")


VERDICT_COUNTS = ("expected", "delivered", "lost", "duplicates", "out_of_order", "unexpected")


class SwarmProcess:
    """A swarm of one node in a child process of its own."""

    def __init__(self, address: tuple[str, int], prefix: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, address, prefix), name=f"swarm-{prefix}", daemon=True
        )
        self.process.start()
        child.close()
        self.pending: str | None = None

    def ask(self, request: str, **args: Any) -> None:
        """Send a request; `answer` waits for what it gives."""
        self.conn.send((request, args))
        self.pending = request

    def answer(self, timeout_s: float) -> Any:
        """The pending request's result; RuntimeError if it failed or took too long."""
        if not self.conn.poll(timeout_s + REPLY_MARGIN_S):
            raise RuntimeError(f"swarm process gave no answer to {self.pending!r} in time")
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"swarm process, {self.pending!r}: {value}")
        return value

    def close(self) -> None:
        """Ask the child to close its clients and end; terminate it (by PID) if it does not."""
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        try:
            self.conn.send(("close", {}))
        except OSError:
            pass
        self.process.join(max(0.0, deadline - time.monotonic()))
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(CLOSE_TIMEOUT_S)
        self.conn.close()
