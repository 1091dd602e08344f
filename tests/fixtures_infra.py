"""A real 3-broker KRaft cluster and a real 3-member Hazelcast cluster, started once per test session.

Use it from a test module with `pytest_plugins = ["tests.fixtures_infra"]` (registers the fixtures
once, so every module shares the same clusters) and the `infra` fixture. Everything runs on free
ports in a temporary runtime directory; the teardown stops every JVM it started and fails if any
process whose command line names that directory is still alive. A test that kills a broker or a
member revives it before it ends.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import psutil
import pytest_asyncio
import yaml

from supervisor import hazelcast, kafka
from supervisor.paths import RuntimePaths
from supervisor.process import OsProcess, ProcessSpec
from supervisor.runtime import ensure_jars
from supervisor.topology import Topology, TopicSpec, parse_topology, resolve_ports

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 180.0
KAFKA_HEAP_MB = 256
HAZELCAST_HEAP_MB = 128


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def infra_topology(runtime_dir: Path) -> Topology:
    """The default topology on free ports, with small heaps, rooted at `runtime_dir`."""
    data: dict[str, Any] = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["runtime_dir"] = str(runtime_dir)
    data["config_server"]["port"] = 0
    data["kafka"]["ports"] = [0] * data["kafka"]["brokers"]
    data["kafka"]["controller_ports"] = [0] * data["kafka"]["brokers"]
    data["kafka"]["heap_mb"] = KAFKA_HEAP_MB
    data["hazelcast"]["ports"] = [0] * data["hazelcast"]["members"]
    data["hazelcast"]["heap_mb"] = HAZELCAST_HEAP_MB
    data["hazelcast"]["cluster_name"] = unique_name("infra-test")
    for service in data["services"].values():
        service["ports"] = [0] * service["instances"]
    return resolve_ports(parse_topology(data, base_dir=runtime_dir))


def processes_under(root: Path) -> list[psutil.Process]:
    """Live processes whose command line mentions `root` (every JVM started from it does)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(root) in arg for arg in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@dataclass
class InfraCluster:
    topology: Topology
    paths: RuntimePaths
    specs: dict[str, ProcessSpec]  # kafka-1..3, hazelcast-1..3
    running: dict[str, OsProcess] = field(default_factory=dict)
    started: list[OsProcess] = field(default_factory=list)  # every process ever started, for teardown

    @property
    def bootstrap(self) -> str:
        return self.topology.kafka.bootstrap()

    @property
    def members(self) -> list[str]:
        return self.topology.hazelcast.member_addresses()

    @property
    def cluster_name(self) -> str:
        return self.topology.hazelcast.cluster_name

    def topic(self, partitions: int = 2) -> TopicSpec:
        """A fresh topic spec (random name) with the cluster's durability settings."""
        base = self.topology.kafka.topic
        return TopicSpec(unique_name("t"), partitions, base.replication_factor, base.min_insync_replicas)

    async def start(self, name: str) -> None:
        process = OsProcess(self.specs[name])
        self.started.append(process)
        await process.start()
        self.running[name] = process

    async def kill(self, name: str) -> int:
        """SIGKILL `name` and wait for it to be gone; returns its exit code."""
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        return await process.wait()

    async def revive_broker(self, name: str, topics: list[TopicSpec]) -> None:
        await self.start(name)
        await kafka.wait_brokers_ready(self.bootstrap, self.topology.kafka.brokers, START_TIMEOUT)
        for topic in topics:
            await kafka.wait_isr_full(self.bootstrap, topic, START_TIMEOUT)

    async def revive_member(self, name: str) -> None:
        await self.start(name)
        await hazelcast.wait_cluster_size(self.members, self.cluster_name, self.topology.hazelcast.members, START_TIMEOUT)
        await hazelcast.wait_cluster_safe(self.members, START_TIMEOUT)

    async def stop_all(self) -> None:
        """SIGTERM everything at once: a KRaft node stopped after its peers cannot reach a quorum and
        would hang in controlled shutdown until SIGKILL."""
        await asyncio.gather(*(p.stop() for p in self.started if p.pid is not None))
        self.running.clear()

    def dump_logs(self, lines: int = 40) -> str:
        parts = []
        for name in self.specs:
            log = self.paths.log(name)
            if log.is_file():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name} ---\n" + "\n".join(tail))
        return "\n".join(parts)


async def start_infra(root: Path) -> InfraCluster:
    topology = infra_topology(root)
    paths = RuntimePaths(topology.runtime_dir)
    paths.ensure()
    jars = await asyncio.to_thread(ensure_jars)
    brokers, members = await asyncio.gather(
        kafka.prepare_brokers(topology, paths, jars), hazelcast.prepare_members(topology, paths, jars)
    )
    cluster = InfraCluster(topology, paths, {spec.name: spec for spec in [*brokers, *members]})
    began = time.monotonic()
    try:
        for name in cluster.specs:
            await cluster.start(name)

        async def kafka_ready() -> float:
            await kafka.wait_brokers_ready(cluster.bootstrap, topology.kafka.brokers, START_TIMEOUT)
            return time.monotonic() - began

        async def hazelcast_ready() -> float:
            await hazelcast.wait_cluster_size(cluster.members, cluster.cluster_name, topology.hazelcast.members, START_TIMEOUT)
            return time.monotonic() - began

        kafka_s, hazelcast_s = await asyncio.gather(kafka_ready(), hazelcast_ready())
    except BaseException:
        print(cluster.dump_logs())
        await cluster.stop_all()
        raise
    print(f"\n[infra] 3 Kafka brokers ready in {kafka_s:.1f}s, 3 Hazelcast members in {hazelcast_s:.1f}s "
          f"(started together, {root})")
    return cluster


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def infra(tmp_path_factory: Any) -> AsyncIterator[InfraCluster]:
    root = tmp_path_factory.mktemp("infra")
    cluster = await start_infra(root)
    try:
        yield cluster
    finally:
        await cluster.stop_all()
        leftovers = processes_under(root)
        for proc in leftovers:  # do not leave them behind even when failing
            proc.kill()
        assert not leftovers, f"processes outlived the infra fixture: {[p.pid for p in leftovers]}"
