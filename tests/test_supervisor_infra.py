"""The Supervisor over real Kafka brokers and Hazelcast members (no workers): both clusters start
together, and a revived broker or member is back in its cluster when `revive` returns.

One infra-only Supervisor for the module (free ports, small heaps, a temporary runtime dir); every
test that kills something revives it. Run: .venv/bin/python -m pytest tests/test_supervisor_infra.py -x -s
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, AsyncIterator

import pytest
import pytest_asyncio
from hazelcast.asyncio import HazelcastClient

from supervisor import hazelcast, kafka
from supervisor.app import Supervisor
from supervisor.paths import RuntimePaths
from supervisor.runtime import RuntimeSetupError
from supervisor.states import State
from tests.fixtures_infra import infra_topology, processes_under, unique_name

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENTRIES = 1000


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


def _members(sup: Supervisor) -> list[str]:
    return sup.topology.hazelcast.member_addresses()


async def test_kafka_and_hazelcast_start_together(infra_sup: Supervisor) -> None:
    events = infra_sup.events.recent()
    member_spawned = min(e.ts for e in events if e.service == "hazelcast" and e.to_state is State.STARTING)
    brokers_running = max(e.ts for e in events if e.service == "kafka" and e.to_state is State.RUNNING)
    assert member_spawned < brokers_running, "Hazelcast waited for Kafka"
    assert [i.state for i in infra_sup.instances()] == [State.RUNNING] * 6


async def test_revived_member_is_back_and_safe_so_the_next_kill_loses_nothing(infra_sup: Supervisor) -> None:
    sup = infra_sup
    spec = sup.topology.hazelcast
    client = await HazelcastClient.create_and_start(cluster_name=spec.cluster_name, cluster_members=_members(sup))
    try:
        entries = await client.get_map(unique_name("m"))
        expected = {f"id-{i}": f"message {i}" for i in range(ENTRIES)}
        await entries.put_all(expected)

        await sup.kill("hazelcast-2")
        await sup.resolve("hazelcast-2")[0].wait_state(State.EXITED, timeout=60)
        began = time.monotonic()
        await sup.revive("hazelcast-2")
        print(f"\n[revive] hazelcast-2 back and cluster safe after {time.monotonic() - began:.1f}s")
        # No waiting here: revive has returned, so the cluster must already be whole and safe.
        seen = await hazelcast.cluster_member_addresses(_members(sup), spec.cluster_name)
        assert sorted(seen) == sorted(_members(sup))
        health = await asyncio.gather(*(hazelcast.member_health(m) for m in _members(sup)))
        assert all(h["clusterSafe"] and h["clusterSize"] == 3 for h in health), health

        await sup.kill("hazelcast-3")  # the next chaos step, right away
        await sup.resolve("hazelcast-3")[0].wait_state(State.EXITED, timeout=60)
        assert await entries.get_all(list(expected)) == expected
    finally:
        await client.shutdown()
        for name in ("hazelcast-2", "hazelcast-3"):
            if sup.resolve(name)[0].state is not State.RUNNING:
                await sup.revive(name)


async def test_revived_broker_is_registered_when_revive_returns(infra_sup: Supervisor) -> None:
    sup = infra_sup
    broker = sup.resolve("kafka-3")[0]
    await sup.kill("kafka-3")
    await broker.wait_state(State.EXITED, timeout=60)
    began = time.monotonic()
    await sup.revive("kafka-3")
    print(f"\n[revive] kafka-3 registered after {time.monotonic() - began:.1f}s")
    # Its port is bound (and a TCP probe passes) well before the broker is registered and
    # unfenced; by now its own log must say both, for this incarnation.
    this_run = sup.paths.log("kafka-3").read_text(errors="replace").rpartition("kafka-3 started pid")[2]
    assert "Successfully registered broker 3" in this_run and "The broker has been unfenced" in this_run
    assert 3 in await kafka.live_broker_ids(broker.address or "")
    assert await kafka.live_broker_ids(sup.topology.kafka.bootstrap()) == {1, 2, 3}


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
