"""Turn many concurrent single calls into few batch calls.

An item waits at most `linger` seconds for others to join it (like Kafka's linger.ms), or less when
`max_items` are queued; a group then goes out unless `max_in_flight` flushes are running already, in
which case it waits for one to finish and takes everything that queued meanwhile. Under load the
downstream sees one request per group instead of one per item: on this machine every request and
wakeup costs far more CPU than an extra entry in a request, and saturated cores are what make the
latency tail. `linger=0` flushes at once (Nagle-like: batching only while flushes are in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(self, flush: Callable[[list[Item]], Awaitable[list[Result]]], *, max_items: int = 200,
                 max_in_flight: int = 4, linger: float = 0.0) -> None:
        """`flush(items)` returns one result per item, in order; if it raises, every item of the group
        gets that exception."""
        self._flush = flush
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self.linger = linger
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._queue.append((item, future))
        if self.linger <= 0 or len(self._queue) >= self.max_items:
            self._start_flushes()
        elif self._timer is None:
            self._timer = loop.call_later(self.linger, self._linger_over)
        return await future

    def _linger_over(self) -> None:
        self._timer = None
        self._start_flushes()

    def _start_flushes(self) -> None:
        while self._queue and len(self._running) < self.max_in_flight:
            group, self._queue = self._queue[:self.max_items], self._queue[self.max_items:]
            task = asyncio.get_running_loop().create_task(self._run(group))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._timer is None:  # else the queued items are still lingering; the timer sends them
            self._start_flushes()

    async def _run(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"flush returned {len(results)} results for {len(group)} items")
        except Exception as exc:  # every waiter of the group learns why
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(group, results):
            if not future.done():
                future.set_result(result)
