"""Post msg1..msgN to the facade, with a progress bar and a summary; exit 1 if any POST failed.

    python tools/send_messages.py 10
    python tools/send_messages.py 1000 --concurrency 20 --prefix load --url http://127.0.0.1:8080

Without --url the facade is found through the config server (GET /services/facade).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

DEFAULT_CONFIG_SERVER = "http://127.0.0.1:8500"


@dataclass
class Summary:
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the successful POST latencies (seconds)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    def render(self) -> str:
        rate = (self.ok + self.failed) / self.elapsed if self.elapsed > 0 else 0.0
        latency = (f"latency p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms"
                   if self.latencies else "no latency (nothing succeeded)")
        lines = [f"ok {self.ok}, failed {self.failed} in {self.elapsed:.2f}s ({rate:.1f} msg/s); {latency}"]
        lines += [f"  {count} x {reason}" for reason, count in self.failures.most_common(10)]
        return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="send_messages", description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, help="how many messages")
    parser.add_argument("--url", help="facade URL (default: ask the config server)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs in flight (default 4)")
    parser.add_argument("--prefix", default="msg", help="message text prefix (default msg)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per POST (default 30)")
    parser.add_argument("--config-server", default=os.environ.get("PIPELINE_CONFIG_SERVER", DEFAULT_CONFIG_SERVER),
                        help="config server URL (default $PIPELINE_CONFIG_SERVER or %(default)s)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"n must be at least 1, got {args.n}")
    if args.concurrency < 1:
        parser.error(f"--concurrency must be at least 1, got {args.concurrency}")
    return args


async def find_facade(session: aiohttp.ClientSession, config_server: str) -> str:
    url = f"{config_server.rstrip('/')}/services/facade"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        raise SystemExit(f"error: cannot ask the config server at {url}: {exc}") from None
    instances = body.get("instances") if isinstance(body, dict) else None
    if not instances:
        raise SystemExit(f"error: no facade instance is running (GET {url} -> {body})")
    return str(instances[0]["address"])


async def post_one(session: aiohttp.ClientSession, url: str, text: str, key: str, timeout: float,
                   summary: Summary) -> None:
    started = time.perf_counter()
    try:
        async with session.post(f"{url}/messages", json={"msg": text}, headers={"Idempotency-Key": key},
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 201:
                summary.latencies.append(time.perf_counter() - started)
                return
            error = body.get("error") if isinstance(body, dict) else body
            summary.failures[f"HTTP {resp.status}: {str(error)[:120]}"] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        summary.failures[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1


async def send(args: argparse.Namespace, console: Console) -> Summary:
    summary = Summary()
    run_id = uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as session:
        url = (args.url or await find_facade(session, args.config_server)).rstrip("/")
        console.print(f"sending {args.n} messages to {url} ({args.concurrency} at a time)")
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(1, args.n + 1):
            queue.put_nowait(i)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("posting", total=args.n)

            async def worker() -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    await post_one(session, url, f"{args.prefix}{i}", f"{args.prefix}{i}-{run_id}",
                                   args.timeout, summary)
                    progress.advance(bar)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(min(args.concurrency, args.n))))
            summary.elapsed = time.perf_counter() - started
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    summary = asyncio.run(send(args, console))
    print(summary.render())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
