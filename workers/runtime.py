"""What every worker shares: command line, config from the config server, registration and heartbeat,
/health and /metrics, owned background tasks, signals and graceful stop, logging.

A service is a `Worker` subclass (routes + start/stop hooks + health checks); `run_worker(cls)` is its
`main()`. Lifecycle of one process:

    bind socket -> [register if no --name] -> GET /config/{name} -> serve (worker routes 503 until ready)
    -> worker.start() (connect Kafka/Hazelcast) -> ready -> register + heartbeat
    SIGTERM/SIGINT -> deregister -> stop accepting, finish in-flight -> cancel tasks -> worker.stop()

Any owned task that dies, or a dependency that gives up, is a crash: logged, then exit code 1, so the
supervisor restarts the worker instead of it hanging behind a green /health.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.handlers
import os
import queue
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

import aiohttp
from aiohttp import web

from workers.config import ConfigError, WorkerConfig, parse_config
from workers.config_client import ConfigServerClient, ConfigServerError
from workers.http import json_error, make_middleware
from workers.metrics import MetricsRegistry

DEFAULT_CONFIG_SERVER = "http://127.0.0.1:8500"
EXIT_CRASH = 1
EXIT_BAD_FAULT = 2         # PIPELINE_FAULT names no known fault
EXIT_FAULT = 3             # an injected fault (PIPELINE_FAULT=crash-at-start)
FAULTS = ("crash-at-start",)
STOP_BUDGET = 8.0          # seconds for in-flight requests to finish on SIGTERM
HARD_EXIT_AFTER = 15.0     # a stop that hangs longer than this ends with os._exit

LOG_PREVIEW = 200

log = logging.getLogger("workers")


def preview(text: str) -> str:
    """A message as shown in a log line: long ones are cut."""
    return text if len(text) <= LOG_PREVIEW else text[:LOG_PREVIEW] + f"... ({len(text)} chars)"


@dataclass(frozen=True)
class WorkerArgs:
    name: str | None
    port: int
    host: str
    config_server: str


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {value}")
    return value


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"config server must be an http(s) URL, got {text!r}")
    return text.rstrip("/")


def parse_args(service: str, argv: list[str] | None = None, env: Mapping[str, str] | None = None,
               prog: str | None = None) -> WorkerArgs:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(prog=prog, description=f"the {service} worker")
    parser.add_argument("--name", help="instance name (default: assigned by the config server)")
    parser.add_argument("--port", type=_port, default=0, help="HTTP port (default: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--config-server", type=_url,
                        default=_url(env.get("PIPELINE_CONFIG_SERVER", DEFAULT_CONFIG_SERVER)),
                        help="config server URL (default: $PIPELINE_CONFIG_SERVER or %(default)s)")
    ns = parser.parse_args(argv)
    return WorkerArgs(name=ns.name or None, port=ns.port, host=ns.host, config_server=ns.config_server)


class _InstanceNameFilter(logging.Filter):
    """Puts the (possibly later assigned) instance name on every log record."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.instance = name

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        return True


def _setup_logging(initial_name: str) -> tuple[_InstanceNameFilter, logging.handlers.QueueListener]:
    """Log lines are formatted on the event loop but written by a thread: a slow reader of our stdout
    (the supervisor's log pump) must never stall request handling. Stop the listener to flush."""
    name_filter = _InstanceNameFilter(initial_name)
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    enqueue = logging.handlers.QueueHandler(lines)
    enqueue.addFilter(name_filter)
    enqueue.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(instance)s %(message)s"))
    writer = logging.StreamHandler(sys.stdout)
    listener = logging.handlers.QueueListener(lines, writer)
    root = logging.getLogger()
    root.handlers[:] = [enqueue]
    root.setLevel(logging.INFO)
    for noisy in ("aiokafka", "kafka", "aiohttp.access", "hazelcast"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    listener.start()
    return name_filter, listener


class WorkerContext:
    """What a service gets from the runtime: identity, config, metrics, one HTTP session, owned tasks."""

    def __init__(self, args: WorkerArgs, service: str, session: aiohttp.ClientSession,
                 config_server: ConfigServerClient, metrics: MetricsRegistry) -> None:
        self.args = args
        self.service = service
        self.name: str = args.name or service
        self.config: WorkerConfig | None = None
        self.http = session
        self.config_server = config_server
        self.metrics = metrics
        self.address = ""
        self.stopping = False
        self.exit_code = 0
        self.stop_requested = asyncio.Event()
        self.flush_logs: Callable[[], None] | None = None   # set by _serve: writes out queued log lines
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def cfg(self) -> WorkerConfig:
        if self.config is None:
            raise RuntimeError("config not loaded yet")
        return self.config

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task that must live as long as the worker; its death crashes the worker."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self.stopping:
            return
        if task.cancelled():
            self.crash(f"background task {task.get_name()} was cancelled")
        elif task.exception() is not None:
            exc = task.exception()
            log.error("background task %s died", task.get_name(), exc_info=exc)
            self.crash(f"background task {task.get_name()} died: {type(exc).__name__}: {exc}")
        else:
            self.crash(f"background task {task.get_name()} ended unexpectedly")

    def crash(self, reason: str) -> None:
        """Stop the worker with a non-zero exit code (the supervisor's restart policy takes over)."""
        if self.stopping:
            return
        log.critical("crashing: %s", reason)
        self.exit_code = EXIT_CRASH
        self.stop_requested.set()

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)


