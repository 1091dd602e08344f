"""The event bus: every state change is an Event that is logged, kept in a ring and streamed.

Publishing never blocks and never fails because of a subscriber: each subscriber has its own
bounded queue, and a subscriber that does not keep up loses events (counted in `dropped`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from supervisor.states import State

log = logging.getLogger("supervisor.events")

RING_SIZE = 1000
SUBSCRIBER_QUEUE = 1000


@dataclass(frozen=True)
class Event:
    ts: float
    name: str
    service: str
    from_state: State | None
    to_state: State | None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "name": self.name,
            "service": self.service,
            "from": self.from_state.value if self.from_state else None,
            "to": self.to_state.value if self.to_state else None,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        arrow = f"{self.from_state or '-'} -> {self.to_state or '-'}"
        return f"{self.name}: {arrow}" + (f" ({self.detail})" if self.detail else "")


@dataclass(eq=False)
class Subscription:
    """An async iterator over events published after it was made (plus an optional replay)."""

    bus: EventBus
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE))
    dropped: int = 0
    closed: bool = False

    def offer(self, event: Event) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    def close(self) -> None:
        self.closed = True
        self.bus._subscribers.discard(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self.closed and self.queue.empty():
            raise StopAsyncIteration
        return await self.queue.get()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self, ring_size: int = RING_SIZE) -> None:
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._subscribers: set[Subscription] = set()

    def publish(self, event: Event) -> None:
        self._ring.append(event)
        level = logging.WARNING if event.to_state in (State.EXITED, State.FATAL) else logging.INFO
        log.log(level, "%s", event)
        for sub in list(self._subscribers):
            sub.offer(event)

    def emit(
        self,
        name: str,
        service: str,
        from_state: State | None,
        to_state: State | None,
        detail: str = "",
    ) -> Event:
        event = Event(time.time(), name, service, from_state, to_state, detail)
        self.publish(event)
        return event

    def recent(self, n: int | None = None) -> list[Event]:
        events = list(self._ring)
        return events if n is None else events[-n:] if n > 0 else []

    def subscribe(self, replay: int = 0) -> Subscription:
        """Events from now on; with replay=n the last n ring events come first (no gap, no repeat)."""
        sub = Subscription(self)
        for event in self.recent(replay):
            sub.offer(event)
        self._subscribers.add(sub)
        return sub
