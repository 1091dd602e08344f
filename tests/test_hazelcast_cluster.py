"""The local Hazelcast cluster as the logging service uses it: a map survives losing one member.

Real members (tests/fixtures_hazelcast_cluster.py), free ports, a random map per test.
Run: .venv/bin/python -m pytest tests/test_hazelcast_cluster.py -x -s
"""

from __future__ import annotations

import time

import pytest
from hazelcast.asyncio import HazelcastClient

from supervisor import hazelcast
from tests.fixtures_infra import HazelcastCluster, unique_name

pytest_plugins = ["tests.fixtures_infra"]

pytestmark = pytest.mark.asyncio(loop_scope="session")

ENTRIES = 1000


async def test_cluster_has_three_members_on_the_topology_ports(hazelcast_cluster: HazelcastCluster) -> None:
    seen = await hazelcast.cluster_member_addresses(hazelcast_cluster.members, hazelcast_cluster.cluster_name)
    assert sorted(seen) == sorted(hazelcast_cluster.members)
    health = await hazelcast.member_health(hazelcast_cluster.members[0])
    assert health["nodeState"] == "ACTIVE" and health["clusterSize"] == 3


async def test_wrong_cluster_name_is_a_clear_timeout(hazelcast_cluster: HazelcastCluster) -> None:
    with pytest.raises(TimeoutError, match="cluster 'no-such-cluster' of 3 members"):
        await hazelcast.wait_cluster_size(hazelcast_cluster.members, "no-such-cluster", 3, timeout=3)


async def test_map_survives_a_sigkilled_member(hazelcast_cluster: HazelcastCluster) -> None:
    await hazelcast.wait_cluster_safe(hazelcast_cluster.members, timeout=60)
    client = await HazelcastClient.create_and_start(cluster_name=hazelcast_cluster.cluster_name, cluster_members=hazelcast_cluster.members)
    try:
        entries = await client.get_map(unique_name("m"))
        expected = {f"id-{i}": f"message {i}" for i in range(ENTRIES)}
        for chunk in range(0, ENTRIES, 100):
            await entries.put_all({k: expected[k] for k in list(expected)[chunk:chunk + 100]})
        assert await entries.size() == ENTRIES

        victim = "hazelcast-2"
        code = await hazelcast_cluster.kill(victim)
        killed_at = time.monotonic()
        await hazelcast.wait_cluster_size(hazelcast_cluster.members, hazelcast_cluster.cluster_name, 2, timeout=60)
        dropped_after = time.monotonic() - killed_at
        read = await entries.get_all(list(expected))
        read_after = time.monotonic() - killed_at
        print(f"\n[hazelcast] SIGKILLed {victim} ({code}); cluster of 2 after {dropped_after:.2f}s; "
              f"all {len(read)} entries read back {read_after:.2f}s after the kill")
        assert code == -9
        assert read == expected
        assert await entries.size() == ENTRIES
    finally:
        await client.shutdown()
    await hazelcast_cluster.revive(victim)
