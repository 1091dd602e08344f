"""scale SERVICE N: run N instances of a worker service."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from supervisor.commands import Command, CommandError, Reply

if TYPE_CHECKING:
    from supervisor.app import Supervisor

MAX_INSTANCES = 32


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE", help="a worker service (logging, messages, facade)")
    parser.add_argument("count", metavar="N", type=int, help=f"instances wanted (0..{MAX_INSTANCES})")


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    services = list(sup.topology.services)
    if args.service not in services:
        raise CommandError(f"scale: unknown service {args.service!r}; known services: {', '.join(services)}")
    if not 0 <= args.count <= MAX_INSTANCES:
        raise CommandError(f"scale: N must be between 0 and {MAX_INSTANCES}, got {args.count}")
    await sup.scale(args.service, args.count)
    names = [i.name for i in sup.instances() if i.service == args.service]
    return Reply(ok=True, text=f"{args.service}: {args.count} instance(s): {', '.join(names) or '-'}",
                 data={"service": args.service, "instances": names})


COMMAND = Command("scale", "change the number of instances of a service", _configure, _execute)
