"""The one aiohttp app on the config server port: registry routes (open, loopback) and control
routes (Bearer token from ``control.token``). Every error is a JSON body with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from supervisor.commands import failure, run_command
from supervisor.commands.logtail import follow, tail_many
from supervisor.registry import RegistryError

if TYPE_CHECKING:
    from supervisor.app import Supervisor

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SUP_KEY: web.AppKey["Supervisor"] = web.AppKey("sup")
SERVER_KEY: web.AppKey["ConfigServer"] = web.AppKey("server")
MAX_BODY = 64 * 1024
MAX_LOG_LINES = 10_000


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def write_token(path: Path) -> str:
    """A fresh random token in a 0600 file (created with that mode, never world-readable)."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, token.encode())
    finally:
        os.close(fd)
    return token


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's HTML/plain error pages and unexpected exceptions into JSON error bodies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error(exc.status, exc.reason if exc.status in (404, 405) else (exc.text or exc.reason))
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # the client went away (a stream reader pressed Ctrl-C): nothing to answer
    except Exception as exc:  # noqa: BLE001 - a bug in a handler must still answer with JSON
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


@web.middleware
async def control_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/control/"):
        return await handler(request)
    expected = request.app[SERVER_KEY].token
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return error(401, "missing token: send 'Authorization: Bearer <token from control.token>'")
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return error(401, "wrong token")
    return await handler(request)


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"body is not valid JSON: {exc}") from None


# -- registry routes ---------------------------------------------------------------------------


async def get_services(request: web.Request) -> web.Response:
    return web.json_response({"services": request.app[SUP_KEY].registry.services()})


async def get_service(request: web.Request) -> web.Response:
    registry = request.app[SUP_KEY].registry
    service = request.match_info["service"]
    try:
        instances = registry.instances_of(service)
    except KeyError:
        known = ", ".join(registry.services())
        return error(404, f"unknown service {service!r}; known services: {known}")
    return web.json_response({"service": service, "instances": instances})


async def get_config(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        return web.json_response(request.app[SUP_KEY].registry.config_for(name))
    except KeyError:
        known = ", ".join(request.app[SUP_KEY].topology.services)
        return error(404, f"unknown instance or service {name!r}; services: {known}")


async def post_register(request: web.Request) -> web.Response:
    body = await _json_body(request)
    if not isinstance(body, dict):
        return error(400, "body must be a JSON object {service, address, name}")
    service, address, name = body.get("service"), body.get("address"), body.get("name")
    if not isinstance(service, str) or not isinstance(address, str):
        return error(400, "'service' and 'address' must be strings")
    if name is not None and not isinstance(name, str):
        return error(400, "'name' must be a string or null")
    try:
        return web.json_response(request.app[SUP_KEY].registry.register(service, address, name))
    except RegistryError as exc:
        return error(400, str(exc))


async def post_heartbeat(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if request.app[SUP_KEY].registry.heartbeat(name):
        return web.json_response({"name": name})
    return error(404, f"{name!r} is not registered (or its lease expired): register again")


async def delete_register(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    request.app[SUP_KEY].registry.deregister(name)
    return web.json_response({"name": name})


# -- control routes ----------------------------------------------------------------------------


async def post_command(request: web.Request) -> web.Response:
    try:
        body = await _json_body(request)
    except web.HTTPBadRequest as exc:
        reply = failure(exc.text or "bad body", usage=True)
    else:
        argv = body.get("argv") if isinstance(body, dict) else None
        if not isinstance(argv, list):
            reply = failure('body must be {"argv": ["verb", "arg", ...]}', usage=True)
        else:
            reply = await run_command(request.app[SUP_KEY], argv)
    return web.json_response(reply.to_json(), status=reply.http_status)


async def get_events(request: web.Request) -> web.StreamResponse:
    """NDJSON: the recent ring (or its last ``?recent=N``), then every new event until the client or the server goes away."""
    sup = request.app[SUP_KEY]
    try:
        recent = int(request.query.get("recent", str(len(sup.events.recent()))))
    except ValueError:
        return error(400, f"recent must be an integer, got {request.query['recent']!r}")
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    with request.app[SERVER_KEY].streaming(), contextlib.suppress(ConnectionResetError):
        async with sup.events.subscribe(replay=max(recent, 0)) as subscription:
            async for event in subscription:
                await response.write(json.dumps(event.to_json()).encode() + b"\n")
    return response


async def get_logs(request: web.Request) -> web.StreamResponse:
    sup = request.app[SUP_KEY]
    target = request.match_info["target"]
    try:
        lines = int(request.query.get("lines", "50"))
    except ValueError:
        return error(400, f"lines must be an integer, got {request.query['lines']!r}")
    if not 0 <= lines <= MAX_LOG_LINES:
        return error(400, f"lines must be between 0 and {MAX_LOG_LINES}, got {lines}")
    reply = await run_command(sup, ["logs", target, "-n", "0"])  # resolves the target, same errors
    if not reply.ok:
        return web.json_response(reply.to_json(), status=reply.http_status)
    paths = {name: Path(path) for name, path in reply.data["files"].items()}
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    if request.query.get("follow") in ("1", "true", "yes"):
        with request.app[SERVER_KEY].streaming(), contextlib.suppress(ConnectionResetError):
            async for line in follow(paths, lines=lines):
                await response.write(line.encode() + b"\n")
        return response
    await response.write("".join(f"{line}\n" for line in tail_many(paths, lines)).encode())
    await response.write_eof()
    return response


class ConfigServer:
    """Serves the registry and the control API for one Supervisor; owns the token file."""

    def __init__(self, sup: "Supervisor", *, host: str | None = None, port: int | None = None) -> None:
        self.sup = sup
        self.host = host or sup.topology.config_server.host
        self.port = sup.topology.config_server.port if port is None else port
        self.token = ""
        self._runner: web.AppRunner | None = None
        self._streams: set[asyncio.Task[Any]] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors, control_auth], client_max_size=MAX_BODY)
        app[SUP_KEY] = self.sup
        app[SERVER_KEY] = self
        app.router.add_get("/services", get_services)
        app.router.add_get("/services/{service}", get_service)
        app.router.add_get("/config/{name}", get_config)
        app.router.add_post("/register", post_register)
        app.router.add_post("/heartbeat/{name}", post_heartbeat)
        app.router.add_delete("/register/{name}", delete_register)
        app.router.add_post("/control/command", post_command)
        app.router.add_get("/control/events", get_events)
        app.router.add_get("/control/logs/{target}", get_logs)
        return app

    async def start(self) -> None:
        self.token = write_token(self.sup.paths.token)
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        if self.port == 0:  # bound to a free port: report the real one
            sockets = self._runner.addresses
            self.port = sockets[0][1]
        log.info("config server listening on %s", self.url)

    async def stop(self) -> None:
        for task in list(self._streams):  # endless streams would hold the shutdown
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def streaming(self) -> "_StreamGuard":
        return _StreamGuard(self._streams)


class _StreamGuard:
    """Registers the current handler task as an endless stream that stop() must cancel."""

    def __init__(self, streams: set[asyncio.Task[Any]]) -> None:
        self._streams = streams
        self._task = asyncio.current_task()

    def __enter__(self) -> None:
        if self._task is not None:
            self._streams.add(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._streams.discard(self._task)


__all__ = ["ConfigServer", "write_token"]
