"""Shared fixtures: the whole pipeline, brought up once per test session by the real CLI.

`pipeline` runs `python -m supervisor up <topology>` as a child process (stdin not a terminal, as in
CI), on a copy of the default topology with every port 0 (free ports) and a temporary runtime
directory. Tests isolate themselves by message ids; a test that kills something revives it.
"""

from __future__ import annotations

from typing import Any, Iterator

import aiohttp
import pytest

from supervisor.deadline import wait_until
from supervisor.launcher import LaunchedPipeline, free_port_topology, launch


class Pipeline(LaunchedPipeline):
    """The running pipeline plus what tests ask of it, all through public HTTP endpoints."""

    async def command(self, *argv: str) -> dict[str, Any]:
        """Run a control verb through the control API; returns the reply ({ok, text, data, error})."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            async with http.post(f"{self.config_url}/control/command", json={"argv": list(argv)},
                                 headers={"Authorization": f"Bearer {self.token}"}) as resp:
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
        async def reached() -> bool:
            return (await self.status())[name]["state"] == state

        await wait_until(reached, timeout=timeout, interval=0.2, what=f"{name} to be {state}")


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    workdir = tmp_path_factory.mktemp("pipeline")
    launched = launch(free_port_topology(workdir / "runtime"), workdir)
    running = Pipeline(launched.proc, launched.paths, launched.address, launched.output_path)
    yield running
    leftovers = running.stop()
    assert running.proc.returncode == 0, f"supervisor exited with {running.proc.returncode}\n{running.output()[-3000:]}"
    assert not leftovers, f"processes outlived the supervisor: {leftovers}"
