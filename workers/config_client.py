"""Client of the config server (the supervisor's registry): config, registration, service lookup."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


class ConfigServerError(RuntimeError):
    """The config server answered something unusable, or not at all before the deadline."""


@dataclass(frozen=True)
class Registration:
    name: str
    heartbeat_interval: float
    ttl: float


class ConfigServerClient:
    """Talks to one config server over a shared aiohttp session (the worker owns the session)."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession, *, request_timeout: float = 3.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)

    async def _request(self, method: str, path: str, json: Any = None) -> tuple[int, Any]:
        async with self._session.request(method, self.base_url + path, json=json, timeout=self._timeout) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = None
            return resp.status, body

    async def _with_retry(self, method: str, path: str, json: Any, *, timeout: float) -> Any:
        """Retry connection failures and 5xx until `timeout`; a 4xx is final."""
        deadline = time.monotonic() + timeout
        last = "no attempt"
        while True:
            try:
                status, body = await self._request(method, path, json)
                if status < 300:
                    return body
                last = f"HTTP {status}: {body}"
                if status < 500:
                    raise ConfigServerError(f"{method} {self.base_url}{path}: {last}")
            except RETRYABLE as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise ConfigServerError(f"{method} {self.base_url}{path}: no answer within {timeout}s ({last})")
            await asyncio.sleep(0.2)

    async def fetch_config(self, name: str, *, timeout: float = 30.0) -> dict[str, Any]:
        body = await self._with_retry("GET", f"/config/{name}", None, timeout=timeout)
        if not isinstance(body, dict):
            raise ConfigServerError(f"/config/{name}: expected a JSON object, got {body!r}")
        return body

    async def register(self, service: str, address: str, name: str | None, *, timeout: float = 30.0) -> Registration:
        body = await self._with_retry("POST", "/register", {"service": service, "address": address, "name": name},
                                      timeout=timeout)
        try:
            return Registration(str(body["name"]), float(body.get("heartbeat_interval", 1.0)),
                                float(body.get("ttl", 5.0)))
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigServerError(f"/register: bad reply {body!r}") from exc

    async def heartbeat(self, name: str) -> bool:
        """True if the registry knows us; False on 404 (register again). Raises on transport errors."""
        status, body = await self._request("POST", f"/heartbeat/{name}")
        if status == 404:
            return False
        if status >= 300:
            raise ConfigServerError(f"/heartbeat/{name}: HTTP {status}: {body}")
        return True

    async def deregister(self, name: str) -> None:
        status, body = await self._request("DELETE", f"/register/{name}")
        if status >= 300 and status != 404:
            raise ConfigServerError(f"DELETE /register/{name}: HTTP {status}: {body}")

    async def instances(self, service: str) -> list[dict[str, Any]]:
        """RUNNING instances of a service, as listed by GET /services/{service} (one attempt)."""
        status, body = await self._request("GET", f"/services/{service}")
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("instances"), list):
            raise ConfigServerError(f"/services/{service}: HTTP {status}: {body}")
        return [i for i in body["instances"] if isinstance(i, dict) and isinstance(i.get("address"), str)]
