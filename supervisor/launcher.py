"""Bringing up a whole topology as a child `python -m supervisor up` on free ports, and stopping it.

Used by the test session and by the benchmark: both want a throw-away pipeline that does not clash
with one a user is running, and that leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from supervisor.commands.frontend import Endpoint, SupervisorNotFound, find_supervisor
from supervisor.paths import RuntimePaths

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 300.0
STOP_TIMEOUT = 90.0


def free_port_topology(runtime_dir: Path, source: Path = REPO / "topology.yaml") -> dict[str, Any]:
    """A topology file's content with every port set to 0 (free ports) and its own runtime dir."""
    data = yaml.safe_load(source.read_text())
    data["runtime_dir"] = str(runtime_dir)
    data["config_server"]["port"] = 0
    data["kafka"]["ports"] = [0] * data["kafka"]["brokers"]
    data["kafka"]["controller_ports"] = [0] * data["kafka"]["brokers"]
    data["hazelcast"]["ports"] = [0] * data["hazelcast"]["members"]
    for service in data["services"].values():
        service["ports"] = [0] * service["instances"]
    return data


@dataclass
class LaunchedPipeline:
    proc: subprocess.Popen[bytes]
    paths: RuntimePaths
    address: Endpoint
    output_path: Path

    @property
    def config_url(self) -> str:
        return self.address.url

    @property
    def token(self) -> str:
        return self.address.token

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def stop(self) -> list[psutil.Process]:
        """SIGTERM the supervisor and wait; returns descendants that outlived it (killed, and reported)."""
        return stop_supervisor_process(self.proc)


def stop_supervisor_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> list[psutil.Process]:
    """SIGTERM a `supervisor up` child, SIGKILL it after `timeout`; returns its descendants that
    outlived it (killed here, so a failing test leaves nothing behind, and returned to be reported)."""
    children = _descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(children, timeout=15)
    for leftover in alive:
        leftover.kill()
    return alive


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def expected_instances(topology: dict[str, Any]) -> set[str]:
    """Every instance name the topology declares (the supervisor adds them as it goes)."""
    names: set[str] = set()
    if topology.get("kafka", {}).get("backend", "local") != "external":
        names |= {f"kafka-{i}" for i in range(1, topology["kafka"].get("brokers", 3) + 1)}
    if topology.get("hazelcast", {}).get("backend", "local") != "external":
        names |= {f"hazelcast-{i}" for i in range(1, topology["hazelcast"].get("members", 3) + 1)}
    for service, spec in topology.get("services", {}).items():
        names |= {f"{service}-{i}" for i in range(1, (spec or {}).get("instances", 1) + 1)}
    return names


def _all_running(address: Endpoint, expected: set[str]) -> bool:
    """True once every expected instance is RUNNING (asked through the control API, as a user would)."""
    request = urllib.request.Request(
        f"{address.url}/control/command",
        data=json.dumps({"argv": ["status", "--json"]}).encode(),
        headers={"Authorization": f"Bearer {address.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            reply = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    instances = (reply.get("data") or {}).get("instances") or []
    running = {inst["name"] for inst in instances if inst["state"] == "RUNNING"}
    return expected <= running


def logs_digest(paths: RuntimePaths, output_path: Path, lines: int = 30) -> str:
    """The supervisor's output and the tail of every instance log: what to show when a start fails."""
    parts = [f"--- supervisor output ---\n{output_path.read_text(errors='replace')[-6000:]}"]
    if paths.logs_dir.exists():
        for log in sorted(paths.logs_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name} (tail) ---\n" + "\n".join(tail))
    return "\n".join(parts)


def launch(topology: dict[str, Any], workdir: Path, timeout: float = START_TIMEOUT) -> LaunchedPipeline:
    """Run `supervisor up` on `topology` in the background; return once every instance is RUNNING."""
    workdir.mkdir(parents=True, exist_ok=True)
    topo_path = workdir / "topology.yaml"
    topo_path.write_text(yaml.safe_dump(topology, sort_keys=False))
    paths = RuntimePaths(Path(topology["runtime_dir"]))
    output_path = workdir / "supervisor.out"
    expected = expected_instances(topology)
    with open(output_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "up", str(topo_path)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"supervisor exited with {proc.returncode}\n{logs_digest(paths, output_path)}")
        try:
            address = find_supervisor(paths)
        except SupervisorNotFound:
            address = None  # not up yet
        if address is not None and _all_running(address, expected):
            return LaunchedPipeline(proc, paths, address, output_path)
        time.sleep(0.5)  # polling the ready condition, within the deadline above
    launched = LaunchedPipeline(proc, paths, Endpoint("", "", proc.pid), output_path)
    digest = logs_digest(paths, output_path)
    launched.stop()
    raise TimeoutError(f"pipeline not ready within {timeout:g}s\n{digest}")
