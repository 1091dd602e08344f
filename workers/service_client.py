"""Call any RUNNING instance of a service, failing over to another one within a deadline.

The instance list comes from the config server (GET /services/{service}) and is cached briefly; a
failed call drops the cache so the next attempt sees the registry's current view.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from workers.config_client import ConfigServerClient, ConfigServerError
from workers.metrics import Counter

log = logging.getLogger(__name__)


class NoInstanceAnswered(RuntimeError):
    """No instance of the service gave a usable answer before the deadline; the message says why."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    instance: str


class ServiceClient:
    def __init__(self, service: str, config_server: ConfigServerClient, session: aiohttp.ClientSession, *,
                 failovers: Counter, cache_ttl: float = 1.0, attempt_timeout: float = 3.0) -> None:
        self.service = service
        self._registry = config_server
        self._session = session
        self._cache_ttl = cache_ttl
        self._attempt_timeout = attempt_timeout
        self._cached: list[dict[str, Any]] = []
        self._cached_at = float("-inf")
        self._failovers = failovers     # labelled by service

    def invalidate(self) -> None:
        self._cached_at = float("-inf")

    async def instances(self) -> list[dict[str, Any]]:
        if time.monotonic() - self._cached_at > self._cache_ttl:
            self._cached = await self._registry.instances(self.service)
            self._cached_at = time.monotonic()
        return self._cached

    async def request(self, method: str, path: str, *, json: Any = None, timeout: float) -> Answer:
        """First answer below 500 from a random instance; other instances are tried on failure.

        Connection errors, timeouts and 5xx count as failures. The same request (same body, so the
        same message id) goes to the next instance: callers rely on the service being idempotent.
        """
        deadline = time.monotonic() + timeout
        tried: set[str] = set()
        reasons: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NoInstanceAnswered(f"no {self.service} instance answered within {timeout:.1f}s"
                                         f" ({'; '.join(reasons[-3:]) or 'none registered'})")
            try:
                candidates = [i for i in await self.instances() if i["name"] not in tried]
            except (ConfigServerError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
                reasons.append(f"registry: {exc}")
                candidates = []
            if not candidates:
                tried.clear()          # a new round: everyone may have recovered
                self.invalidate()
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                continue
            inst = random.choice(candidates)
            tried.add(inst["name"])
            try:
                return await self._call(inst, method, path, json, min(remaining, self._attempt_timeout))
            except (aiohttp.ClientError, asyncio.TimeoutError, _ServerError) as exc:
                reasons.append(f"{inst['name']}: {type(exc).__name__}: {exc}")
                log.warning("%s %s on %s failed (%s); trying another instance", method, path, inst["name"],
                            reasons[-1])
                self._failovers.inc(service=self.service)
                self.invalidate()

    async def _call(self, inst: dict[str, Any], method: str, path: str, json: Any, timeout: float) -> Answer:
        async with self._session.request(method, inst["address"] + path, json=json,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            if resp.status >= 500:
                raise _ServerError(f"HTTP {resp.status}: {body}")
            return Answer(resp.status, body, inst["name"])


class _ServerError(Exception):
    pass
