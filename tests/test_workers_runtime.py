"""The shared worker runtime as a process: registration by hand, graceful stop, crashes that exit non-zero.

Real worker processes; the dependency that is unreachable is a closed port, not a fake broker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from supervisor.deadline import wait_until
from tests.fixtures_workers import wait_workers_listed
from workers.metrics import MetricsRegistry
from workers.runtime import EXIT_CRASH, WorkerArgs, WorkerContext
from workers.config_client import ConfigServerClient

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(300)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """`python -m workers.<module> ...` with its output collected; killed if a test leaves it running."""

    def __init__(self, module: str, *args: str) -> None:
        self.argv = [sys.executable, "-m", f"workers.{module}", *args]
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._pump: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "WorkerProcess":
        self.proc = await asyncio.create_subprocess_exec(*self.argv, cwd=REPO, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT)
        self._pump = asyncio.ensure_future(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        async for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace").rstrip())

    async def wait(self, timeout: float) -> int:
        assert self.proc
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._pump:
            await asyncio.wait_for(self._pump, 5)
        return code

    def text(self) -> str:
        return "\n".join(self.output)

    async def __aexit__(self, *exc: object) -> None:
        if self.proc and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._pump:
            self._pump.cancel()


async def stub_config_server(config: dict[str, Any]) -> tuple[web.AppRunner, str]:
    """A config server that serves one document: enough to start a worker against a dead dependency."""
    async def get_config(request: web.Request) -> web.Response:
        return web.json_response({**config, "name": request.match_info["name"]})

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"name": body["name"] or "facade-9", "heartbeat_interval": 1.0, "ttl": 5.0})

    app = web.Application()
    app.add_routes([web.get("/config/{name}", get_config), web.post("/register", register)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def config_doc(bootstrap: str) -> dict[str, Any]:
    return {"service": "facade",
            "kafka": {"bootstrap_servers": bootstrap, "topic": "t", "consumer_group": "g"},
            "hazelcast": {"cluster_name": "c", "members": [f"127.0.0.1:{closed_port()}"], "own_member": None,
                          "map": "m"},
            "limits": {"max_message_bytes": 1024}, "settings": {}}


async def test_unreachable_kafka_ends_the_worker_with_exit_1() -> None:
    runner, url = await stub_config_server(config_doc(f"127.0.0.1:{closed_port()}"))
    try:
        async with WorkerProcess("facade", "--name", "facade-1", "--config-server", url) as worker:
            code = await worker.wait(timeout=90)
    finally:
        await runner.cleanup()
    assert code == EXIT_CRASH, worker.text()
    assert "start failed" in worker.text() and "facade-1" in worker.text(), worker.text()


async def test_bad_config_document_is_named_and_exit_1() -> None:
    doc = config_doc("127.0.0.1:1")
    del doc["kafka"]["topic"]
    runner, url = await stub_config_server(doc)
    try:
        async with WorkerProcess("messages_service", "--name", "messages-1", "--config-server", url) as worker:
            code = await worker.wait(timeout=60)
    finally:
        await runner.cleanup()
    assert code == EXIT_CRASH
    assert "missing key 'kafka.topic'" in worker.text(), worker.text()


async def test_dead_background_task_crashes_the_worker() -> None:
    async with aiohttp.ClientSession() as session:
        ctx = WorkerContext(WorkerArgs("x-1", 0, "127.0.0.1", "http://127.0.0.1:1"), "x", session,
                            ConfigServerClient("http://127.0.0.1:1", session), MetricsRegistry())

        async def boom() -> None:
            raise RuntimeError("lost the broker")

        ctx.spawn(boom(), "consume")
        await asyncio.wait_for(ctx.stop_requested.wait(), 5)
        assert ctx.exit_code == EXIT_CRASH


async def test_worker_started_by_hand_registers_and_leaves_on_sigterm(pipeline: Any) -> None:
    await wait_workers_listed(pipeline)
    managed = {i["name"] for i in await pipeline.services("logging")}
    async with WorkerProcess("logging_service", "--config-server", pipeline.config_url) as worker:
        async def registered() -> list[dict[str, Any]]:
            return [i for i in await pipeline.services("logging") if i["name"] not in managed]

        await wait_until(registered, timeout=60, what="the hand-started worker to be listed")
        (mine,) = await registered()
        assert mine["managed"] is False and mine["name"].startswith("logging-"), mine
        async with aiohttp.ClientSession() as http:
            async def healthy() -> bool:
                async with http.get(f"{mine['address']}/health") as resp:
                    return resp.status == 200
            await wait_until(healthy, timeout=60, what=f"{mine['name']} /health 200")
            async with http.post(f"{mine['address']}/log", json={"id": f"hand-{os.getpid()}", "msg": "by hand"}) as resp:
                assert resp.status in (200, 201)

        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        assert await worker.wait(timeout=30) == 0, worker.text()
    assert not await registered(), "deregistration on SIGTERM did not happen"
    assert f"{mine['name']} received by hand" in worker.text()
