"""Readiness probes: small async checks that something answers (HTTP 200, a worker's /health, a TCP port)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import aiohttp

Probe = Callable[[], Awaitable[bool]]


async def tcp_port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


def tcp_probe(host: str, port: int, timeout: float = 2.0) -> Probe:
    """Ready when a TCP connection to host:port succeeds."""
    return lambda: tcp_port_open(host, port, timeout)


def http_probe(url: str, timeout: float = 2.0) -> Probe:
    """Ready when GET url answers 200."""

    async def probe() -> bool:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(url) as resp:
                return resp.status == 200

    return probe


def worker_probe(url: str, timeout: float = 2.0) -> Probe:
    """Ready when the worker's /health answers 200, or answers 503 with `"ready": true`: it finished
    starting and serves, but a dependency is down right now (say two Kafka brokers, so the facade
    refuses writes with 503). Restarting it would not bring the dependency back, so it counts as up."""

    async def probe() -> bool:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
            async with http.get(url) as resp:
                if resp.status == 200:
                    return True
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    return False
                return isinstance(body, dict) and body.get("ready") is True

    return probe
