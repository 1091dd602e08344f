"""Local KRaft brokers: properties, storage format, process specs; topic setup and leader/ISR queries.

Every broker is broker+controller with static voters (`controller.quorum.voters`), so a plain
`StorageTool format` with one shared cluster id works on each node. The cluster id is kept in the
runtime directory: a second `up` finds the storage formatted with it and reuses the data.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Mapping

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from supervisor.deadline import wait_until
from supervisor.probes import tcp_port_open
from supervisor.process import ProcessSpec, run_once
from supervisor.runtime import JVM_DIR, JVM_JIT_FLAGS, Jars, RuntimeSetupError, find_java

if TYPE_CHECKING:
    from supervisor.paths import RuntimePaths
    from supervisor.topology import KafkaSpec, TopicSpec, Topology

KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
LOG4J_TEMPLATE = JVM_DIR / "kafka-log4j2.properties"
# From bin/kafka-run-class.sh (KAFKA_JVM_PERFORMANCE_OPTS), except the pause target. With acks=all a
# young-GC pause on any of the 3 brokers holds every produce in flight, and on 2 shared cores a G1
# young pause takes 15-25 ms whatever the target; the 20 ms target only made them frequent (a young
# gen sized for it). At 100: about half as many pauses at 500 msg/s (10-12 vs 19-32 per broker in
# ~80 s) and fewer slow 100 ms windows; p99 33-34 ms vs 32-42 ms (within the noise); 5 ms: 10-14 ms
# pauses but more CPU and no better p99.
JVM_PERFORMANCE_FLAGS = [
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=100",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
]
# Failover speed. A SIGKILLed broker is fenced (and its leaderships moved) one session timeout
# after its last heartbeat; if it was also the active controller, the voters first notice (fetch
# timeout), elect a new one (election timeout), and the new controller waits a full session again.
# Produce stall after SIGKILL of a partition leader (tests/test_kafka_cluster.py, 5 runs each, load 10-19):
#   session 5000/heartbeat 1000, Raft defaults (2000/1000): 4.7-6.4 s, 7.8 s if it was the controller
#   session 3000/heartbeat 500,  Raft defaults:              3.0-3.4 s, 6.1-7.6 s if controller
#   session 3000/heartbeat 500,  Raft fetch 1000/elect 500:  3.0-3.5 s, 4.2-4.5 s if controller
# With the last, no live broker was fenced and no controller moved after startup, also with two
# clusters and three Hazelcast members starting alongside (load 17). Much lower risks both.
# Later, with the C1-only JIT and the pipeline using ~60% of the cores at 500 msg/s, session 2500:
#   2.5-2.9 s, 3.4-3.7 s when the victim was the controller (9 runs of the test below); 3000 had
#   given up to 4.9 s in the controller case.
BROKER_SESSION_TIMEOUT_MS = 2500
BROKER_HEARTBEAT_INTERVAL_MS = 500
QUORUM_FETCH_TIMEOUT_MS = 1000
QUORUM_ELECTION_TIMEOUT_MS = 500
REPLICA_FETCH_BACKOFF_MS = 100
STOP_TIMEOUT = 20.0  # controlled shutdown moves leaderships first; give it time before SIGKILL
FORMAT_TIMEOUT = 120.0
ADMIN_REQUEST_TIMEOUT_MS = 5000
TOPIC_ALREADY_EXISTS = 36
# Codes worth retrying while the cluster is still forming (brokers registering, controller moving).
_FORMING_CODES = {7, 38, 41}  # REQUEST_TIMED_OUT, INVALID_REPLICATION_FACTOR, NOT_CONTROLLER


class KafkaAdminError(Exception):
    """A topic or cluster query failed in a way that retrying will not fix."""


@dataclass
class PartitionInfo:
    topic: str
    partition: int
    leader: int | None  # node id; None while no leader is elected
    replicas: list[int]
    isr: list[int]


# ---------------------------------------------------------------- broker configuration


def broker_names(spec: KafkaSpec) -> list[str]:
    """`kafka-1..n`; broker `kafka-i` has node.id i."""
    return [f"kafka-{i}" for i in range(1, spec.brokers + 1)]


def broker_properties(spec: KafkaSpec, node: int, data_dir: Path) -> dict[str, str]:
    """server.properties of broker `node` (1-based): combined broker+controller, loopback only."""
    brokers = spec.brokers
    port = spec.ports[node - 1]
    controller_port = spec.controller_ports[node - 1]
    voters = ",".join(f"{i}@127.0.0.1:{p}" for i, p in enumerate(spec.controller_ports, start=1))
    replication = str(min(spec.topic.replication_factor, brokers))
    min_isr = str(min(spec.topic.min_insync_replicas, brokers))
    return {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        # Durability: the same for every topic, including the ones tests create.
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        "unclean.leader.election.enable": "false",
        # Topics are created explicitly (ensure_topic): a typo must not create a topic silently.
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": "3",
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "3",
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        # Failover speed: how soon a dead broker is fenced and its leaderships move.
        "broker.session.timeout.ms": str(BROKER_SESSION_TIMEOUT_MS),
        "broker.heartbeat.interval.ms": str(BROKER_HEARTBEAT_INTERVAL_MS),
        "controller.quorum.fetch.timeout.ms": str(QUORUM_FETCH_TIMEOUT_MS),
        "controller.quorum.election.timeout.ms": str(QUORUM_ELECTION_TIMEOUT_MS),
        # A follower that hears of a new leader before the leader itself does gets an error on its
        # first fetch and backed off 1 s (the default), holding every acks=all produce that long:
        # graceful stops of a leader stalled writes 0.9-1.9 s in half the runs; at 100 ms, 0.0-0.23 s.
        "replica.fetch.backoff.ms": str(REPLICA_FETCH_BACKOFF_MS),
        # Fewer threads than the defaults: 3 brokers share 2 cores with everything else.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.cleaner.threads": "1",
        # The cleaner's dedupe map is allocated on the heap at start-up: 128 MB by default, half of a
        # 256 MB test heap (a broker once died of OutOfMemoryError starting it). Only the small
        # __consumer_offsets topic is compacted here; 16 MB is plenty.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    }


def render_properties(props: Mapping[str, str]) -> str:
    """Java .properties text (values here never contain newlines; backslashes are escaped)."""
    lines = ["# Written by the supervisor on every start; edits are overwritten."]
    lines += [f"{key}={value.replace(chr(92), chr(92) * 2)}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def broker_argv(java: str, classpath: str, heap_mb: int, broker_dir: Path) -> list[str]:
    """The `java ... kafka.Kafka server.properties` command line of one broker."""
    return [
        java,
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        *JVM_PERFORMANCE_FLAGS,
        *JVM_JIT_FLAGS,
        f"-Dlog4j2.configurationFile={broker_dir / 'log4j2.properties'}",
        f"-Dkafka.logs.dir={broker_dir / 'logs'}",
        "-cp",
        classpath,
        KAFKA_MAIN,
        str(broker_dir / "server.properties"),
    ]


# ---------------------------------------------------------------- storage


def new_cluster_id() -> str:
    """A KRaft cluster id: a uuid4 as unpadded url-safe base64, like `StorageTool random-uuid`."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # Kafka rejects ids that look like command-line options
            return text


