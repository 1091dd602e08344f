"""The Supervisor over real Kafka brokers and Hazelcast members (no workers): both clusters start
together, and a failure of one stops the other.

One infra-only Supervisor for the module (free ports, small heaps, a temporary runtime dir); every
test that kills something revives it. Run: .venv/bin/python -m pytest tests/test_supervisor_infra.py -x -s
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio

from supervisor.app import Supervisor
from supervisor.paths import RuntimePaths
from supervisor.runtime import RuntimeSetupError
from supervisor.states import State
from tests.fixtures_infra import infra_topology, processes_under

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def infra_sup(tmp_path_factory: Any) -> AsyncIterator[Supervisor]:
    root = tmp_path_factory.mktemp("sup-infra")
    topology = dataclasses.replace(infra_topology(root / "runtime"), services={})
    sup = Supervisor(topology, RuntimePaths(topology.runtime_dir))
    began = time.monotonic()
    try:
        try:
            await sup.start()
        except BaseException:
            for log in sorted(sup.paths.logs_dir.glob("*.log")):
                print(f"--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
            raise
        print(f"\n[infra] Kafka and Hazelcast up in {time.monotonic() - began:.1f}s")
        yield sup
    finally:
        await sup.stop()
        leftovers = processes_under(sup.paths.root)
        for proc in leftovers:
            proc.kill()
        assert not leftovers, f"processes outlived the supervisor: {[p.pid for p in leftovers]}"


async def test_kafka_and_hazelcast_start_together(infra_sup: Supervisor) -> None:
    events = infra_sup.events.recent()
    member_spawned = min(e.ts for e in events if e.service == "hazelcast" and e.to_state is State.STARTING)
    brokers_running = max(e.ts for e in events if e.service == "kafka" and e.to_state is State.RUNNING)
    assert member_spawned < brokers_running, "Hazelcast waited for Kafka"
    assert [i.state for i in infra_sup.instances()] == [State.RUNNING] * 6


async def test_a_failing_kafka_setup_stops_the_members_started_alongside(tmp_path: Any) -> None:
    """Kafka storage of another cluster: start fails naming it, and nothing keeps running."""
    topology = dataclasses.replace(infra_topology(tmp_path / "runtime"), services={})
    paths = RuntimePaths(topology.runtime_dir)
    data = paths.kafka_dir("kafka-2") / "data"
    data.mkdir(parents=True)
    (data / "meta.properties").write_text("version=1\ncluster.id=SOMEOTHERCLUSTERID0000\nnode.id=2\n")
    sup = Supervisor(topology, paths)
    try:
        with pytest.raises(RuntimeSetupError, match="belongs to Kafka cluster SOMEOTHERCLUSTERID0000"):
            await sup.start()
        assert all(inst.state is State.STOPPED for inst in sup.instances())
        assert not processes_under(paths.root)
    finally:
        await sup.stop()
        for proc in processes_under(paths.root):
            proc.kill()
