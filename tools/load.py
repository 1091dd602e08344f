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


async def _post_one(http: aiohttp.ClientSession, facade_url: str, run: LoadRun, index: int, prefix: str,
                    started: float | None = None) -> Attempt:
    """POST one message and record the attempt; `started` is when it was due (open-loop load)."""
    msg = f"{prefix}{index}"
    key = f"{run.run_id}-{index}" if run.run_id else ""
    attempt = Attempt(index=index, msg=msg, key=key, started=started or time.monotonic())
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
    return attempt


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

        async def worker() -> None:
            while not queue.empty():
                attempt = await _post_one(http, facade_url, run, queue.get_nowait(), prefix)
                if on_attempt is not None:
                    on_attempt(attempt)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    run.attempts.sort(key=lambda a: a.index)
    run.finished = time.monotonic()
    return run


async def post_at_rate(facade_url: str, rate: float, duration: float, *, prefix: str = "msg", run_id: str = "",
                       timeout: float = 30.0) -> LoadRun:
    """Open-loop load: one POST every 1/rate seconds for `duration`, whether earlier ones answered or not.

    Latency counts from when a request was due, not when it was sent, so a client falling behind (or a
    stalled server) shows in the percentiles instead of silently lowering the rate.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError(f"rate and duration must be positive, got {rate} and {duration}")
    run = LoadRun(run_id=run_id)
    total = int(rate * duration)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        run.started = time.monotonic()
        pending: list[asyncio.Task[Attempt]] = []
        for i in range(total):
            due = run.started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the schedule of an open-loop load, not a wait for a condition
            pending.append(asyncio.create_task(_post_one(http, facade_url, run, i + 1, prefix, started=due)))
        await asyncio.gather(*pending)
    run.attempts.sort(key=lambda a: a.index)
    run.finished = time.monotonic()
    return run


async def post_batches(facade_url: str, count: int, *, batch_size: int, concurrency: int, run_id: str,
                       timeout: float = 30.0) -> LoadRun:
    """POST /messages/batch with `batch_size` messages each, `concurrency` batches at a time; every message
    is one Attempt (acknowledged when its own result is 201), its latency that of its batch."""
    run = LoadRun(run_id=run_id)
    indexes = iter(range(1, count + 1, batch_size))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as http:

        async def one_batch(first: int) -> None:
            began = time.monotonic()
            attempts = [Attempt(index=i, msg=f"msg{i}", key=f"{run_id}-{i}", started=began)
                        for i in range(first, min(first + batch_size, count + 1))]
            run.attempts.extend(attempts)
            body = {"messages": [{"id": a.key, "msg": a.msg} for a in attempts]}
            try:
                async with http.post(f"{facade_url}/messages/batch", json=body) as resp:
                    doc = await resp.json(content_type=None)
                results = doc.get("results") or [{"status": resp.status, "error": doc.get("error")}] * len(attempts)
                for attempt, result in zip(attempts, results):
                    attempt.status = result["status"]
                    attempt.message_id = result.get("id") if result["status"] == 201 else None
                    attempt.error = result.get("error")
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
                for attempt in attempts:
                    attempt.error = f"{type(exc).__name__}: {exc}"
            for attempt in attempts:
                attempt.finished = time.monotonic()

        async def worker() -> None:
            for first in indexes:
                await one_batch(first)

        run.started = time.monotonic()
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