class Worker:
    """Base of the three services. Override what you need; keep `start` idempotent-free and simple."""

    service: ClassVar[str] = ""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.log = logging.getLogger(f"workers.{self.service}")

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self) -> None:
        """Connect the dependencies. Raising here ends the worker with exit code 1."""

    async def stop(self) -> None:
        """Close the dependencies (after in-flight requests finished)."""

    def health(self) -> dict[str, bool]:
        """Dependency name -> connected. /health is 200 only if all are True."""
        return {}

    # Checks that may be red while the worker still counts as ready (up) for the supervisor: it serves
    # and answers 503 with the reason, and a restart would not bring that dependency back.
    ready_despite: ClassVar[frozenset[str]] = frozenset()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"error: cannot bind {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _build_app(worker: Worker, ctx: WorkerContext, ready: asyncio.Event) -> web.Application:
    @web.middleware
    async def not_before_ready(request: web.Request, handler: Any) -> web.StreamResponse:
        if not ready.is_set() and request.path not in ("/health", "/metrics"):
            return json_error(503, f"{ctx.name} is starting")
        return await handler(request)

    async def health(_: web.Request) -> web.Response:
        checks = worker.health() if ready.is_set() else {"started": False}
        ok = all(checks.values()) and ready.is_set() and not ctx.stopping
        # ready: started and serving, though a check in ready_despite may be red (status says so); the
        # supervisor counts a ready worker as up instead of restarting it in a loop
        serving = ready.is_set() and not ctx.stopping and all(
            up for name, up in checks.items() if name not in worker.ready_despite)
        body = {"name": ctx.name, "service": ctx.service, "status": "ok" if ok else "unavailable",
                "ready": serving, "checks": checks}
        if ctx.stopping:
            body["status"] = "stopping"
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=ctx.metrics.render().encode(),
                            headers={"Content-Type": MetricsRegistry.CONTENT_TYPE})

    app = web.Application(middlewares=[make_middleware(ctx.metrics), not_before_ready])
    app.add_routes([web.get("/health", health), web.get("/metrics", metrics), *worker.routes()])
    return app


async def _heartbeat(ctx: WorkerContext, interval: float) -> None:
    """Keep an unmanaged registration alive; re-register after a 404. Transport errors only log."""
    failing = False
    while True:
        await asyncio.sleep(interval)
        try:
            if not await ctx.config_server.heartbeat(ctx.name):
                log.info("registry forgot %s; registering again", ctx.name)
                await ctx.config_server.register(ctx.service, ctx.address, ctx.name, timeout=interval)
            if failing:
                log.info("config server reachable again")
            failing = False
        except (aiohttp.ClientError, asyncio.TimeoutError, ConfigServerError) as exc:
            if not failing:
                log.warning("heartbeat failed (will keep trying): %s", exc)
            failing = True


async def _serve(worker_cls: type[Worker], args: WorkerArgs, name_filter: _InstanceNameFilter,
                 listener: logging.handlers.QueueListener) -> int:
    loop = asyncio.get_running_loop()
    metrics = MetricsRegistry()
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    async with aiohttp.ClientSession() as session:
        ctx = WorkerContext(args, worker_cls.service, session, ConfigServerClient(args.config_server, session),
                            metrics)
        ctx.flush_logs = listener.stop
        ctx.address = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ctx.stop_requested.set)
        try:
            if args.name is None:
                reg = await ctx.config_server.register(ctx.service, ctx.address, None)
                ctx.name = name_filter.instance = reg.name
            ctx.config = parse_config(await ctx.config_server.fetch_config(ctx.name))
        except (ConfigServerError, ConfigError) as exc:
            log.critical("cannot get my config: %s", exc)
            sock.close()
            return EXIT_CRASH
        worker = worker_cls(ctx)
        ready = asyncio.Event()
        runner = web.AppRunner(_build_app(worker, ctx, ready), access_log=None, shutdown_timeout=STOP_BUDGET,
                               handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock, shutdown_timeout=STOP_BUDGET).start()
        log.info("listening on %s", ctx.address)
        started = await _start_worker(worker, ctx, ready)
        await ctx.stop_requested.wait()
        return await _stop(worker, ctx, runner, started)


