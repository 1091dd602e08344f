"""Posting N messages to the facade concurrently and recording every attempt.

Shared by tools/send_messages.py, the chaos scenarios and the benchmark, so that all three count an
"acknowledged" message the same way: an HTTP 201 with an id.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable

import aiohttp


@dataclass
class Attempt:
    """One POST /messages: what was sent, when, and how it ended."""

    index: int
    msg: str
    key: str  # the Idempotency-Key sent, so a retry by the client would not duplicate
    started: float
    finished: float = 0.0
    status: int | None = None  # HTTP status; None when the request itself failed
    message_id: str | None = None
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status == 201 and self.message_id is not None

    @property
    def latency(self) -> float:
        return self.finished - self.started


@dataclass
class LoadRun:
    """Every attempt of one run, in index order once finished."""

    run_id: str
    attempts: list[Attempt] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def acknowledged(self) -> list[Attempt]:
        return [a for a in self.attempts if a.acknowledged]

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if a.finished and not a.acknowledged]

    def acked_count(self) -> int:
        return sum(1 for a in self.attempts if a.acknowledged)


async def post_messages(
    facade_url: str,
    count: int,
    *,
    concurrency: int = 8,
    prefix: str = "msg",
    run_id: str = "",
    start_index: int = 1,
    timeout: float = 30.0,
    run: LoadRun | None = None,
    on_attempt: Callable[[Attempt], None] | None = None,
) -> LoadRun:
    """POST `prefix{i}` for i in start_index..start_index+count-1, `concurrency` at a time.

    Each message carries the Idempotency-Key `{run_id}-{i}` (when run_id is given), so the id the
    facade gives it is predictable and a re-send is harmless. Never raises for a failed POST: the
    failure is recorded in its Attempt.
    """
    run = run or LoadRun(run_id=run_id)
    run.started = run.started or time.monotonic()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(start_index, start_index + count):
        queue.put_nowait(index)
    connector = aiohttp.TCPConnector(limit=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as http:

        async def post_one(index: int) -> None:
            msg = f"{prefix}{index}"
            key = f"{run_id}-{index}" if run_id else ""
            attempt = Attempt(index=index, msg=msg, key=key, started=time.monotonic())
            run.attempts.append(attempt)
            headers = {"Idempotency-Key": key} if key else {}
            try:
                async with http.post(f"{facade_url}/messages", json={"msg": msg}, headers=headers) as resp:
                    attempt.status = resp.status
                    body = await resp.json(content_type=None)
                    if resp.status == 201:
                        attempt.message_id = body.get("id")
                    else:
                        attempt.error = str(body.get("error") or body)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"
            attempt.finished = time.monotonic()
            if on_attempt is not None:
                on_attempt(attempt)

        async def worker() -> None:
            while not queue.empty():
                await post_one(queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    run.attempts.sort(key=lambda a: a.index)
    run.finished = time.monotonic()
    return run


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]
