"""help [VERB]: the list of commands, or one command's usage."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from supervisor.commands import Command, CommandError, Reply, all_commands, make_parser

if TYPE_CHECKING:
    from supervisor.app import Supervisor

NOTES = (
    "A TARGET is an instance name (logging-2, kafka-1) or a service name (all its instances).\n"
    "In the console of `up`, `quit` (or Ctrl-D) stops everything; in `console` it only detaches."
)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("verb", metavar="VERB", nargs="?", help="a command to explain")


def overview() -> str:
    commands = all_commands()
    width = max(len(name) for name in commands)
    lines = [f"  {name:<{width}}  {command.help}" for name, command in commands.items()]
    return "commands:\n" + "\n".join(lines) + "\n\n" + NOTES


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    if args.verb is None:
        return Reply(ok=True, text=overview())
    commands = all_commands()
    if args.verb not in commands:
        raise CommandError(f"help: unknown command {args.verb!r}; known commands: {', '.join(commands)}")
    return Reply(ok=True, text=make_parser(commands[args.verb]).format_help().rstrip())


COMMAND = Command("help", "list the commands, or explain one (help VERB)", _configure, _execute)
