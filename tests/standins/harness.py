"""Helpers for the supervision tests: stand-in instances and small topologies with nothing external.

Import as `from standins.harness import ...` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

from supervisor.actor import Policy
from supervisor.events import EventBus
from supervisor.instance import Instance, InstanceSpec, RestartRules
from supervisor.probes import http_probe, tcp_probe
from supervisor.process import ProcessSpec
from supervisor.states import State
from supervisor.topology import Topology, parse_topology, resolve_ports

WORKER = Path(__file__).resolve().parent / "worker.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_instance(
    tmp_path: Path,
    *flags: str,
    name: str = "standin-1",
    kind: str = "worker",
    policy: str = "never",
    backoff: tuple[float, float] = (0.05, 0.4),
    intensity: int = 3,
    period: float = 60.0,
    ready_timeout: float = 10.0,
    stop_timeout: float = 5.0,
    events: EventBus | None = None,
) -> Instance:
    """One Instance over tests/standins/worker.py on a free port (probe: /health, or TCP for infra)."""
    port = free_port()
    argv = [sys.executable, str(WORKER), "--port", str(port), "--name", name, *flags]
    process = ProcessSpec(name, argv, log_path=tmp_path / "logs" / f"{name}.log", stop_timeout=stop_timeout)
    probe = http_probe(f"http://127.0.0.1:{port}/health") if kind == "worker" else tcp_probe("127.0.0.1", port)
    spec = InstanceSpec(
        name=name, service=name.rsplit("-", 1)[0], kind=kind, process=process, probe=probe,
        ready_timeout=ready_timeout,
        restart=RestartRules(Policy(policy), backoff[0], backoff[1], intensity, period),
        address=f"http://127.0.0.1:{port}", port=port,
    )
    return Instance(spec, events or EventBus())


def edges(inst: Instance) -> list[tuple[State | None, State | None]]:
    """The (from, to) pairs this instance published, in order."""
    return [(e.from_state, e.to_state) for e in inst.events.recent() if e.name == inst.name]


def standin_service(*flags: str, instances: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "instances": instances,
        "command": ["{python}", str(WORKER), "--port", "{port}", "--name", "{name}", *flags],
        **extra,
    }


def topology_data(runtime_dir: Path, services: dict[str, dict[str, Any]], **restart: Any) -> dict[str, Any]:
    """A topology with external Kafka/Hazelcast (nothing started) and the given services."""
    return {
        "runtime_dir": str(runtime_dir),
        "config_server": {"host": "127.0.0.1", "port": 0},
        "kafka": {"backend": "external", "brokers": 1, "bootstrap_servers": ["127.0.0.1:1"]},
        "hazelcast": {"backend": "external", "members": 1, "addresses": ["127.0.0.1:1"]},
        "restart": {"policy": "always", "backoff_initial": 0.05, "backoff_max": 0.4,
                    "intensity": 3, "period": 60, **restart},
        "services": services,
    }


def make_topology(tmp_path: Path, services: dict[str, dict[str, Any]], **restart: Any) -> Topology:
    data = topology_data(tmp_path / "runtime", services, **restart)
    return resolve_ports(parse_topology(data, base_dir=tmp_path))
