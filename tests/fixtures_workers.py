"""Helpers shared by the workers' tests."""

from __future__ import annotations

from typing import Any

from supervisor.deadline import wait_until

EXPECTED_WORKERS = {"logging": 3, "messages": 2, "facade": 1}   # topology.yaml instances


async def wait_workers_listed(pipeline: Any, timeout: float = 300.0) -> None:
    """Until every worker of the topology is listed by the registry (the session start may still run)."""
    async def all_listed() -> bool:
        return [len(await pipeline.services(s)) for s in EXPECTED_WORKERS] == list(EXPECTED_WORKERS.values())

    await wait_until(all_listed, timeout=timeout, interval=0.5, what=f"workers {EXPECTED_WORKERS} to be listed")
