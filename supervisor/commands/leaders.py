"""leaders [--json]: for each partition of the topic, its leader, replicas and in-sync replicas."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from supervisor.commands import Command, Reply
from supervisor.commands.render import table, to_text

if TYPE_CHECKING:
    from supervisor.app import Supervisor


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    rows = await sup.leaders()
    grid = table("TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR")
    for row in rows:
        grid.add_row(row["topic"], str(row["partition"]), row["leader"] or "none",
                     ", ".join(row["replicas"]), ", ".join(row["isr"]))
    return Reply(ok=True, text=to_text(grid), data=rows)


COMMAND = Command("leaders", "show partition leaders, replicas and in-sync replicas", _configure, _execute)
