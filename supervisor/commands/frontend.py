"""How a front end (CLI, console) reaches the command layer: in process, or over the control API.

Both runners give the same replies; ``-f`` of ``logs`` and ``events`` becomes a stream here, so
``execute_line`` behaves the same in the console of ``up``, in ``console`` and in one-shot verbs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Protocol

import aiohttp
import psutil

from supervisor.commands import HelpRequested, Reply, UsageError, failure, known_names, parse, run_command
from supervisor.commands.events import format_event
from supervisor.commands.logs import log_paths
from supervisor.commands.logtail import follow
from supervisor.paths import RuntimePaths

if TYPE_CHECKING:
    from supervisor.app import Supervisor


class SupervisorNotFound(RuntimeError):
    """No live supervisor for this runtime directory."""


class Runner(Protocol):
    async def run(self, argv: list[str]) -> Reply: ...
    def stream_logs(self, target: str, lines: int) -> AsyncIterator[str]: ...
    def stream_events(self, recent: int) -> AsyncIterator[dict[str, Any]]: ...
    async def names(self) -> list[str]: ...


class LocalRunner:
    """Inside the supervisor process (the console of ``up``)."""

    def __init__(self, sup: "Supervisor") -> None:
        self.sup = sup

    async def run(self, argv: list[str]) -> Reply:
        return await run_command(self.sup, argv)

    async def stream_logs(self, target: str, lines: int) -> AsyncIterator[str]:
        async for line in follow(log_paths(self.sup, target), lines=lines):
            yield line

    async def stream_events(self, recent: int) -> AsyncIterator[dict[str, Any]]:
        async with self.sup.events.subscribe(replay=recent) as subscription:
            async for event in subscription:
                yield event.to_json()

    async def names(self) -> list[str]:
        return known_names(self.sup)


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str
    pid: int


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _is_supervisor(pid: int) -> bool:
    """The pid runs `-m supervisor` (not an unrelated process that got a recycled pid)."""
    try:
        return "supervisor" in psutil.Process(pid).cmdline()
    except psutil.Error:
        return False


def read_state(paths: RuntimePaths) -> dict[str, Any] | None:
    """supervisor.json if it names a live process, else None."""
    try:
        state = json.loads(paths.state_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or pid == os.getpid() or not pid_alive(pid) or not _is_supervisor(pid):
        return None
    return state


def find_supervisor(paths: RuntimePaths) -> Endpoint:
    state = read_state(paths)
    if state is None:
        raise SupervisorNotFound(
            f"no supervisor is running from {paths.root}; start one with `python -m supervisor up topology.yaml`"
            " (or point to it with --runtime-dir / -t topology.yaml)"
        )
    try:
        token = paths.token.read_text().strip()
    except FileNotFoundError:
        raise SupervisorNotFound(f"supervisor pid {state['pid']} is running but {paths.token} is missing") from None
    except PermissionError:
        raise SupervisorNotFound(f"cannot read {paths.token}: it belongs to another user") from None
    return Endpoint(url=state["url"], token=token, pid=state["pid"])


class RemoteRunner:
    """Over the control API of a running supervisor. Use as ``async with RemoteRunner(endpoint)``."""

    def __init__(self, endpoint: Endpoint, timeout: float = 300.0) -> None:
        self.endpoint = endpoint
        self._timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "RemoteRunner":
        self._http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {self.endpoint.token}"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use `async with RemoteRunner(...)`"
        return self._http

    async def run(self, argv: list[str]) -> Reply:
        try:
            async with self.http.post(
                f"{self.endpoint.url}/control/command",
                json={"argv": argv},
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as resp:
                body = await resp.json(content_type=None)
                reply = Reply.from_json(body if isinstance(body, dict) else {"error": str(body)})
                if not reply.ok and not reply.error:
                    reply = failure(f"HTTP {resp.status}: {body}")
                return Reply(reply.ok, reply.text, reply.data, reply.error, usage_error=resp.status == 400)
        except aiohttp.ClientError as exc:
            return failure(f"supervisor at {self.endpoint.url} does not answer: {exc}")

    async def _stream(self, path: str, params: dict[str, str]) -> AsyncIterator[bytes]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with self.http.get(f"{self.endpoint.url}{path}", params=params, timeout=timeout) as resp:
            if resp.status != 200:
                body = await resp.json(content_type=None)
                raise UsageError(body.get("error") or f"HTTP {resp.status}")
            async for raw in resp.content:
                yield raw

    async def stream_logs(self, target: str, lines: int) -> AsyncIterator[str]:
        async for raw in self._stream(f"/control/logs/{target}", {"lines": str(lines), "follow": "1"}):
            yield raw.decode(errors="replace").rstrip("\n")

    async def stream_events(self, recent: int) -> AsyncIterator[dict[str, Any]]:
        async for raw in self._stream("/control/events", {"recent": str(recent)}):
            yield json.loads(raw)

    async def names(self) -> list[str]:
        reply = await self.run(["status", "--json"])
        if not reply.ok:
            return []
        instances = reply.data["instances"]
        return [i["name"] for i in instances] + list(dict.fromkeys(i["service"] for i in instances))


async def execute_line(
    runner: Runner, argv: list[str], out: Callable[[str], None], err: Callable[[str], None] | None = None
) -> int:
    """Run one command line, printing through ``out`` (errors through ``err``, default ``out``);
    returns an exit code (0 ok, 2 usage error or unknown target, 1 other failure).

    ``logs -f`` and ``events -f`` stream until cancelled; ``--json`` prints the reply's data.
    """
    err = err or out
    try:
        _, args = parse(argv)
    except HelpRequested as help_:
        out(help_.text.rstrip())
        return 0
    except UsageError as exc:
        err(str(exc))
        return 2
    if getattr(args, "follow", False):
        try:
            if argv[0] == "logs":
                async for line in runner.stream_logs(args.target, args.lines):
                    out(line)
            else:
                async for event in runner.stream_events(args.lines):
                    out(format_event(event))
        except UsageError as exc:
            err(f"error: {exc}")
            return 2
        except Exception as exc:  # noqa: BLE001 - UnknownTarget in process, connection loss remotely
            err(f"error: {exc}")
            return 1
        return 0
    reply = await runner.run(argv)
    if getattr(args, "json", False) and reply.ok:
        out(json.dumps(reply.data, indent=2))
    elif reply.ok:
        if reply.text:
            out(reply.text)
    else:
        err(f"error: {reply.error or reply.text}")
    if reply.ok:
        return 0
    return 2 if reply.usage_error else 1
