"""The CLI: ``up``, ``down``, ``fetch``, ``console``, and the one-shot verbs (status, kill, ...).

One-shot verbs are parsed here only for ``--help`` and early usage errors; the argv is sent as is to
the running supervisor's control API, which parses and runs it (the same code as the console).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Sequence

from supervisor.chaos import cli as chaos_cli
from supervisor.commands import all_commands
from supervisor.commands.frontend import (
    LocalRunner,
    RemoteRunner,
    SupervisorNotFound,
    execute_line,
    find_supervisor,
    read_state,
)
from supervisor.paths import RuntimePaths

DEFAULT_TOPOLOGY = "topology.yaml"
DOWN_TIMEOUT = 180.0
LOCAL_VERBS = ("up", "down", "fetch", "console", "chaos")
_COLOURS = (31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96)

log = logging.getLogger("supervisor")


class CliError(Exception):
    """A problem the user can fix; printed as ``error: ...`` with exit code 1."""


# -- output ------------------------------------------------------------------------------------


def _use_colour() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


class OutputPrinter:
    """Prints worker output lines prefixed with the instance name (a colour each on a terminal)."""

    def __init__(self, colour: bool) -> None:
        self._colour = colour
        self._assigned: dict[str, int] = {}

    def prefix(self, name: str) -> str:
        if not self._colour:
            return f"{name} |"
        code = self._assigned.setdefault(name, _COLOURS[len(self._assigned) % len(_COLOURS)])
        return f"\x1b[{code}m{name} |\x1b[0m"

    def __call__(self, name: str, line: str) -> None:
        print(f"{self.prefix(name)} {line}", flush=True)


class _PrintHandler(logging.Handler):
    """Logs through print(), so they land above the console prompt (patch_stdout swaps stdout)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), flush=True)
        except Exception:  # noqa: BLE001 - logging must never break the supervisor
            self.handleError(record)


