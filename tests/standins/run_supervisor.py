"""Run a Supervisor over a topology file until killed (for the no-orphan tests).

Prints "UP" once start() returned, so the test knows the children are RUNNING.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from supervisor.app import Supervisor
from supervisor.paths import RuntimePaths
from supervisor.topology import load_topology, resolve_ports


async def main(path: str) -> None:
    topology = resolve_ports(load_topology(path))
    sup = Supervisor(topology, RuntimePaths(topology.runtime_dir))
    await sup.start()
    print("UP", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(sys.argv[1]))
