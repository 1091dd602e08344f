"""Local Hazelcast members: command lines from the repo-root hazelcast.xml; readiness (cluster of N).

One hazelcast.xml serves every member: the cluster name, the member's port and the TCP-IP member
list are passed as `-Dpipeline.*` system properties and substituted into `${...}` there.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from hazelcast.asyncio import HazelcastClient

from supervisor.deadline import wait_until
from supervisor.process import ProcessSpec
from supervisor.runtime import JVM_JIT_FLAGS, Jars, find_java

if TYPE_CHECKING:
    from supervisor.paths import RuntimePaths
    from supervisor.topology import HazelcastSpec, Topology

HAZELCAST_XML = Path(__file__).resolve().parent.parent / "hazelcast.xml"
MEMBER_MAIN = "com.hazelcast.core.server.HazelcastMemberStarter"
# "Running in Modular Java" (Hazelcast docs): what the member needs opened on Java 17.
MODULE_FLAGS = [
    "--add-modules", "java.se",
    "--add-exports", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.nio=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.management/sun.management=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
]
STOP_TIMEOUT = 20.0  # SIGTERM is a graceful shutdown (partitions migrate away first)


def member_names(spec: HazelcastSpec) -> list[str]:
    """`hazelcast-1..n`; member `hazelcast-i` listens on `spec.ports[i-1]`."""
    return [f"hazelcast-{i}" for i in range(1, spec.members + 1)]


def member_argv(java: str, classpath: str, spec: HazelcastSpec, index: int, member_dir: Path) -> list[str]:
    """The `java ... HazelcastMemberStarter` command line of member `index` (0-based)."""
    return [
        java,
        f"-Xms{spec.heap_mb}m",
        f"-Xmx{spec.heap_mb}m",
        *JVM_JIT_FLAGS,
        *MODULE_FLAGS,
        "-Djava.net.preferIPv4Stack=true",
        f"-Dhazelcast.config={HAZELCAST_XML}",
        f"-Dpipeline.cluster.name={spec.cluster_name}",
        f"-Dpipeline.port={spec.ports[index]}",
        f"-Dpipeline.members={','.join(spec.member_addresses())}",
        f"-Dpipeline.member.dir={member_dir}",  # names the runtime dir in `ps`, to find leftovers
        "-cp",
        classpath,
        MEMBER_MAIN,
    ]


async def prepare_members(topology: Topology, paths: RuntimePaths, jars: Jars) -> list[ProcessSpec]:
    """One ProcessSpec per member; [] unless `hazelcast.backend` is `local`."""
    spec = topology.hazelcast
    if spec.backend != "local":
        return []
    if not HAZELCAST_XML.is_file():
        raise FileNotFoundError(f"member configuration {HAZELCAST_XML} is missing (it ships with the repository)")
    java = await asyncio.to_thread(find_java)
    specs = []
    for index, name in enumerate(member_names(spec)):
        member_dir = paths.hazelcast_dir(name)
        member_dir.mkdir(parents=True, exist_ok=True)
        specs.append(
            ProcessSpec(
                name=name,
                argv=member_argv(java, jars.hazelcast_classpath, spec, index, member_dir),
                cwd=member_dir,
                log_path=paths.log(name),
                stop_timeout=STOP_TIMEOUT,
            )
        )
    return specs


async def _connect(members: list[str], cluster_name: str, timeout: float) -> HazelcastClient:
    return await asyncio.wait_for(
        HazelcastClient.create_and_start(
            cluster_name=cluster_name,
            cluster_members=list(members),
            cluster_connect_timeout=timeout,
        ),
        timeout=timeout + 5.0,
    )


async def cluster_member_addresses(members: list[str], cluster_name: str, timeout: float = 10.0) -> list[str]:
    """`host:port` of every member in the cluster, as a client connected through `members` sees it."""
    client = await _connect(members, cluster_name, timeout)
    try:
        return [f"{m.address.host}:{m.address.port}" for m in client.cluster_service.get_members()]
    finally:
        await client.shutdown()


async def wait_cluster_size(members: list[str], cluster_name: str, size: int, timeout: float) -> None:
    """Wait until a client sees exactly `size` members in cluster `cluster_name`."""
    what = f"a Hazelcast cluster {cluster_name!r} of {size} members at {','.join(members)}"
    deadline = time.monotonic() + timeout
    try:
        client = await _connect(members, cluster_name, timeout)
    except Exception as exc:  # noqa: BLE001 - the client raises several kinds; one clear message
        raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}: cannot connect ({exc})") from exc
    seen: list[str] = []

    def complete() -> bool:
        seen[:] = [f"{m.address.host}:{m.address.port}" for m in client.cluster_service.get_members()]
        return len(seen) == size

    try:
        await wait_until(complete, timeout=max(0.0, deadline - time.monotonic()), interval=0.2, what=what)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; the cluster has {len(seen)}: {', '.join(seen)}") from exc
    finally:
        await client.shutdown()


async def member_health(address: str, timeout: float = 3.0) -> dict[str, Any]:
    """The member's `/hazelcast/health` document: nodeState, clusterState, clusterSafe, clusterSize..."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        async with http.get(f"http://{address}/hazelcast/health") as response:
            response.raise_for_status()
            return await response.json(content_type=None)


async def wait_cluster_safe(members: list[str], timeout: float) -> None:
    """Wait until every listed member reports `clusterSafe` (no migration running, backups in sync).

    After a member joins or leaves, data is only safe against the next loss once this holds.
    """

    async def safe() -> bool:
        reports = await asyncio.gather(*(member_health(m) for m in members))
        return all(r.get("clusterSafe") and r.get("migrationQueueSize", 0) == 0 for r in reports)

    await wait_until(safe, timeout=timeout, interval=0.5, what=f"Hazelcast cluster safe at {','.join(members)}")
