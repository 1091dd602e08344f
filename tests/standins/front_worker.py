"""A stand-in worker for the front tests: serves /health on --port and prints a line.

With --register it behaves like a worker started by hand: it registers itself with the config
server as an unmanaged instance, heartbeats, and deregisters on SIGTERM.
With PIPELINE_FAULT=crash-at-start in its environment it exits with 3 at once, as the real workers do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import aiohttp
from aiohttp import web


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", default=None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config-server", default="http://127.0.0.1:8500")
    parser.add_argument("--register", metavar="SERVICE", default=None)
    args = parser.parse_args()
    if os.environ.get("PIPELINE_FAULT") == "crash-at-start":
        print(f"standin {args.name}: PIPELINE_FAULT=crash-at-start, exiting with 3", flush=True)
        sys.exit(3)

    app = web.Application()
    app.router.add_get("/health", lambda _: web.json_response({"ok": True}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.port).start()
    print(f"standin {args.name or args.register} listening on {args.port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with aiohttp.ClientSession() as http:
        name = None
        if args.register:
            body = {"service": args.register, "address": f"http://127.0.0.1:{args.port}", "name": args.name}
            async with http.post(f"{args.config_server}/register", json=body) as resp:
                reply = await resp.json()
                resp.raise_for_status()
            name = reply["name"]
            print(f"registered as {name}", flush=True)
        while not stop.is_set():
            if name is not None:
                async with http.post(f"{args.config_server}/heartbeat/{name}") as resp:
                    resp.raise_for_status()
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)  # heartbeat period, ends on SIGTERM
            except TimeoutError:
                pass
        if name is not None:
            async with http.delete(f"{args.config_server}/register/{name}") as resp:
                resp.raise_for_status()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
