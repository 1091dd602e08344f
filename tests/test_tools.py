"""The benchmark's CPU meter: per-group CPU from real processes, and the groups of a real pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from supervisor.client import SupervisorClient
from tools.cpu_usage import LOAD_GENERATOR, CpuMeter, describe


def test_cpu_meter_counts_a_busy_process_and_nothing_for_a_gone_one() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    meter = CpuMeter({"me": [os.getpid()], "gone": [gone.pid]})
    meter.start()
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # burn CPU: this is the load being measured, not a wait
        sum(range(1000))
    usage = meter.stop()
    assert usage["me"] > 30, usage   # a busy loop is close to 100% of one core
    assert usage["gone"] == 0.0
    assert usage["total"] == usage["me"]
    assert describe(usage).endswith(f"total {usage['total']:g}")


async def test_cpu_meter_groups_every_part_of_the_pipeline(pipeline) -> None:
    async with SupervisorClient(pipeline.address) as client:
        meter = await CpuMeter.of_pipeline(client)
    counts = {name: len(pids) for name, pids in meter.groups.items()}
    # workers may have been scaled by earlier tests of the session; the clusters are always whole again
    assert {"logging", "messages", "facade"} <= set(counts), counts
    assert (counts["kafka"], counts["hazelcast"], counts["supervisor"], counts[LOAD_GENERATOR]) == (3, 3, 1, 1)
    meter.start()
    usage = meter.stop()
    assert set(usage) == set(counts) | {"total"}