async def _start_worker(worker: Worker, ctx: WorkerContext, ready: asyncio.Event) -> bool:
    """Run worker.start() unless a stop comes first; then register and heartbeat."""
    start = asyncio.ensure_future(worker.start())
    stop = asyncio.ensure_future(ctx.stop_requested.wait())
    await asyncio.wait([start, stop], return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not start.done():
        start.cancel()
        await asyncio.wait([start])
        return False
    if start.exception() is not None:
        exc = start.exception()
        log.critical("start failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
        ctx.exit_code = EXIT_CRASH
        ctx.stop_requested.set()
        return True   # partly started: stop() must still close what was opened
    ready.set()
    checks = ", ".join(f"{k}={'ok' if v else 'not yet'}" for k, v in worker.health().items())
    log.info("started (%s)", checks or "no dependencies")
    try:
        reg = await ctx.config_server.register(ctx.service, ctx.address, ctx.name, timeout=10.0)
        ctx.spawn(_heartbeat(ctx, reg.heartbeat_interval), "heartbeat")
    except ConfigServerError as exc:
        ctx.crash(f"cannot register: {exc}")
    return True


async def _stop(worker: Worker, ctx: WorkerContext, runner: web.AppRunner, started: bool) -> int:
    loop = asyncio.get_running_loop()
    watchdog = loop.call_later(HARD_EXIT_AFTER, _hard_exit, ctx)
    ctx.stopping = True
    log.info("stopping%s", " after a crash" if ctx.exit_code else "")
    try:
        await asyncio.wait_for(ctx.config_server.deregister(ctx.name), 2.0)
    except (aiohttp.ClientError, asyncio.TimeoutError, ConfigServerError) as exc:
        log.info("could not deregister (%s); the registry's TTL will drop me", exc)
    await runner.cleanup()          # stop accepting, let in-flight requests finish (STOP_BUDGET)
    await ctx.cancel_tasks()
    if started:
        try:
            await asyncio.wait_for(worker.stop(), 5.0)
        except Exception as exc:  # closing is best effort; the exit code already says what happened
            log.warning("error while closing: %s: %s", type(exc).__name__, exc)
    watchdog.cancel()
    log.info("stopped (exit code %d)", ctx.exit_code)
    return ctx.exit_code


def _hard_exit(ctx: WorkerContext) -> None:
    log.error("stop took longer than %.0fs; exiting now", HARD_EXIT_AFTER)
    if ctx.flush_logs is not None:
        ctx.flush_logs()
    logging.shutdown()
    os._exit(ctx.exit_code or EXIT_CRASH)


def inject_fault(name: str, env: Mapping[str, str]) -> None:
    """PIPELINE_FAULT=crash-at-start: say so and exit with EXIT_FAULT before serving (for crash-loop drills)."""
    fault = env.get("PIPELINE_FAULT", "")
    if not fault:
        return
    if fault not in FAULTS:
        print(f"{name}: error: PIPELINE_FAULT={fault!r} is not a known fault (known: {', '.join(FAULTS)})",
              file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_FAULT)
    print(f"{name}: fault injected: {fault}", flush=True)
    sys.exit(EXIT_FAULT)


def _event_loop_runner(env: Mapping[str, str]) -> asyncio.Runner:
    """uvloop with PIPELINE_EVENT_LOOP=uvloop: measured ~7% less facade CPU per message, within the noise
    of this machine, so it is neither a dependency nor the default."""
    choice = env.get("PIPELINE_EVENT_LOOP", "asyncio")
    if choice == "asyncio":
        return asyncio.Runner()
    if choice != "uvloop":
        raise SystemExit(f"error: PIPELINE_EVENT_LOOP={choice!r}: expected 'asyncio' or 'uvloop'")
    try:
        import uvloop
    except ImportError:
        raise SystemExit("error: PIPELINE_EVENT_LOOP=uvloop but uvloop is not installed "
                         "(pip install uvloop)") from None
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def run_worker(worker_cls: type[Worker], argv: list[str] | None = None) -> NoReturn:
    """The `main()` of a worker module."""
    args = parse_args(worker_cls.service, argv, prog=f"python -m {worker_cls.__module__}")
    inject_fault(args.name or worker_cls.service, os.environ)
    started = time.monotonic()
    name_filter, listener = _setup_logging(args.name or worker_cls.service)
    try:
        with _event_loop_runner(os.environ) as runner:
            code = runner.run(_serve(worker_cls, args, name_filter, listener))
    finally:
        listener.stop()
    if code:
        print(f"{args.name or worker_cls.service}: exit {code} after {time.monotonic() - started:.1f}s",
              file=sys.stderr)
    sys.exit(code)
