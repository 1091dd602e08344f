"""status [--json]: every instance with its state, pid, address, uptime, restarts and last exit.

Brokers also show the partitions they lead; FATAL instances show the tail of their last output.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from supervisor.commands import Command, Reply
from supervisor.commands.render import duration, table, to_text
from supervisor.states import State

if TYPE_CHECKING:
    from supervisor.app import Supervisor

log = logging.getLogger(__name__)
LEADERS_TIMEOUT = 5.0


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _exit_json(exit_info: Any) -> dict[str, Any] | None:
    """ExitInfo as JSON, plus ``description`` (the text shown in the LAST EXIT column)."""
    if exit_info is None:
        return None
    return {**exit_info.to_json(), "description": exit_info.describe()}


async def _leadership(sup: "Supervisor") -> dict[str, list[str]]:
    """Broker name -> ["topic/partition", ...] it leads; empty when no broker is up to ask."""
    if not any(i.kind == "kafka" and i.state == State.RUNNING for i in sup.instances()):
        return {}
    try:
        rows = await asyncio.wait_for(sup.leaders(), LEADERS_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - status must answer even when Kafka does not
        log.info("status: no leader information: %s", exc)
        return {}
    led: dict[str, list[str]] = {}
    for row in rows:
        if row.get("leader"):
            led.setdefault(row["leader"], []).append(f"{row['topic']}/{row['partition']}")
    return led


def collect(sup: "Supervisor", leads: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The status rows: managed instances in topology order, then heartbeating unmanaged workers."""
    now = time.time()
    rows: list[dict[str, Any]] = []
    for inst in sup.instances():
        running = inst.state == State.RUNNING and inst.started_at is not None
        rows.append(
            {
                "name": inst.name,
                "service": inst.service,
                "kind": inst.kind,
                "managed": inst.managed,
                "state": inst.state.value,
                "pid": inst.pid,
                "address": inst.address,
                "uptime": round(now - inst.started_at, 1) if running else None,
                "restarts": inst.restarts,
                "last_exit": _exit_json(inst.last_exit),
                "leads": leads.get(inst.name, []),
                **({"env": inst.extra_env} if inst.extra_env else {}),
            }
        )
    for worker in sup.registry.unmanaged():
        rows.append(
            {
                "name": worker.name,
                "service": worker.service,
                "kind": "worker",
                "managed": False,
                "state": State.RUNNING.value,
                "pid": None,
                "address": worker.address,
                "uptime": round(now - worker.registered_at, 1),
                "restarts": 0,
                "last_exit": None,
                "leads": [],
            }
        )
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    brokers = any(row["kind"] == "kafka" for row in rows)
    columns = ["NAME", "STATE", "PID", "ADDRESS", "UPTIME", "RESTARTS", "LAST EXIT"]
    grid = table(*columns, *(["LEADS"] if brokers else []))
    for row in rows:
        name = row["name"] if row["managed"] else f"{row['name']} (unmanaged)"
        cells = [
            name,
            row["state"],
            str(row["pid"] or "-"),
            row["address"] or "-",
            duration(row["uptime"]),
            str(row["restarts"]),
            row["last_exit"]["description"] if row["last_exit"] else "-",
        ]
        if brokers:
            cells.append(", ".join(row["leads"]) or ("-" if row["kind"] == "kafka" else ""))
        grid.add_row(*cells)
    parts = [to_text(grid)]
    for row in rows:
        if row.get("env"):
            extra = " ".join(f"{key}={value}" for key, value in row["env"].items())
            parts.append(f"{row['name']} runs with extra env: {extra}")
    for row in rows:
        if row["state"] == State.FATAL.value and row["last_exit"] and row["last_exit"]["log_tail"]:
            tail = "\n".join(f"    {line}" for line in row["last_exit"]["log_tail"])
            parts.append(f"\n{row['name']} is FATAL ({row['last_exit']['description']}); last output:\n{tail}")
    return "\n".join(parts)


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    rows = collect(sup, await _leadership(sup))
    data = {"config_server": sup.registry.url, "instances": rows}
    return Reply(ok=True, text=render(rows), data=data)


COMMAND = Command("status", "show every instance: state, pid, address, uptime, restarts, last exit", _configure, _execute)