def cluster_id_file(paths: RuntimePaths) -> Path:
    return paths.root / "kafka" / "cluster.id"


def load_cluster_id(paths: RuntimePaths) -> str:
    """The runtime directory's cluster id, created on first use."""
    path = cluster_id_file(paths)
    if path.is_file():
        text = path.read_text().strip()
        if text:
            return text
    path.parent.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    path.write_text(cluster_id + "\n")
    return cluster_id


def formatted_cluster_id(data_dir: Path) -> str | None:
    """The cluster id in `data_dir/meta.properties`, or None if the directory is not formatted."""
    meta = data_dir / "meta.properties"
    if not meta.is_file():
        return None
    for line in meta.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def needs_format(broker_dir: Path, data_dir: Path, cluster_id: str) -> bool:
    """False if `data_dir` is formatted with `cluster_id`; True if not formatted; a different id
    is an error (checked for every broker before any StorageTool runs)."""
    existing = formatted_cluster_id(data_dir)
    if existing is not None and existing != cluster_id:
        raise RuntimeSetupError(
            f"{data_dir} belongs to Kafka cluster {existing}, not {cluster_id} (from "
            f"{broker_dir.parent / 'cluster.id'}): delete the runtime directory to start afresh"
        )
    return existing is None


async def format_storage(java: str, classpath: str, broker_dir: Path, data_dir: Path, cluster_id: str) -> None:
    """Format `data_dir` with `cluster_id` unless it already is; a different id is an error."""
    if not needs_format(broker_dir, data_dir, cluster_id):
        return
    if data_dir.exists():  # a format that died half-way: nothing in there is worth keeping
        shutil.rmtree(data_dir)
    argv = [
        java, "-Xmx128m", f"-Dlog4j2.configurationFile={broker_dir / 'log4j2.properties'}",
        "-cp", classpath, STORAGE_TOOL, "format",
        "-t", cluster_id, "-c", str(broker_dir / "server.properties"),
    ]
    code, output = await run_once(argv, timeout=FORMAT_TIMEOUT)
    if code != 0:
        raise RuntimeSetupError(f"formatting Kafka storage {data_dir} failed (exit code {code}):\n{output[-2000:]}")


