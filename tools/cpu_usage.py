"""CPU used by each kind of process of a running pipeline over one stretch of time.

On 2 shared cores the latency tail follows how busy the cores are, so the benchmark reports, next to
each open-loop run, how much CPU every part took: % of one core (200 = both cores of this machine),
summed per service (the 3 brokers together, the 3 logging instances together, ...), from `psutil` CPU
times (user + system, all threads) before and after.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import psutil

from supervisor.client import SupervisorClient

LOAD_GENERATOR = "load generator"


@dataclass
class CpuMeter:
    """Groups of pids by name; `start()`, run the load, then `stop()` for % of one core per group."""

    groups: dict[str, list[int]]
    _before: dict[int, float] = field(default_factory=dict)
    _started: float = 0.0

    @classmethod
    async def of_pipeline(cls, client: SupervisorClient) -> "CpuMeter":
        """Every running instance by service, the supervisor itself, and this process (the load
        generator, which shares the cores with what it measures)."""
        groups: dict[str, list[int]] = {}
        for row in (await client.checked("status"))["instances"]:
            if row.get("pid") and row.get("state") == "RUNNING":
                groups.setdefault(row["service"], []).append(row["pid"])
        if client.endpoint.pid:
            groups["supervisor"] = [client.endpoint.pid]
        groups[LOAD_GENERATOR] = [os.getpid()]
        return cls(groups)

    def start(self) -> None:
        self._before = {pid: _cpu_seconds(pid) for pids in self.groups.values() for pid in pids}
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """% of one core per group over the time since start(), plus "total"."""
        elapsed = max(time.monotonic() - self._started, 1e-9)
        usage = {name: round(sum(max(_cpu_seconds(pid) - self._before.get(pid, 0.0), 0.0) for pid in pids)
                             / elapsed * 100, 1)
                 for name, pids in self.groups.items()}
        usage["total"] = round(sum(usage.values()), 1)
        return usage


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process; 0 once it is gone (its share is then unknown)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def describe(usage: dict[str, float]) -> str:
    """`kafka 31.2, hazelcast 17.9, ..., total 113.0` (% of one core), biggest first, total last."""
    parts = sorted(((k, v) for k, v in usage.items() if k != "total"), key=lambda kv: -kv[1])
    return ", ".join(f"{name} {value:g}" for name, value in [*parts, ("total", usage.get("total", 0.0))])
