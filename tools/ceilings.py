"""The ceilings the pipeline is compared with, measured on the same machine in the same run.

- a bare aiohttp handler that does nothing (in a child process, like the facade), loaded with the same
  client code as the facade (tools.load.post_messages) so the ratio compares servers, not clients;
- a raw aiokafka producer (acks=all, idempotent) into the pipeline's topic;
- raw Hazelcast put_if_absent calls into a scratch map of the pipeline's cluster.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from typing import Awaitable, Callable

import aiohttp
from aiokafka import AIOKafkaProducer
from hazelcast.asyncio import HazelcastClient

from supervisor.deadline import wait_until
from supervisor.ports import free_port
from tools.load import percentile

BARE_SERVER = """
import sys
from aiohttp import web
async def ok(request):
    await request.read()
    return web.json_response({"id": "x"}, status=201)
app = web.Application()
app.router.add_post("/messages", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


class BareAiohttp:
    """A do-nothing aiohttp server in a child process: the HTTP ceiling."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> "BareAiohttp":
        self.proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(self.port)])

        async def answers() -> bool:
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{self.url}/messages", data=b"{}") as resp:
                    return resp.status == 201

        await wait_until(answers, timeout=20, what="the bare aiohttp server")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


async def _concurrently(count: int, concurrency: int, one: Callable[[], Awaitable[None]]) -> tuple[float, list[float]]:
    """Run `one()` count times, `concurrency` at a time; returns (elapsed seconds, latencies ms)."""
    latencies: list[float] = []
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            began = time.monotonic()
            await one()
            latencies.append((time.monotonic() - began) * 1000)

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - began, latencies


def summarize(count: int, elapsed: float, latencies: list[float], errors: int = 0) -> dict[str, float]:
    return {
        "count": count, "rate": round(count / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2),
        "p999_ms": round(percentile(latencies, 99.9), 2), "errors": errors,
    }


async def kafka_producer_ceiling(bootstrap: str, topic: str, count: int, concurrency: int) -> dict[str, float]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        payload = b'{"id": "ceiling", "msg": "ceiling"}'

        async def one() -> None:
            await producer.send_and_wait(topic, key=uuid.uuid4().hex.encode(), value=payload)

        elapsed, latencies = await _concurrently(count, concurrency, one)
    finally:
        await producer.stop()
    return summarize(count, elapsed, latencies)


async def hazelcast_ceiling(members: list[str], cluster_name: str, count: int, concurrency: int) -> dict[str, float]:
    client = await HazelcastClient.create_and_start(cluster_name=cluster_name, cluster_members=members)
    try:
        scratch = await client.get_map(f"bench-{uuid.uuid4().hex[:8]}")

        async def one() -> None:
            await scratch.put_if_absent(uuid.uuid4().hex, "ceiling")

        elapsed, latencies = await _concurrently(count, concurrency, one)
        await scratch.destroy()
    finally:
        await client.shutdown()
    return summarize(count, elapsed, latencies)
