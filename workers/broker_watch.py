"""Which Kafka brokers are up, seen from this worker: a TCP connect to each one, every `interval`.

The producer's own metadata cannot tell: with two of three KRaft nodes dead the survivor has no
quorum, so its metadata keeps listing the dead brokers as live and in the ISR, and an acks=all
produce just waits out its timeout. A refused connection is a fact known within one interval.

`writable` is False only when fewer brokers answer than the topic's min.insync.replicas: then no
acks=all write can succeed and the facade answers 503 at once. One broker down (a leader failover)
leaves enough brokers, so POSTs keep waiting for the new leader instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from supervisor.probes import tcp_port_open

log = logging.getLogger(__name__)

Address = tuple[str, int]


def parse_bootstrap(bootstrap_servers: str) -> list[Address]:
    """'h1:p1,h2:p2' -> [(h1, p1), (h2, p2)]; ValueError naming a bad entry."""
    addresses = []
    for item in bootstrap_servers.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"bad Kafka bootstrap address {item.strip()!r} (expected host:port)")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


class BrokerWatch:
    """Counts the brokers accepting connections; wakes waiters when writes become impossible."""

    def __init__(self, addresses: Callable[[], list[Address]], min_live: int, *, interval: float = 0.5,
                 connect_timeout: float = 1.0) -> None:
        self._addresses = addresses
        self.min_live = min_live
        self.interval = interval
        self.connect_timeout = connect_timeout
        self.live: list[Address] = []
        self.known: list[Address] = []
        self.probed = False
        self._unwritable = asyncio.Event()

    @property
    def writable(self) -> bool:
        """Until the first probe, assume yes."""
        return not self.probed or len(self.live) >= self.min_live

    def describe(self) -> str:
        return (f"only {len(self.live)} of {len(self.known)} Kafka brokers reachable; "
                f"an acks=all write needs min.insync.replicas={self.min_live}")

    async def probe(self) -> None:
        known = sorted(set(self._addresses()))
        results = await asyncio.gather(*(tcp_port_open(*a, self.connect_timeout) for a in known))
        live = [a for a, ok in zip(known, results) if ok]
        was = self.writable
        self.known, self.live, self.probed = known, live, True
        if self.writable != was:
            log.warning("Kafka %s: %d of %d brokers reachable (need %d)",
                        "writable again" if self.writable else "NOT writable", len(live), len(known), self.min_live)
        if self.writable:
            self._unwritable.clear()
        else:
            self._unwritable.set()

    async def run(self) -> None:
        """Probe forever (an owned task of the worker)."""
        while True:
            await self.probe()
            await asyncio.sleep(self.interval)

    async def wait_unwritable(self) -> None:
        await self._unwritable.wait()
