"""down: stop everything (reverse order) and end the supervisor, as Ctrl-C or SIGTERM would."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from typing import TYPE_CHECKING

from supervisor.commands import Command, Reply

if TYPE_CHECKING:
    from supervisor.app import Supervisor


def _configure(parser: argparse.ArgumentParser) -> None:
    pass


async def _execute(sup: "Supervisor", args: argparse.Namespace) -> Reply:
    # The supervisor process (`up`) turns SIGTERM into an orderly stop; signalling after this reply
    # is queued lets the caller read it before the server goes away.
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)
    return Reply(ok=True, text=f"stopping the supervisor (pid {os.getpid()}) and everything it runs")


COMMAND = Command("down", "stop everything and end the supervisor", _configure, _execute)
