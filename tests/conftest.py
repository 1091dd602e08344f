"""Shared fixtures: the whole pipeline, brought up once per test session by the real CLI.

`pipeline` runs `python -m supervisor up <topology>` as a child process (stdin not a terminal, as in
CI), on a copy of the default topology with every port 0 (free ports) and a temporary runtime
directory. Tests isolate themselves by message ids; a test that kills something revives it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
import urllib.error
import urllib.request
from typing import Any, Iterator

import aiohttp
import psutil
import pytest
import yaml

from supervisor.paths import RuntimePaths

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 240.0
STOP_TIMEOUT = 90.0


def free_port_topology(runtime_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The default topology.yaml with every port set to 0 and the runtime dir replaced."""
    data = yaml.safe_load((REPO / "topology.yaml").read_text())
    data["runtime_dir"] = str(runtime_dir)
    data["config_server"]["port"] = 0
    data["kafka"]["ports"] = [0] * data["kafka"]["brokers"]
    data["kafka"]["controller_ports"] = [0] * data["kafka"]["brokers"]
    data["hazelcast"]["ports"] = [0] * data["hazelcast"]["members"]
    for service in data["services"].values():
        service["ports"] = [0] * service["instances"]
    for key, value in overrides.items():
        data[key] = value
    return data


@dataclass
class Pipeline:
    """A running `supervisor up`, seen from outside as a user sees it."""

    proc: subprocess.Popen[bytes]
    paths: RuntimePaths
    config_url: str
    token: str
    output_path: Path

    async def command(self, *argv: str) -> dict[str, Any]:
        """Run a control verb through the control API; returns the reply ({ok, text, data, error})."""
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{self.config_url}/control/command",
                json={"argv": list(argv)},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=aiohttp.ClientTimeout(total=120),
            ) as resp:
                return await resp.json()

    async def status(self) -> dict[str, dict[str, Any]]:
        reply = await self.command("status", "--json")
        assert reply["ok"], reply
        return {inst["name"]: inst for inst in reply["data"]["instances"]}

    async def services(self, service: str) -> list[dict[str, Any]]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{self.config_url}/services/{service}") as resp:
                return (await resp.json())["instances"]

    async def facade_url(self) -> str:
        facades = await self.services("facade")
        assert facades, "no facade registered"
        return facades[0]["address"]

    async def wait_state(self, name: str, state: str, timeout: float = 60.0) -> None:
        from supervisor.deadline import wait_until

        async def reached() -> bool:
            return (await self.status())[name]["state"] == state

        await wait_until(reached, timeout=timeout, interval=0.2, what=f"{name} to be {state}")

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _dump_logs(paths: RuntimePaths, output_path: Path) -> str:
    parts = [f"--- supervisor output ---\n{output_path.read_text(errors='replace')[-6000:]}"]
    if paths.logs_dir.exists():
        for log in sorted(paths.logs_dir.glob("*.log")):
            parts.append(f"--- {log.name} (tail) ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    return "\n".join(parts)


def _all_running(url: str, token: str) -> bool:
    """True once every instance the supervisor manages is RUNNING (polled through the control API)."""
    request = urllib.request.Request(
        f"{url}/control/command",
        data=json.dumps({"argv": ["status", "--json"]}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            reply = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    instances = (reply.get("data") or {}).get("instances") or []
    return bool(instances) and all(inst["state"] == "RUNNING" for inst in instances)


def start_pipeline(topology: dict[str, Any], workdir: Path) -> Pipeline:
    """Start `supervisor up` on `topology`; wait until it is ready or fail with its logs."""
    topo_path = workdir / "topology.yaml"
    topo_path.write_text(yaml.safe_dump(topology, sort_keys=False))
    paths = RuntimePaths(Path(topology["runtime_dir"]))
    output_path = workdir / "supervisor.out"
    with open(output_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "up", str(topo_path)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"supervisor exited with {proc.returncode}\n{_dump_logs(paths, output_path)}")
        if paths.state_file.exists() and paths.token.exists():
            url = json.loads(paths.state_file.read_text())["url"]
            token = paths.token.read_text().strip()
            if _all_running(url, token):
                return Pipeline(proc, paths, url, token, output_path)
        time.sleep(0.5)  # polling the ready condition, with the deadline above
    logs = _dump_logs(paths, output_path)
    stop_pipeline_process(proc)
    raise TimeoutError(f"pipeline not ready within {START_TIMEOUT:g}s\n{logs}")


def stop_pipeline_process(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    """SIGTERM the supervisor; returns the descendants still alive afterwards (should be none)."""
    children = _descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(children, timeout=15)
    for leftover in alive:
        leftover.kill()
    return alive


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("pipeline")
    running = start_pipeline(free_port_topology(workdir / "runtime"), workdir)
    yield running
    leftovers = stop_pipeline_process(running.proc)
    assert running.proc.returncode == 0, f"supervisor exited with {running.proc.returncode}\n{running.output()[-3000:]}"
    assert not leftovers, f"processes outlived the supervisor: {leftovers}"
