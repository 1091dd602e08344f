"""The shape shared by the verbs that act on TARGETs one instance at a time (start, stop, kill, ...)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from supervisor.commands import Command, Reply

if TYPE_CHECKING:
    from supervisor.app import Supervisor


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", metavar="TARGET", nargs="+", help="an instance (logging-2) or a service (logging)")


def action_command(name: str, help_: str, method: str, done: str) -> Command:
    """A verb calling ``sup.<method>(instance_name)`` for every instance its TARGETs resolve to."""

    async def execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
        names: list[str] = []
        for target in args.targets:  # resolve all first: one unknown target changes nothing
            names.extend(inst.name for inst in sup.resolve(target) if inst.name not in names)
        for instance_name in names:
            await getattr(sup, method)(instance_name)
        return Reply(ok=True, text="\n".join(f"{n}: {done}" for n in names), data={"instances": names})

    return Command(name=name, help=help_, configure_parser=_configure, execute=execute)
