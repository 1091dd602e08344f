"""The one command layer behind the console, the CLI and the control API.

Each verb is a module with a ``COMMAND = Command(...)``. Parsing happens where the supervisor runs
(``argv`` travels as is), so every front end gets the same arguments, errors and replies.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from supervisor.app import Supervisor

log = logging.getLogger(__name__)

# Verb modules in the order `help` lists them.
VERBS: tuple[str, ...] = (
    "status",
    "start",
    "stop",
    "restart",
    "kill",
    "revive",
    "scale",
    "leaders",
    "logs",
    "events",
    "down",
    "help",
)


@dataclass(frozen=True)
class Reply:
    """The one reply shape: ``{"ok", "text", "data", "error"}``."""

    ok: bool
    text: str = ""
    data: Any = None
    error: str | None = None
    usage_error: bool = False  # 400 instead of 500 over HTTP; not part of the JSON

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "text": self.text, "data": self.data, "error": self.error}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "Reply":
        return cls(
            ok=bool(body.get("ok")),
            text=str(body.get("text") or ""),
            data=body.get("data"),
            error=body.get("error"),
        )

    @property
    def http_status(self) -> int:
        if self.ok:
            return 200
        return 400 if self.usage_error else 500


def failure(message: str, *, usage: bool = False) -> Reply:
    return Reply(ok=False, text=message, error=message, usage_error=usage)


class CommandError(Exception):
    """A verb refuses its input (bad target, bad count): becomes a 400 reply naming the problem."""


class UsageError(CommandError):
    """argv does not parse; the message carries the usage text."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    configure_parser: Callable[[argparse.ArgumentParser], None]
    execute: Callable[["Supervisor", argparse.Namespace], Awaitable[Reply]]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting (it runs inside a server)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}\n{self.format_usage().rstrip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError((message or "").strip() or self.format_usage().rstrip())

    def print_help(self, file: Any = None) -> None:  # type: ignore[override]
        # `VERB --help` answers with the help text instead of writing to the server's stdout.
        raise HelpRequested(self.format_help())


class HelpRequested(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def all_commands() -> dict[str, Command]:
    commands: dict[str, Command] = {}
    for verb in VERBS:
        module = importlib.import_module(f"{__name__}.{verb}")
        commands[verb] = module.COMMAND
    return commands


def make_parser(command: Command) -> argparse.ArgumentParser:
    parser = _Parser(prog=command.name, description=command.help, exit_on_error=False)
    command.configure_parser(parser)
    return parser


def parse(argv: list[str]) -> tuple[Command, argparse.Namespace]:
    """Find the verb and parse its arguments; raise UsageError (or HelpRequested) on bad argv."""
    commands = all_commands()
    if not argv:
        raise UsageError(f"no command given; known commands: {', '.join(commands)}")
    verb, rest = argv[0], argv[1:]
    command = commands.get(verb)
    if command is None:
        raise UsageError(f"unknown command {verb!r}; known commands: {', '.join(commands)}")
    try:
        args = make_parser(command).parse_args(rest)
    except argparse.ArgumentError as exc:
        raise UsageError(f"{verb}: error: {exc}\n{make_parser(command).format_usage().rstrip()}") from exc
    return command, args


async def run_command(sup: "Supervisor", argv: list[str]) -> Reply:
    """Parse and run one command line; every outcome is a Reply, never an exception."""
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        return failure("argv must be a list of strings", usage=True)
    try:
        command, args = parse(argv)
    except HelpRequested as help_:
        return Reply(ok=True, text=help_.text.rstrip())
    except UsageError as exc:
        return failure(str(exc), usage=True)
    try:
        return await command.execute(sup, args)
    except CommandError as exc:
        return failure(str(exc), usage=True)
    except Exception as exc:  # noqa: BLE001 - any failure becomes the one reply shape
        if _is_caller_error(exc):
            return failure(str(exc), usage=True)
        log.exception("command %r failed", argv)
        return failure(f"{argv[0]} failed: {type(exc).__name__}: {exc}")


def _is_caller_error(exc: Exception) -> bool:
    """Errors of the caller, not of the supervisor: an unknown target, a verb that makes no sense
    in the instance's state (kill a stopped one). An instance that fails to start (StartFailed)
    is a failure (500), not the caller's mistake."""
    from supervisor.app import UnknownTarget
    from supervisor.instance import WrongState

    return isinstance(exc, (UnknownTarget, WrongState))


def known_names(sup: "Supervisor") -> list[str]:
    """Instance names then service names: what a TARGET may be (used for completion and errors)."""
    names = [inst.name for inst in sup.instances()]
    services = list(dict.fromkeys(inst.service for inst in sup.instances()))
    return names + [s for s in services if s not in names]
