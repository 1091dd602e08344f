"""Turn many concurrent single calls into few batch calls, without delaying a call on an idle system.

Nagle-like: an item is flushed at once while fewer than `max_in_flight` flushes are running; otherwise it
waits for one to finish and goes out with everything else that queued meanwhile. So a lone request pays
nothing, and under load the downstream sees one request per group instead of one per item (on this
machine the JVMs' cost is per request and per wakeup far more than per entry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    def __init__(self, flush: Callable[[list[Item]], Awaitable[list[Result]]], *, max_items: int = 200,
                 max_in_flight: int = 4) -> None:
        """`flush(items)` returns one result per item, in order; if it raises, every item of the group
        gets that exception."""
        self._flush = flush
        self.max_items = max_items
        self.max_in_flight = max_in_flight
        self._queue: list[tuple[Item, asyncio.Future[Result]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start_flushes()
        return await future

    def _start_flushes(self) -> None:
        while self._queue and len(self._running) < self.max_in_flight:
            group, self._queue = self._queue[:self.max_items], self._queue[self.max_items:]
            task = asyncio.get_running_loop().create_task(self._run(group))
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
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
