"""The Supervisor: builds instances from the topology, starts them in order, stops them in reverse.

Start order: leftovers of a previous run are reaped (children.json), then Kafka and Hazelcast
together (two slow JVM starts that do not need each other): Kafka brokers all at once, then the
cluster is checked (brokers registered, topic created, ISR full); Hazelcast members all at once,
then the cluster size; if one fails, the other is cancelled. Then each service in topology order:
its instances at once, all RUNNING before the next service starts. Stop is the exact reverse.
children.json always lists the live children with their create time, so the next run can end what
a crash left behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import psutil

from supervisor.deadline import wait_until
from supervisor.events import EventBus
from supervisor.instance import Instance, InstanceSpec, RestartRules, StartFailed
from supervisor.probes import tcp_probe, worker_probe
from supervisor.paths import RuntimePaths
from supervisor.ports import free_port
from supervisor.process import ProcessSpec
from supervisor.registry import Registry, next_free_index
from supervisor.states import State
from supervisor.topology import ServiceSpec, Topology

log = logging.getLogger("supervisor")

INFRA_READY_TIMEOUT = 120.0  # one JVM until its port answers, on 2 busy cores
CLUSTER_TIMEOUT = 120.0  # brokers registered / topic / ISR / Hazelcast cluster size
REAP_TIMEOUT = 5.0
INFRA_STOP_TIMEOUT = 20.0


class SupervisorError(RuntimeError):
    """The pipeline could not be brought up (the message says which step and why)."""


class UnknownTarget(LookupError):
    def __init__(self, target: str, known: Iterable[str]) -> None:
        self.target = target
        self.known = list(known)
        super().__init__(f"unknown target {target!r}; known: {', '.join(self.known) or 'none'}")


def worker_argv(service: ServiceSpec, name: str, port: int, config_server: str) -> list[str]:
    """The command line of one worker: `python -m <module> --name ...`, or the formatted `command:`."""
    fields = {"python": sys.executable, "name": name, "port": port, "host": service.host,
              "config_server": config_server}
    if service.command:
        return [part.format(**fields) for part in service.command]
    if not service.module:
        raise SupervisorError(f"service {service.name!r} has neither module nor command")
    return [sys.executable, "-m", service.module, "--name", name, "--port", str(port),
            "--host", service.host, "--config-server", config_server]


class Supervisor:
    def __init__(
        self,
        topology: Topology,
        paths: RuntimePaths,
        *,
        on_output: Callable[[str, str], None] | None = None,
    ) -> None:
        self.topology = topology
        self.paths = paths
        self.events = EventBus()
        self.registry = Registry(self)
        self._on_output = on_output
        self._brokers: list[Instance] = []
        self._members: list[Instance] = []
        self._services: dict[str, list[Instance]] = {name: [] for name in topology.services}
        self._create_times: dict[int, float] = {}
        self._started = False

    # -- views ---------------------------------------------------------------------------------
    def instances(self) -> list[Instance]:
        """Topology order: kafka-*, hazelcast-*, then each service's instances."""
        workers = [inst for group in self._services.values() for inst in group]
        return [*self._brokers, *self._members, *workers]

    def resolve(self, target: str) -> list[Instance]:
        """An instance name, or a service name (kafka and hazelcast included) -> its instances."""
        every = self.instances()
        by_name = [inst for inst in every if inst.name == target]
        if by_name:
            return by_name
        by_service = [inst for inst in every if inst.service == target]
        if by_service:
            return by_service
        services = list(dict.fromkeys(inst.service for inst in every))
        raise UnknownTarget(target, [inst.name for inst in every] + services)

    def _one(self, name: str) -> Instance:
        for inst in self.instances():
            if inst.name == name:
                return inst
        raise UnknownTarget(name, [inst.name for inst in self.instances()])

    @property
    def config_server_url(self) -> str:
        server = self.topology.config_server
        return f"http://{server.host}:{server.port}"

    # -- start / stop ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Bring up everything; on failure, stop what was started and raise SupervisorError."""
        began = time.monotonic()
        self.paths.ensure()
        reaped = await asyncio.to_thread(reap_leftovers, self.paths)
        if reaped:
            log.warning("ended %d leftover process(es) of a previous run: %s", len(reaped), ", ".join(reaped))
        self._started = True
        try:
            await self._start_infra()
            for service in self.topology.services.values():
                await self._start_service(service)
        except BaseException:
            await self.stop()
            raise
        log.info("all up in %.1fs", time.monotonic() - began)

    async def stop(self) -> None:
        """Services in reverse order, then members, then brokers; each group concurrently."""
        began = time.monotonic()
        groups = [*reversed(list(self._services.values())), self._members, self._brokers]
        for group in groups:
            if group:
                await asyncio.gather(*(inst.stop() for inst in group), return_exceptions=True)
        for inst in self.instances():
            await inst.close()
        self._write_children()
        if self._started:
            log.info("all stopped in %.1fs", time.monotonic() - began)

    async def _start_infra(self) -> None:
        kafka_spec, hz_spec = self.topology.kafka, self.topology.hazelcast
        local = [side for side, spec in (("kafka", kafka_spec), ("hazelcast", hz_spec)) if spec.backend != "external"]
        if "docker" in (kafka_spec.backend, hz_spec.backend):
            found = "not supported by this supervisor yet" if shutil.which("docker") else "docker CLI not found"
            raise SupervisorError(f"docker backend: {found} (use backend: local, or external "
                                  "with `docker compose up` started by hand)")
        if not local:
            return
        from supervisor import runtime

        began = time.monotonic()
        jars = await asyncio.to_thread(runtime.ensure_jars, progress=lambda text: log.info("%s", text))
        log.info("jars ready in %.1fs", time.monotonic() - began)
        # Both are slow JVM starts that do not depend on each other: overlap them.
        steps = {}
        if kafka_spec.backend == "local":
            steps["kafka"] = self._start_kafka(jars)
        if hz_spec.backend == "local":
            steps["hazelcast"] = self._start_hazelcast(jars)
        began = time.monotonic()
        log.info("starting %s together", " and ".join(steps))
        await all_or_nothing(list(steps.values()))
        log.info("%s ready after %.1fs", " and ".join(steps), time.monotonic() - began)

    async def _start_kafka(self, jars: Any) -> None:
        from supervisor import kafka

        spec = self.topology.kafka
        bootstrap = spec.bootstrap()
        began = time.monotonic()
        process_specs = await kafka.prepare_brokers(self.topology, self.paths, jars)
        self._brokers = [
            self._infra_instance(ps, "kafka", port, f"127.0.0.1:{port}")
            for ps, port in zip(process_specs, spec.ports, strict=True)
        ]
        await self._start_group(self._brokers, INFRA_READY_TIMEOUT)
        log.info("kafka: %d brokers listening after %.1fs", len(self._brokers), time.monotonic() - began)
        await self._step("kafka: brokers registered", kafka.wait_brokers_ready(bootstrap, spec.brokers, CLUSTER_TIMEOUT))
        await self._step(f"kafka: topic {spec.topic.name!r} ready", kafka.ensure_topic(bootstrap, spec.topic, CLUSTER_TIMEOUT))
        await self._step("kafka: every ISR full", kafka.wait_isr_full(bootstrap, spec.topic, CLUSTER_TIMEOUT))

    async def _start_hazelcast(self, jars: Any) -> None:
        from supervisor import hazelcast

        spec = self.topology.hazelcast
        began = time.monotonic()
        process_specs = await hazelcast.prepare_members(self.topology, self.paths, jars)
        self._members = [
            self._infra_instance(ps, "hazelcast", port, f"127.0.0.1:{port}")
            for ps, port in zip(process_specs, spec.ports, strict=True)
        ]
        await self._start_group(self._members, INFRA_READY_TIMEOUT)
        log.info("hazelcast: %d members listening after %.1fs", len(self._members), time.monotonic() - began)
        await self._step(
            f"hazelcast: cluster of {spec.members}",
            hazelcast.wait_cluster_size(spec.member_addresses(), spec.cluster_name, spec.members, CLUSTER_TIMEOUT),
        )

    async def _start_service(self, service: ServiceSpec) -> None:
        began = time.monotonic()
        group = [self._worker_instance(service, i) for i in range(1, service.instances + 1)]
        self._services[service.name] = group
        await self._start_group(group, self._worker_wait(service))
        log.info("%s: %d instance(s) RUNNING after %.1fs", service.name, len(group), time.monotonic() - began)

    async def _start_group(self, group: list[Instance], timeout: float) -> None:
        await asyncio.gather(*(inst.start() for inst in group))
        results = await asyncio.gather(*(inst.wait_running(timeout) for inst in group), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise SupervisorError("\n".join(str(e) for e in errors)) from errors[0]

    async def _step(self, what: str, awaitable: Any) -> None:
        began = time.monotonic()
        try:
            await awaitable
        except Exception as exc:
            raise SupervisorError(f"{what}: {type(exc).__name__}: {exc}") from exc
        log.info("%s (%.1fs)", what, time.monotonic() - began)

    # -- building instances ----------------------------------------------------------------------
    def _new_instance(self, spec: InstanceSpec) -> Instance:
        return Instance(spec, self.events, on_output=self._on_output, on_change=self._instance_changed)

    def _infra_instance(self, process: ProcessSpec, kind: str, port: int, address: str) -> Instance:
        process = ProcessSpec(process.name, process.argv, process.cwd, process.env,
                              process.log_path or self.paths.log(process.name),
                              min(process.stop_timeout, INFRA_STOP_TIMEOUT))
        return self._new_instance(InstanceSpec(
            name=process.name, service=kind, kind=kind, process=process,
            probe=tcp_probe("127.0.0.1", port), ready_timeout=INFRA_READY_TIMEOUT,
            restart=RestartRules.from_topology(self.topology.restart), address=address, port=port,
        ))

    def _worker_instance(self, service: ServiceSpec, index: int, port: int | None = None,
                         extra_env: Mapping[str, str] | None = None) -> Instance:
        name = f"{service.name}-{index}"
        if port is None:
            given = service.ports[index - 1] if index <= len(service.ports) else 0
            port = given or free_port()
        argv = worker_argv(service, name, port, self.config_server_url)
        cwd = self.topology.source.parent if self.topology.source else None
        extra_env = dict(extra_env or {})
        process = ProcessSpec(name, argv, cwd=cwd, env={**service.env, **extra_env}, log_path=self.paths.log(name),
                              stop_timeout=service.stop_timeout)
        probe_host = "127.0.0.1" if service.host in ("0.0.0.0", "::", "") else service.host
        return self._new_instance(InstanceSpec(
            name=name, service=service.name, kind="worker", process=process,
            probe=worker_probe(f"http://{probe_host}:{port}/health"), ready_timeout=service.ready_timeout,
            restart=RestartRules.from_topology(service.restart),
            address=f"http://{service.host}:{port}", port=port, extra_env=extra_env,
        ))

    @staticmethod
    def _worker_wait(service: ServiceSpec) -> float:
        """How long a start may take, riding through the restarts the policy allows."""
        rp = service.restart
        return service.ready_timeout * (rp.intensity + 1) + rp.backoff_max * rp.intensity

    # -- commands ----------------------------------------------------------------------------------
    async def kill(self, name: str) -> None:
        await self._one(name).kill()

    async def stop_instance(self, name: str) -> None:
        await self._one(name).stop()

    async def start_instance(self, name: str) -> None:
        """Start and wait for RUNNING and, for a broker or member, back in its cluster (or
        StartFailed saying how the attempt ended)."""
        inst = self._one(name)
        await inst.start()
        await self._wait_back(inst)

    async def restart_instance(self, name: str) -> None:
        inst = self._one(name)
        await inst.restart()
        await self._wait_back(inst)

    async def revive(self, name: str) -> None:
        """Bring back a killed instance. A member returns once the cluster has every running
        member and is safe (backups in sync), a broker once it is registered again: so the next
        chaos step may kill another one without losing data."""
        inst = self._one(name)
        await inst.revive()
        await self._wait_back(inst)

    async def _wait_back(self, inst: Instance) -> None:
        await inst.wait_started()
        began = time.monotonic()
        try:
            if inst.kind == "hazelcast":
                await self._wait_member_back()
            elif inst.kind == "kafka":
                await self._wait_broker_back(inst)
            else:
                return
        except Exception as exc:
            raise StartFailed(f"{inst.name} is RUNNING but did not rejoin its cluster: "
                              f"{type(exc).__name__}: {exc}") from exc
        log.info("%s: back in its cluster %.1fs after RUNNING", inst.name, time.monotonic() - began)

    async def _wait_member_back(self) -> None:
        """Every RUNNING member in the cluster (others may be held down), then cluster safe."""
        from supervisor import hazelcast

        spec = self.topology.hazelcast
        running = [m.address for m in self._members if m.state is State.RUNNING and m.address]
        await hazelcast.wait_cluster_size(running, spec.cluster_name, len(running), CLUSTER_TIMEOUT)
        await hazelcast.wait_cluster_safe(running, CLUSTER_TIMEOUT)

    async def _wait_broker_back(self, inst: Instance) -> None:
        """Asked of the broker itself: its port opens long before it serves requests (log recovery,
        metadata catch-up, unfencing), and its peers may still list the killed incarnation."""
        from supervisor import kafka

        node = int(inst.name.rpartition("-")[2])
        own = inst.address or ""

        async def registered() -> bool:
            return node in await kafka.live_broker_ids(own)

        await wait_until(registered, timeout=CLUSTER_TIMEOUT, interval=0.5, what=f"{inst.name} registered again")

    async def scale(self, service: str, n: int, env: Mapping[str, str] | None = None) -> None:
        """Grow with new instances on free ports (waited RUNNING), named with the lowest indexes no
        instance or unmanaged worker holds; or shrink by stopping the most recently added.

        `env` is added to the environment of the instances this call creates, and only theirs
        (fault injection: `scale logging 4 --env PIPELINE_FAULT=crash-at-start`)."""
        if service not in self._services:
            raise UnknownTarget(service, list(self._services))
        if n < 0:
            raise ValueError(f"scale {service}: instance count must be >= 0, not {n}")
        group = self._services[service]
        if n > len(group):
            spec = self.topology.services[service]
            added = []
            taken = self.registry.names_in_use()  # unmanaged workers keep their names
            for _ in range(n - len(group)):
                index = next_free_index(service, taken)
                added.append(self._worker_instance(spec, index, free_port(), env))
                taken.add(added[-1].name)
            group.extend(added)
            await self._start_group(added, self._worker_wait(spec))
        while len(group) > n:
            inst = group[-1]
            await inst.stop()
            await inst.close()
            group.pop()
            self._write_children()
        log.info("%s scaled to %d", service, n)

    async def leaders(self) -> list[dict[str, Any]]:
        from supervisor import kafka

        def broker(node: int | None) -> str | None:
            return None if node is None or node < 0 else f"kafka-{node}"

        # Ask the brokers known to be up: a killed one in the bootstrap list can fail the admin request.
        running = [f"127.0.0.1:{inst.port}" for inst in self.instances()
                   if inst.kind == "kafka" and inst.state is State.RUNNING and inst.port]
        bootstrap = ",".join(running) or self.topology.kafka.bootstrap()
        last_error: Exception | None = None
        # aiokafka's admin client sends to a random broker of its metadata, which lists a killed broker
        # until the controller fences it (seconds): asking again picks another one.
        for _ in range(10):
            try:
                rows = await kafka.describe_partitions(bootstrap, self.topology.kafka.topic.name)
                break
            except kafka.KafkaAdminError:
                raise
            except Exception as exc:  # noqa: BLE001 - aiokafka's connection errors have no common base
                last_error = exc
        else:
            raise RuntimeError(f"no broker answered the leaders query ({bootstrap}): {last_error}")
        return [
            {"topic": p.topic, "partition": p.partition, "leader": broker(p.leader),
             "replicas": [broker(r) for r in p.replicas], "isr": [broker(r) for r in p.isr]}
            for p in rows
        ]

    # -- children.json -----------------------------------------------------------------------------
    def _instance_changed(self, inst: Instance) -> None:
        self._write_children()

    def _write_children(self) -> None:
        children: dict[str, dict[str, float | int]] = {}
        for inst in self.instances():
            if inst.pid is None:
                continue
            if inst.pid not in self._create_times:
                try:
                    self._create_times[inst.pid] = psutil.Process(inst.pid).create_time()
                except psutil.NoSuchProcess:
                    continue
            children[inst.name] = {"pid": inst.pid, "create_time": self._create_times[inst.pid]}
        live = {entry["pid"] for entry in children.values()}
        self._create_times = {pid: t for pid, t in self._create_times.items() if pid in live}
        if not self.paths.root.exists():
            return
        tmp = self.paths.children_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(children, indent=1, sort_keys=True))
        os.replace(tmp, self.paths.children_file)