async def prepare_brokers(topology: Topology, paths: RuntimePaths, jars: Jars) -> list[ProcessSpec]:
    """Write each broker's configuration, format its storage once, return one ProcessSpec per broker.

    Returns [] unless `kafka.backend` is `local` (docker and external brokers are not our processes).
    """
    spec = topology.kafka
    if spec.backend != "local":
        return []
    java = await asyncio.to_thread(find_java)
    cluster_id = load_cluster_id(paths)
    for name in broker_names(spec):  # refuse a foreign storage before any format starts
        needs_format(paths.kafka_dir(name), paths.kafka_dir(name) / "data", cluster_id)
    specs: list[ProcessSpec] = []
    formats = []
    for node, name in enumerate(broker_names(spec), start=1):
        broker_dir = paths.kafka_dir(name)
        data_dir = broker_dir / "data"
        broker_dir.mkdir(parents=True, exist_ok=True)
        (broker_dir / "server.properties").write_text(render_properties(broker_properties(spec, node, data_dir)))
        shutil.copyfile(LOG4J_TEMPLATE, broker_dir / "log4j2.properties")
        formats.append(format_storage(java, jars.kafka_classpath, broker_dir, data_dir, cluster_id))
        specs.append(
            ProcessSpec(
                name=name,
                argv=broker_argv(java, jars.kafka_classpath, spec.heap_mb, broker_dir),
                cwd=broker_dir,
                log_path=paths.log(name),
                stop_timeout=STOP_TIMEOUT,
            )
        )
    await asyncio.gather(*formats)
    return specs


# ---------------------------------------------------------------- admin queries


@asynccontextmanager
async def admin_client(bootstrap: str, request_timeout_ms: int = ADMIN_REQUEST_TIMEOUT_MS) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def live_broker_ids(bootstrap: str) -> set[int]:
    """Node ids of the brokers the cluster reports alive (registered and not fenced)."""
    async with admin_client(bootstrap) as admin:
        info = await admin.describe_cluster()
    return {broker["node_id"] for broker in info["brokers"]}


async def wait_brokers_ready(bootstrap: str, expected: int, timeout: float) -> None:
    """Wait until the cluster reports at least `expected` live brokers."""

    addresses = [address.rpartition(":") for address in bootstrap.split(",")]

    async def ready() -> bool:
        # Ports first: the admin client logs an error for every refused connection.
        listening = await asyncio.gather(*(tcp_port_open(host, int(port)) for host, _, port in addresses))
        if sum(listening) < min(expected, len(addresses)):
            return False
        return len(await live_broker_ids(bootstrap)) >= expected

    await wait_until(ready, timeout=timeout, interval=0.5, what=f"{expected} live Kafka brokers at {bootstrap}")


