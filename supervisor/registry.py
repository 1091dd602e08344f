"""The service registry and the /config documents: who is alive where, and the shared settings.

Managed instances are listed by their state (RUNNING ones only); workers started by hand register
themselves and stay listed while they heartbeat (dropped ``ttl`` seconds after the last one).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

from supervisor.states import State

if TYPE_CHECKING:
    from supervisor.app import Supervisor

HEARTBEAT_INTERVAL = 1.0
TTL = 5.0
_INSTANCE_NAME = re.compile(r"^(?P<service>[A-Za-z][A-Za-z0-9_]*)-(?P<index>[1-9][0-9]*)$")


class RegistryError(ValueError):
    """A registration the registry refuses (unknown service, bad address or name)."""


@dataclass
class UnmanagedWorker:
    name: str
    service: str
    address: str
    registered_at: float  # wall clock, for uptime
    last_seen: float  # monotonic, for expiry

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "service": self.service, "address": self.address, "managed": False}


def split_name(name: str) -> tuple[str, int]:
    """``logging-2`` -> ("logging", 2); ValueError if it is not ``<service>-<i>``."""
    match = _INSTANCE_NAME.match(name)
    if not match:
        raise ValueError(f"{name!r} is not an instance name of the form <service>-<i>")
    return match["service"], int(match["index"])


def next_free_index(service: str, taken: Iterable[str], start: int = 1) -> int:
    """The lowest index >= start whose ``<service>-<index>`` is not in ``taken``."""
    used = set(taken)
    index = start
    while f"{service}-{index}" in used:
        index += 1
    return index


class Registry:
    def __init__(
        self,
        sup: "Supervisor",
        *,
        ttl: float = TTL,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sup = sup
        self.ttl = ttl
        self.heartbeat_interval = heartbeat_interval
        self._clock = clock
        self._unmanaged: dict[str, UnmanagedWorker] = {}

    @property
    def url(self) -> str:
        server = self._sup.topology.config_server
        return f"http://{server.host}:{server.port}"

    # -- listing -------------------------------------------------------------------------------

    def _worker_services(self) -> list[str]:
        return list(self._sup.topology.services)

    def _managed_workers(self) -> list[Any]:
        return [inst for inst in self._sup.instances() if inst.kind == "worker"]

    def unmanaged(self) -> list[UnmanagedWorker]:
        """Heartbeating unmanaged workers (expired ones are dropped here, lazily)."""
        now = self._clock()
        for name in [n for n, w in self._unmanaged.items() if now - w.last_seen > self.ttl]:
            del self._unmanaged[name]
        return list(self._unmanaged.values())

    def instances_of(self, service: str) -> list[dict[str, Any]]:
        """The ``Inst`` documents of one service; KeyError if the topology has no such service."""
        if service not in self._worker_services():
            raise KeyError(service)
        listed = [
            {"name": inst.name, "service": inst.service, "address": inst.address, "managed": True}
            for inst in self._managed_workers()
            if inst.service == service and inst.state == State.RUNNING and inst.address
        ]
        managed_names = {entry["name"] for entry in listed}
        listed.extend(w.to_json() for w in self.unmanaged() if w.service == service and w.name not in managed_names)
        return listed

    def services(self) -> dict[str, list[dict[str, Any]]]:
        return {service: self.instances_of(service) for service in self._worker_services()}

    # -- registration --------------------------------------------------------------------------

    def register(self, service: str, address: str, name: str | None = None) -> dict[str, Any]:
        """Add (or refresh) an unmanaged worker; returns its name and the heartbeat contract."""
        services = self._worker_services()
        if service not in services:
            raise RegistryError(f"unknown service {service!r}; known services: {', '.join(services)}")
        if not isinstance(address, str) or not re.match(r"^https?://[^/\s]+", address):
            raise RegistryError(f"address must be an http URL like http://127.0.0.1:50054, got {address!r}")
        managed = {inst.name for inst in self._managed_workers()}
        if name is None:
            name = self._free_name(service, managed)
        else:
            try:
                named_service, _ = split_name(name)
            except ValueError as exc:
                raise RegistryError(str(exc)) from None
            if named_service != service:
                raise RegistryError(f"name {name!r} does not belong to service {service!r}")
        if name not in managed:  # a managed instance is listed by its state, not by heartbeats
            previous = self._unmanaged.get(name)
            self._unmanaged[name] = UnmanagedWorker(
                name=name,
                service=service,
                address=address,
                registered_at=previous.registered_at if previous else time.time(),
                last_seen=self._clock(),
            )
        return {"name": name, "heartbeat_interval": self.heartbeat_interval, "ttl": self.ttl}

    def names_in_use(self) -> set[str]:
        """Every worker name taken right now: managed instances and heartbeating unmanaged workers.
        A new instance (register, or `scale`) must take a name outside this set."""
        return {inst.name for inst in self._managed_workers()} | {w.name for w in self.unmanaged()}

    def _free_name(self, service: str, managed: set[str]) -> str:
        start = self._sup.topology.services[service].instances + 1
        return f"{service}-{next_free_index(service, managed | self.names_in_use(), start)}"

    def heartbeat(self, name: str) -> bool:
        """Refresh a worker's lease; False if unknown (it must register again)."""
        if name in {inst.name for inst in self._managed_workers()}:
            return True
        self.unmanaged()  # an expired worker is unknown, not silently revived
        worker = self._unmanaged.get(name)
        if worker is None:
            return False
        worker.last_seen = self._clock()
        return True

    def deregister(self, name: str) -> bool:
        return self._unmanaged.pop(name, None) is not None

    # -- configuration -------------------------------------------------------------------------

    def config_for(self, name: str) -> dict[str, Any]:
        """The /config document for an instance name or a service name; KeyError if unknown."""
        topology = self._sup.topology
        if name in topology.services:
            service, index = name, 1
        else:
            try:
                service, index = split_name(name)
            except ValueError:
                raise KeyError(name) from None
            if service not in topology.services:
                raise KeyError(name)
        spec = topology.services[service]
        members = topology.hazelcast.member_addresses()
        kafka = topology.kafka
        return {
            "name": name,
            "service": service,
            "kafka": {
                "bootstrap_servers": kafka.bootstrap(),
                "topic": kafka.topic.name,
                "consumer_group": f"{kafka.topic.name}-service",
                "min_insync_replicas": kafka.topic.min_insync_replicas,
            },
            "hazelcast": {
                "cluster_name": topology.hazelcast.cluster_name,
                "members": members,
                "own_member": members[(index - 1) % len(members)] if members else None,
                "map": topology.hazelcast.map,
            },
            "limits": {"max_message_bytes": topology.limits.max_message_bytes},
            "settings": {"replay": spec.replay},
        }