async def all_or_nothing(steps: list[Awaitable[Any]]) -> None:
    """Run `steps` concurrently; the first one to fail cancels the others (their instances are
    already known to the Supervisor, so its stop() ends them) and its exception is raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()  # a no-op for the finished ones
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def reap_leftovers(paths: RuntimePaths, timeout: float = REAP_TIMEOUT) -> list[str]:
    """End the processes a previous run's children.json lists, if they are still those processes
    (same pid and create time): SIGTERM their process group, SIGKILL after `timeout`. Blocking."""
    try:
        listed = json.loads(paths.children_file.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s: %s", paths.children_file, exc)
        return []
    victims: dict[str, psutil.Process] = {}
    for name, entry in listed.items() if isinstance(listed, dict) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("pid"), int):
            continue
        try:
            proc = psutil.Process(entry["pid"])
            if abs(proc.create_time() - float(entry.get("create_time", -1))) < 0.01:
                victims[name] = proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in victims.values():
        _signal_group(proc.pid, signal.SIGTERM)
    _, alive = psutil.wait_procs(list(victims.values()), timeout=timeout)
    for proc in alive:
        _signal_group(proc.pid, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=timeout)
    paths.children_file.unlink(missing_ok=True)
    return list(victims)


def _signal_group(pid: int, sig: int) -> None:
    """Each child leads its own process group (spawned with a new session)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