def _setup_logging(began: float) -> None:
    class _Elapsed(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = f"[{record.created - began:6.1f}s] {record.getMessage()}"
            return f"{text}\n{self.formatException(record.exc_info)}" if record.exc_info else text

    handler = _PrintHandler()
    handler.setFormatter(_Elapsed())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for noisy in ("aiokafka", "kafka", "hazelcast", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# -- finding the runtime directory -------------------------------------------------------------


def _runtime_dir(runtime_dir: str | None, topology: str | None) -> RuntimePaths:
    """--runtime-dir wins; else the runtime_dir of -t (or ./topology.yaml)."""
    if runtime_dir:
        return RuntimePaths(Path(runtime_dir).resolve())
    from supervisor.topology import TopologyError, load_topology

    path = Path(topology or DEFAULT_TOPOLOGY)
    if not path.exists():
        raise CliError(f"{path} not found: give the running supervisor's --runtime-dir or -t topology.yaml")
    try:
        return RuntimePaths(load_topology(path).runtime_dir)
    except TopologyError as exc:
        raise CliError(str(exc)) from None


# -- up ----------------------------------------------------------------------------------------


def _write_state(paths: RuntimePaths, url: str) -> None:
    state = {"pid": os.getpid(), "url": url, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = paths.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, paths.state_file)


def _remove_state(paths: RuntimePaths) -> None:
    try:
        if json.loads(paths.state_file.read_text()).get("pid") == os.getpid():
            paths.state_file.unlink()
    except (FileNotFoundError, ValueError):
        pass


def _ready_line(sup: object, url: str, seconds: float) -> str:
    from supervisor.app import Supervisor

    assert isinstance(sup, Supervisor)
    topology = sup.topology
    parts = [f"config server {url}"]
    for service in topology.services:
        addresses = [i.address for i in sup.instances() if i.service == service and i.address]
        parts.append(f"{service} {' '.join(addresses) or '-'}")
    parts.append(f"kafka {topology.kafka.bootstrap()}")
    parts.append(f"hazelcast {','.join(topology.hazelcast.member_addresses())}")
    return f"ready in {seconds:.1f}s: " + "; ".join(parts)


async def _up(topology_path: str) -> int:
    from supervisor.app import Supervisor
    from supervisor.console import Console
    from supervisor.server import ConfigServer
    from supervisor.topology import TopologyError, load_topology, resolve_ports

    began = time.time()
    _setup_logging(began)
    try:
        topology = resolve_ports(load_topology(topology_path))
    except (TopologyError, FileNotFoundError, OSError) as exc:
        raise CliError(str(exc)) from None
    paths = RuntimePaths(topology.runtime_dir)
    paths.ensure()
    other = read_state(paths)
    if other is not None:
        raise CliError(
            f"another supervisor (pid {other['pid']}, {other.get('url')}) is running from {paths.root}; "
            "stop it with `python -m supervisor down` first"
        )

    sup = Supervisor(topology, paths, on_output=OutputPrinter(_use_colour()))
    server = ConfigServer(sup)
    stop_requested = asyncio.Event()
    console: Console | None = None
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if signum == signal.SIGINT and console is not None and console.interrupt():
            return  # Ctrl-C ended a running console command (logs -f), not the supervisor
        log.info("%s received: stopping everything", signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    exit_code = 0
    try:
        await server.start()  # first: workers fetch /config while they start
    except OSError as exc:
        raise CliError(f"config server cannot listen on {server.url}: {exc.strerror or exc}") from None
    _write_state(paths, server.url)
    try:
        log.info("runtime dir %s", paths.root)
        start = asyncio.create_task(sup.start())
        stopper = asyncio.create_task(stop_requested.wait())
        await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():  # interrupted while starting
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
        elif start.exception() is not None:
            log.error("start failed: %s", start.exception())
            exit_code = 1
        else:
            print(_ready_line(sup, server.url, time.time() - began), flush=True)
            if sys.stdin.isatty() and sys.stdout.isatty():
                console = Console(LocalRunner(sup), history_file=paths.history_file, inside_up=True)
                console_task = asyncio.create_task(console.run())
                await asyncio.wait({console_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
                console_task.cancel()
                await asyncio.gather(console_task, return_exceptions=True)
            else:
                await stopper
        stopper.cancel()
    finally:
        stopping = time.time()
        log.info("stopping everything")
        await sup.stop()
        await server.stop()
        _remove_state(paths)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        log.info("stopped in %.1fs", time.time() - stopping)
    return exit_code


# -- down, fetch, console, one-shot ------------------------------------------------------------


async def _down(paths: RuntimePaths) -> int:
    from supervisor.commands.frontend import pid_alive
    from supervisor.deadline import wait_until

    state = read_state(paths)
    if state is None:
        _clean_up_after_dead_supervisor(paths)
        return 0
    pid = state["pid"]
    print(f"stopping the supervisor (pid {pid}) ...", flush=True)
    os.kill(pid, signal.SIGTERM)
    began = time.monotonic()
    try:
        await wait_until(lambda: not pid_alive(pid), timeout=DOWN_TIMEOUT, interval=0.2, what=f"pid {pid} to exit")
    except TimeoutError as exc:
        raise CliError(str(exc)) from None
    print(f"stopped in {time.monotonic() - began:.1f}s")
    return 0


def _clean_up_after_dead_supervisor(paths: RuntimePaths) -> None:
    """No live supervisor: end the children a dead one (SIGKILLed, crashed) left behind, as listed
    in children.json with their create time, and drop its stale state file; say what was done."""
    from supervisor.app import reap_leftovers

    stale = _stale_pid(paths)
    reaped = reap_leftovers(paths)
    if stale is None and not reaped:
        print(f"no supervisor is running from {paths.root}")
        return
    dead = f"the supervisor (pid {stale}) is gone" if stale is not None else "no supervisor is running"
    print(f"{dead} from {paths.root}", flush=True)
    if reaped:
        print(f"ended {len(reaped)} leftover process(es) it had started: {', '.join(reaped)}")
    else:
        print("none of the processes it had started is still running")
    paths.state_file.unlink(missing_ok=True)


def _stale_pid(paths: RuntimePaths) -> int | None:
    """The pid in a supervisor.json that names no live supervisor (read_state said so)."""
    try:
        pid = json.loads(paths.state_file.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


async def _console(paths: RuntimePaths) -> int:
    from supervisor.console import Console

    endpoint = find_supervisor(paths)
    async with RemoteRunner(endpoint) as runner:
        console = Console(runner, history_file=paths.history_file, inside_up=False)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, console.interrupt)
        try:
            await console.run()
        finally:
            loop.remove_signal_handler(signal.SIGINT)
    return 0


async def _one_shot(paths: RuntimePaths, argv: list[str]) -> int:
    endpoint = find_supervisor(paths)
    async with RemoteRunner(endpoint) as runner:
        task = asyncio.ensure_future(execute_line(
            runner, argv, lambda text: print(text, flush=True), lambda text: print(text, file=sys.stderr, flush=True)
        ))
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, task.cancel)  # Ctrl-C ends `logs -f` cleanly
        try:
            return await task
        except asyncio.CancelledError:
            return 0
        finally:
            loop.remove_signal_handler(signal.SIGINT)


def _fetch() -> int:
    from supervisor import runtime

    try:
        jars = runtime.ensure_jars()
    except runtime.RuntimeSetupError as exc:
        raise CliError(str(exc)) from None
    print(f"jars ready: {jars}")
    return 0


# -- argument parsing --------------------------------------------------------------------------


_WHERE_OPTIONS = ("--runtime-dir", "-t", "--topology")


def _where_options(parser: argparse.ArgumentParser, default: object) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--runtime-dir", metavar="DIR", default=default,
                       help="runtime directory of the running supervisor")
    where.add_argument("-t", "--topology", metavar="FILE", default=default,
                       help=f"topology whose runtime dir to use (default ./{DEFAULT_TOPOLOGY})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor",
        description="Bring up and operate the replicated message pipeline.",
    )
    _where_options(parser, None)
    # the same options after the verb (`status -t topology.yaml`); SUPPRESS keeps a value given before it
    where_after = argparse.ArgumentParser(add_help=False)
    _where_options(where_after, argparse.SUPPRESS)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    up = verbs.add_parser("up", help="start everything and supervise it (console on a terminal)")
    up.add_argument("topology_file", metavar="TOPOLOGY", nargs="?", help=f"default ./{DEFAULT_TOPOLOGY}")
    down = verbs.add_parser("down", help="stop a running supervisor and everything it runs", parents=[where_after])
    down.add_argument("topology_file", metavar="TOPOLOGY", nargs="?", help=f"default ./{DEFAULT_TOPOLOGY}")
    verbs.add_parser("fetch", help="download the Kafka and Hazelcast jars into the jar cache")
    verbs.add_parser("console", help="attach an interactive console to a running supervisor", parents=[where_after])
    chaos = verbs.add_parser("chaos", help="run a fault scenario against the running topology, judged by a checker",
                             parents=[where_after], epilog="scenarios:\n" + chaos_cli.describe_scenarios(),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    chaos_cli.configure_parser(chaos)
    for name, command in all_commands().items():
        if name in LOCAL_VERBS:  # `down` here signals the pid; in the console it is the command
            continue
        sub = verbs.add_parser(name, help=command.help, description=command.help, parents=[where_after])
        command.configure_parser(sub)
    return parser


def _verb_argv(argv: Sequence[str], verb: str) -> list[str]:
    """The verb and its arguments as typed, without the options that find the supervisor."""
    out: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in _WHERE_OPTIONS:
            index += 2
            continue
        if arg.startswith(("--runtime-dir=", "--topology=")):
            index += 1
            continue
        if out or arg == verb:
            out.append(arg)
        index += 1
    if not out:
        raise CliError(f"cannot find {verb!r} in the command line")
    return out


async def _dispatch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    if args.verb == "up":
        return await _up(args.topology_file or args.topology or DEFAULT_TOPOLOGY)
    if args.verb == "down":
        topology = args.topology_file or args.topology
        return await _down(_runtime_dir(args.runtime_dir, topology))
    paths = _runtime_dir(args.runtime_dir, args.topology)
    if args.verb == "console":
        return await _console(paths)
    if args.verb == "chaos":
        return await chaos_cli.run(paths, args)
    return await _one_shot(paths, _verb_argv(argv, args.verb))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "fetch":
            return _fetch()
        return asyncio.run(_dispatch(args, argv))
    except (CliError, SupervisorNotFound) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
