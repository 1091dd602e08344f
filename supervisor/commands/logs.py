"""logs TARGET [-n N] [-f]: the tail of an instance's (or a service's) log file.

``-f`` is honoured by the front ends, which stream ``/control/logs/{target}``; executed as a plain
command it answers with the tail.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.commands import Command, CommandError, Reply
from supervisor.commands.logtail import tail_many

if TYPE_CHECKING:
    from supervisor.app import Supervisor


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="TARGET", help="an instance (kafka-1) or a service (logging)")
    parser.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")


def log_paths(sup: "Supervisor", target: str) -> dict[str, Path]:
    """Instance name -> log file for a TARGET (raises UnknownTarget through sup.resolve)."""
    return {inst.name: sup.paths.log(inst.name) for inst in sup.resolve(target)}


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    if args.lines < 0:
        raise CommandError(f"logs: -n must be >= 0, got {args.lines}")
    paths = log_paths(sup, args.target)
    out = tail_many(paths, args.lines)
    return Reply(ok=True, text="\n".join(out), data={"lines": out, "files": {n: str(p) for n, p in paths.items()}})


COMMAND = Command("logs", "show the tail of a log (-f follows it)", _configure, _execute)
