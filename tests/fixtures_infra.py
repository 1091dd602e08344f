"""A real 3-broker KRaft cluster and a real 3-member Hazelcast cluster, started once per test session.

Use it from a test module with `pytest_plugins = ["tests.fixtures_infra"]` (registers the fixtures
once, so every module shares the same clusters) and the `kafka_cluster` / `hazelcast_cluster`
fixtures (each starts only when a test asks for it). Everything runs on free
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
from supervisor.runtime import Jars, ensure_jars
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
class JvmCluster:
    """JVMs of one kind started from one runtime directory; kill and revive them by name."""

    topology: Topology
    paths: RuntimePaths
    specs: dict[str, ProcessSpec]
    running: dict[str, OsProcess] = field(default_factory=dict)
    started: list[OsProcess] = field(default_factory=list)  # every process ever started, for teardown

    async def start(self, name: str) -> None:
        process = OsProcess(self.specs[name])
        self.started.append(process)
        await process.start()
        self.running[name] = process

    async def start_all(self) -> None:
        for name in self.specs:
            await self.start(name)

    async def kill(self, name: str) -> int:
        """SIGKILL `name` and wait for it to be gone; returns its exit code."""
        process = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        return await process.wait()

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


class KafkaCluster(JvmCluster):
    @property
    def bootstrap(self) -> str:
        return self.topology.kafka.bootstrap()

    def topic(self, partitions: int = 2) -> TopicSpec:
        """A fresh topic spec (random name) with the cluster's durability settings."""
        base = self.topology.kafka.topic
        return TopicSpec(unique_name("t"), partitions, base.replication_factor, base.min_insync_replicas)

    async def wait_ready(self) -> None:
        await kafka.wait_brokers_ready(self.bootstrap, self.topology.kafka.brokers, START_TIMEOUT)

    async def revive(self, name: str, topics: list[TopicSpec]) -> None:
        """Start `name` again; return once every broker is live and `topics` have a full ISR."""
        await self.start(name)
        await self.wait_ready()
        for topic in topics:
            await kafka.wait_isr_full(self.bootstrap, topic, START_TIMEOUT)


class HazelcastCluster(JvmCluster):
    @property
    def members(self) -> list[str]:
        return self.topology.hazelcast.member_addresses()

    @property
    def cluster_name(self) -> str:
        return self.topology.hazelcast.cluster_name

    async def wait_ready(self) -> None:
        await hazelcast.wait_cluster_size(self.members, self.cluster_name, self.topology.hazelcast.members, START_TIMEOUT)

    async def revive(self, name: str) -> None:
        """Start `name` again; return once the cluster is whole and its backups are in sync."""
        await self.start(name)
        await self.wait_ready()
        await hazelcast.wait_cluster_safe(self.members, START_TIMEOUT)


async def _run_cluster(cluster: JvmCluster, what: str) -> AsyncIterator[JvmCluster]:
    """Start every JVM of `cluster`, yield it once ready, stop it all; fail if a process outlives it."""
    began = time.monotonic()
    try:
        await cluster.start_all()
        await cluster.wait_ready()  # type: ignore[attr-defined]
        print(f"\n[infra] {what} ready in {time.monotonic() - began:.1f}s ({cluster.paths.root})")
        yield cluster
    except BaseException:
        print(cluster.dump_logs())
        raise
    finally:
        await cluster.stop_all()
        leftovers = processes_under(cluster.paths.root)
        for proc in leftovers:  # never leave them behind, even when failing
            proc.kill()
        assert not leftovers, f"processes outlived the {what} fixture: {[p.pid for p in leftovers]}"


async def _prepared(root: Path) -> tuple[Topology, RuntimePaths, Jars]:
    topology = infra_topology(root)
    paths = RuntimePaths(topology.runtime_dir)
    paths.ensure()
    return topology, paths, await asyncio.to_thread(ensure_jars)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def kafka_cluster(tmp_path_factory: Any) -> AsyncIterator[KafkaCluster]:
    """3 real KRaft brokers (broker+controller) on free ports, for the whole session."""
    topology, paths, jars = await _prepared(tmp_path_factory.mktemp("kafka"))
    specs = await kafka.prepare_brokers(topology, paths, jars)
    async for cluster in _run_cluster(KafkaCluster(topology, paths, {s.name: s for s in specs}), "3 Kafka brokers"):
        yield cluster  # type: ignore[misc]


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def hazelcast_cluster(tmp_path_factory: Any) -> AsyncIterator[HazelcastCluster]:
    """3 real Hazelcast members on free ports, for the whole session."""
    topology, paths, jars = await _prepared(tmp_path_factory.mktemp("hazelcast"))
    specs = await hazelcast.prepare_members(topology, paths, jars)
    async for cluster in _run_cluster(HazelcastCluster(topology, paths, {s.name: s for s in specs}), "3 Hazelcast members"):
        yield cluster  # type: ignore[misc]
