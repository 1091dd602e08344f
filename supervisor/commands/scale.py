"""scale SERVICE N [--env KEY=VALUE ...]: run N instances of a worker service.

``--env`` goes to the instances this scale creates, and only to them: a way to inject a fault into
a new instance (``scale logging 4 --env PIPELINE_FAULT=crash-at-start``) without touching the others.
"""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from supervisor.commands import Command, CommandError, Reply

if TYPE_CHECKING:
    from supervisor.app import Supervisor

MAX_INSTANCES = 32
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("service", metavar="SERVICE", help="a worker service (logging, messages, facade)")
    parser.add_argument("count", metavar="N", type=int, help=f"instances wanted (0..{MAX_INSTANCES})")
    parser.add_argument("--env", metavar="KEY=VALUE", action="append", default=[],
                        help="extra environment of the NEW instances only (repeatable)")


def parse_env(items: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{"K": "V"}``; CommandError naming the first bad item."""
    env: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.fullmatch(key):
            raise CommandError(f"scale: --env wants KEY=VALUE with KEY a variable name "
                               f"(letters, digits, _), got {item!r}")
        env[key] = value
    return env


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    services = list(sup.topology.services)
    if args.service not in services:
        raise CommandError(f"scale: unknown service {args.service!r}; known services: {', '.join(services)}")
    if not 0 <= args.count <= MAX_INSTANCES:
        raise CommandError(f"scale: N must be between 0 and {MAX_INSTANCES}, got {args.count}")
    env = parse_env(args.env)
    before = [i.name for i in sup.instances() if i.service == args.service]
    if env and args.count <= len(before):
        raise CommandError(f"scale: --env applies to new instances only, and {args.service} already has "
                           f"{len(before)} (N={args.count} creates none)")
    await sup.scale(args.service, args.count, env)
    names = [i.name for i in sup.instances() if i.service == args.service]
    text = f"{args.service}: {args.count} instance(s): {', '.join(names) or '-'}"
    added = [name for name in names if name not in before]
    if env and added:
        text += f"\n{', '.join(added)} with " + " ".join(f"{k}={v}" for k, v in env.items())
    return Reply(ok=True, text=text, data={"service": args.service, "instances": names})


COMMAND = Command("scale", "change the number of instances of a service", _configure, _execute)
