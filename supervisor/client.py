"""A client of a running supervisor: its config server (no token) and its control API (token).

Finds the supervisor through the runtime directory (supervisor.json and control.token), the way the
one-shot CLI verbs, the chaos runner and the tests all reach it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from supervisor.paths import RuntimePaths


class SupervisorNotRunning(RuntimeError):
    pass


@dataclass(frozen=True)
class SupervisorAddress:
    url: str
    token: str

    @classmethod
    def from_runtime_dir(cls, paths: RuntimePaths) -> "SupervisorAddress":
        try:
            state = json.loads(paths.state_file.read_text())
            token = paths.token.read_text().strip()
        except FileNotFoundError:
            raise SupervisorNotRunning(
                f"no supervisor is running from {paths.root} (no {paths.state_file.name}); start one with "
                "`python -m supervisor up topology.yaml`"
            ) from None
        return cls(url=state["url"], token=token)


class SupervisorClient:
    """One aiohttp session to a running supervisor; use as `async with SupervisorClient(addr) as sup:`."""

    def __init__(self, address: SupervisorAddress, timeout: float = 120.0) -> None:
        self.address = address
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "SupervisorClient":
        self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use `async with SupervisorClient(...)`"
        return self._http

    async def command(self, *argv: str) -> dict[str, Any]:
        """Run one control verb; returns the reply {ok, text, data, error}."""
        try:
            async with self.http.post(
                f"{self.address.url}/control/command",
                json={"argv": list(argv)},
                headers={"Authorization": f"Bearer {self.address.token}"},
            ) as resp:
                return await resp.json()
        except aiohttp.ClientConnectionError as exc:
            raise SupervisorNotRunning(f"supervisor at {self.address.url} does not answer: {exc}") from exc

    async def checked(self, *argv: str) -> Any:
        """Run a verb that must succeed; returns its `data`."""
        reply = await self.command(*argv)
        if not reply.get("ok"):
            raise RuntimeError(f"`{' '.join(argv)}` failed: {reply.get('error') or reply.get('text')}")
        return reply.get("data")

    async def instances(self, service: str) -> list[dict[str, Any]]:
        """The registered (RUNNING) instances of a service, from the config server."""
        async with self.http.get(f"{self.address.url}/services/{service}") as resp:
            if resp.status == 404:
                return []
            return (await resp.json())["instances"]

    async def worker_config(self, name: str) -> dict[str, Any]:
        async with self.http.get(f"{self.address.url}/config/{name}") as resp:
            resp.raise_for_status()
            return await resp.json()