def _error_name(code: int) -> str:
    return f"{for_code(code).__name__} (error code {code})"


async def _create_topic_once(bootstrap: str, topic: TopicSpec) -> tuple[int, str]:
    configs = {
        "min.insync.replicas": str(topic.min_insync_replicas),
        "unclean.leader.election.enable": "false",
    }
    new = NewTopic(topic.name, topic.partitions, topic.replication_factor, topic_configs=configs)
    async with admin_client(bootstrap) as admin:
        response = await admin.create_topics([new], timeout_ms=ADMIN_REQUEST_TIMEOUT_MS)
    for entry in response.topic_errors:
        if entry[0] == topic.name:
            return entry[1], (entry[2] if len(entry) > 2 and entry[2] else "")
    raise KafkaAdminError(f"CreateTopics reply does not mention topic {topic.name!r}: {response}")


async def ensure_topic(bootstrap: str, topic: TopicSpec, timeout: float) -> None:
    """Create `topic` if it does not exist; an existing one must have the partitions and RF asked for."""
    deadline = time.monotonic() + timeout
    last = "no reply"
    while True:
        try:
            code, message = await _create_topic_once(bootstrap, topic)
        except KafkaAdminError:
            raise
        except Exception as exc:  # noqa: BLE001 - cluster still forming: connection errors, timeouts
            code, message = -1, repr(exc)
        if code in (0, TOPIC_ALREADY_EXISTS):
            break
        last = f"{_error_name(code)}: {message}" if code >= 0 else message
        if code >= 0 and code not in _FORMING_CODES and not for_code(code).retriable:
            raise KafkaAdminError(f"cannot create topic {topic.name!r}: {last}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s creating topic {topic.name!r}: {last}")
        await asyncio.sleep(0.5)
    partitions: list[PartitionInfo] = []

    async def present() -> bool:
        nonlocal partitions
        partitions = await describe_partitions(bootstrap, topic.name)
        return bool(partitions)

    await wait_until(present, timeout=max(1.0, deadline - time.monotonic()), interval=0.3,
                     what=f"topic {topic.name!r} in the metadata")
    _check_topic_shape(topic, partitions)


def _check_topic_shape(topic: TopicSpec, partitions: list[PartitionInfo]) -> None:
    replication = sorted({len(p.replicas) for p in partitions})
    if len(partitions) != topic.partitions or replication != [topic.replication_factor]:
        raise KafkaAdminError(
            f"topic {topic.name!r} exists with {len(partitions)} partitions and replication factor "
            f"{'/'.join(map(str, replication))}, the topology asks for {topic.partitions} and "
            f"{topic.replication_factor}: delete the topic or the runtime directory"
        )


async def describe_partitions(bootstrap: str, topic: str) -> list[PartitionInfo]:
    """Leader, replicas and ISR of every partition of `topic`, by partition number."""
    async with admin_client(bootstrap) as admin:
        topics = await admin.describe_topics([topic])
    for entry in topics:
        if entry["topic"] != topic:
            continue
        if entry["error_code"] == 3:  # UNKNOWN_TOPIC_OR_PARTITION
            raise KafkaAdminError(f"unknown topic {topic!r}")
        infos = [
            PartitionInfo(
                topic=topic,
                partition=p["partition"],
                leader=p["leader"] if p["leader"] >= 0 else None,
                replicas=list(p["replicas"]),
                isr=list(p["isr"]),
            )
            for p in entry["partitions"]
        ]
        return sorted(infos, key=lambda info: info.partition)
    return []


async def wait_isr_full(bootstrap: str, topic: TopicSpec, timeout: float) -> None:
    """Wait until every partition of `topic` has a leader and all its replicas in the ISR."""

    async def full() -> bool:
        partitions = await describe_partitions(bootstrap, topic.name)
        return len(partitions) == topic.partitions and all(
            p.leader is not None and sorted(p.isr) == sorted(p.replicas) for p in partitions
        )

    await wait_until(full, timeout=timeout, interval=0.5, what=f"full ISR on every partition of {topic.name!r}")
