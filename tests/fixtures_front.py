"""Fixtures for the front tests: a supervisor of stand-in workers (Kafka and Hazelcast `external`,
so no JVM starts), in process or as a real `python -m supervisor up` child."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import psutil
import pytest
import yaml

from supervisor.launcher import stop_supervisor_process
from supervisor.app import Supervisor
from supervisor.deadline import wait_until
from supervisor.paths import RuntimePaths
from supervisor.server import ConfigServer
from supervisor.topology import load_topology, resolve_ports

REPO = Path(__file__).resolve().parent.parent
STANDIN = REPO / "tests" / "standins" / "front_worker.py"


def standin_topology(runtime_dir: Path, services: dict[str, int] | None = None) -> dict[str, Any]:
    """Every port 0; infrastructure external (never contacted); each service runs the stand-in."""
    command = ["{python}", str(STANDIN), "--name", "{name}", "--port", "{port}", "--config-server", "{config_server}"]
    return {
        "runtime_dir": str(runtime_dir),
        "config_server": {"host": "127.0.0.1", "port": 0},
        "kafka": {"backend": "external", "bootstrap_servers": ["127.0.0.1:19092", "127.0.0.1:19093"],
                  "topic": {"name": "front-topic", "partitions": 2, "replication_factor": 2, "min_insync_replicas": 1}},
        "hazelcast": {"backend": "external", "addresses": ["127.0.0.1:15701", "127.0.0.1:15702", "127.0.0.1:15703"],
                      "cluster_name": "front-cluster", "map": "front-map"},
        "restart": {"policy": "always", "backoff_initial": 0.2, "backoff_max": 1, "intensity": 5, "period": 60},
        "services": {
            name: {"instances": n, "ports": [0] * n, "command": command, "replay": name == "messages",
                   "stop_timeout": 5}
            for name, n in (services or {"logging": 2, "messages": 1}).items()
        },
    }


def write_topology(workdir: Path, **kwargs: Any) -> Path:
    path = workdir / "topology.yaml"
    path.write_text(yaml.safe_dump(standin_topology(workdir / "runtime", **kwargs), sort_keys=False))
    return path


@dataclass
class InProcess:
    sup: Supervisor
    server: ConfigServer
    http: aiohttp.ClientSession

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.token}"}

    async def command(self, *argv: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.url}/control/command", json={"argv": list(argv)}, headers=self.auth) as resp:
            return resp.status, await resp.json()

    async def get_json(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}{path}", **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)


@pytest.fixture
async def in_process(tmp_path: Path) -> AsyncIterator[InProcess]:
    """A started Supervisor (stand-ins) with its config server, in this test's event loop."""
    topology = resolve_ports(load_topology(write_topology(tmp_path)))
    sup = Supervisor(topology, RuntimePaths(topology.runtime_dir))
    server = ConfigServer(sup)
    await server.start()
    pids: list[int] = []
    try:
        await sup.start()
        pids = [inst.pid for inst in sup.instances() if inst.pid]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            yield InProcess(sup, server, http)
    finally:
        pids += [inst.pid for inst in sup.instances() if inst.pid]
        await sup.stop()
        await server.stop()
    assert not [pid for pid in pids if _alive(pid)], "a stand-in outlived the supervisor"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def cli(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `python -m supervisor ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "supervisor", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1"}, **kwargs)


@dataclass
class UpProcess:
    """`python -m supervisor up` as a child (stdin not a terminal)."""

    proc: subprocess.Popen[str]
    topology: Path
    paths: RuntimePaths
    output: Path

    def state(self) -> dict[str, Any]:
        return json.loads(self.paths.state_file.read_text())

    def text(self) -> str:
        return self.output.read_text(errors="replace")


async def start_up(workdir: Path, topology: Path | None = None) -> UpProcess:
    topology = topology or write_topology(workdir)
    paths = RuntimePaths(load_topology(topology).runtime_dir)
    output = workdir / "up.out"
    with open(output, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "supervisor", "up", str(topology)], cwd=REPO,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    up = UpProcess(proc, topology, paths, output)

    def ready_or_gone() -> bool:
        return proc.poll() is not None or "ready in" in up.text()

    try:
        await wait_until(ready_or_gone, timeout=60, interval=0.1, what="`up` to print its ready line")
    except BaseException:
        stop_up(up)
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"`up` exited with {proc.returncode}:\n{up.text()}")
    return up


def stop_up(up: UpProcess) -> list[psutil.Process]:
    """SIGTERM `up` and wait; returns its descendants still alive (must be none)."""
    return stop_supervisor_process(up.proc, timeout=60)


@pytest.fixture
async def up_process(tmp_path: Path) -> AsyncIterator[UpProcess]:
    up = await start_up(tmp_path)
    yield up
    assert not stop_up(up), "processes outlived `up`"
