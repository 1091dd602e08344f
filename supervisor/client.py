"""A program's client of a running supervisor (chaos runner, benchmark, tests).

The front ends' RemoteRunner plus what programs need on top: replies that must succeed, and the
config server's registry and config documents.
"""

from __future__ import annotations

from typing import Any

from supervisor.commands.frontend import Endpoint, RemoteRunner


class SupervisorClient(RemoteRunner):
    """Use as `async with SupervisorClient(endpoint) as client:`."""

    async def command(self, *argv: str) -> dict[str, Any]:
        """Run one control verb; returns the reply {ok, text, data, error}."""
        return (await self.run(list(argv))).to_json()

    async def checked(self, *argv: str) -> Any:
        """Run a verb that must succeed; returns its `data`."""
        reply = await self.run(list(argv))
        if not reply.ok:
            raise RuntimeError(f"`{' '.join(argv)}` failed: {reply.error or reply.text}")
        return reply.data

    async def instances(self, service: str) -> list[dict[str, Any]]:
        """The registered (RUNNING) instances of a service, from the config server."""
        async with self.http.get(f"{self.endpoint.url}/services/{service}") as resp:
            if resp.status == 404:
                return []
            return (await resp.json())["instances"]

    async def worker_config(self, name: str) -> dict[str, Any]:
        async with self.http.get(f"{self.endpoint.url}/config/{name}") as resp:
            resp.raise_for_status()
            return await resp.json()


__all__ = ["Endpoint", "SupervisorClient"]
