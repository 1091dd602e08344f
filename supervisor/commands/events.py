"""events [-n N] [-f]: recent state changes (``-f`` streams them: front ends use /control/events)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from supervisor.commands import Command, CommandError, Reply

if TYPE_CHECKING:
    from supervisor.app import Supervisor
    from supervisor.events import Event


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--lines", type=int, default=30, help="how many recent events (default 30)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new events")


def format_event(event: dict) -> str:
    """One line for an event in its JSON form (the same on every front end)."""
    clock = time.strftime("%H:%M:%S", time.localtime(event["ts"]))
    line = f"{clock} {event['name']:<12} {event.get('from') or '-'} -> {event.get('to') or '-'}"
    return line + (f"  ({event['detail']})" if event.get("detail") else "")


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    if args.lines < 0:
        raise CommandError(f"events: -n must be >= 0, got {args.lines}")
    recent: list[Event] = sup.events.recent(args.lines)
    data = [event.to_json() for event in recent]
    return Reply(ok=True, text="\n".join(format_event(e) for e in data), data=data)


COMMAND = Command("events", "show recent state changes (-f follows them)", _configure, _execute)
