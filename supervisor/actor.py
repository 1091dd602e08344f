"""A small mailbox actor, and restart policy as data.

An actor handles one message at a time from its mailbox in one task it owns. `tell` posts and
forgets; `ask` posts and awaits the handler's result (or its exception). Every background task an
actor starts goes through `own()`: if such a task dies of an exception - or the mailbox loop
itself does - `on_crash` is called, so a broken actor is noticed and never hangs silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

log = logging.getLogger("supervisor.actor")


class ActorDead(RuntimeError):
    """The actor's mailbox loop is not running (never started, closed, or crashed)."""


@dataclass
class _Ask:
    message: object
    reply: asyncio.Future[Any]


class Actor:
    def __init__(self, name: str) -> None:
        self.name = name
        self._mailbox: asyncio.Queue[object] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None
        self._owned: set[asyncio.Task[Any]] = set()
        self._closing = False
        self.crash: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start_actor(self) -> None:
        if self._loop_task is None:
            self._loop_task = self.own(self._run(), "mailbox loop")

    @property
    def alive(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def close(self) -> None:
        """Stop the mailbox loop and cancel every owned task (does not touch any OS process)."""
        self._closing = True
        tasks = [t for t in self._owned if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending(ActorDead(f"{self.name}: actor closed"))

    # -- messaging ----------------------------------------------------------------------------
    def tell(self, message: object) -> None:
        if not self.alive:
            raise ActorDead(f"{self.name}: actor is not running")
        self._mailbox.put_nowait(message)

    async def ask(self, message: object, timeout: float | None = None) -> Any:
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.tell(_Ask(message, reply))
        return await asyncio.wait_for(reply, timeout) if timeout is not None else await reply

    async def handle(self, message: object) -> Any:
        raise NotImplementedError

    # -- ownership ---------------------------------------------------------------------------
    def own(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run coro as a task of this actor; an exception in it becomes `on_crash(what, exc)`."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}: {what}")
        self._owned.add(task)
        task.add_done_callback(lambda t: self._task_done(t, what))
        return task

    def _task_done(self, task: asyncio.Task[Any], what: str) -> None:
        self._owned.discard(task)
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        if exc is None and task is self._loop_task:
            exc = RuntimeError("mailbox loop returned")
        if exc is not None:
            self.crash = exc
            log.error("%s: %s crashed: %r", self.name, what, exc, exc_info=exc)
            if task is self._loop_task:
                self._fail_pending(ActorDead(f"{self.name}: mailbox loop crashed: {exc!r}"))
            self.on_crash(what, exc)

    def on_crash(self, what: str, exc: BaseException) -> None:
        """Called once per crashed owned task; subclasses turn it into a visible state."""

    # -- internals ----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            message = await self._mailbox.get()
            if isinstance(message, _Ask):
                if message.reply.done():  # the asker gave up (timeout/cancel)
                    continue
                try:
                    result = await self.handle(message.message)
                except Exception as exc:  # the asker gets it; the actor lives on
                    if not message.reply.done():
                        message.reply.set_exception(exc)
                else:
                    if not message.reply.done():
                        message.reply.set_result(result)
            else:
                await self.handle(message)  # an exception here crashes the actor

    def _fail_pending(self, exc: Exception) -> None:
        while not self._mailbox.empty():
            message = self._mailbox.get_nowait()
            if isinstance(message, _Ask) and not message.reply.done():
                message.reply.set_exception(exc)


# -- restart policy ------------------------------------------------------------------------------
class Policy(str, Enum):
    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"

    def wants_restart(self, returncode: int | None) -> bool:
        """on-failure restarts only after a non-zero exit or a signal; None means 'unknown': restart."""
        if self is Policy.NEVER:
            return False
        if self is Policy.ON_FAILURE:
            return returncode != 0
        return True


@dataclass
class Backoff:
    """Delay before each respawn: initial, doubling, capped at maximum."""

    initial: float
    maximum: float
    factor: float = 2.0
    _current: float | None = field(default=None, repr=False)

    def next(self) -> float:
        self._current = self.initial if self._current is None else min(self._current * self.factor, self.maximum)
        return min(self._current, self.maximum)

    def reset(self) -> None:
        self._current = None


@dataclass
class RestartIntensity:
    """At most `intensity` restarts within `period` seconds (OTP); one more means give up."""

    intensity: int
    period: float
    _times: deque[float] = field(default_factory=deque, repr=False)

    def allow(self, now: float | None = None) -> bool:
        """Record a restart at `now`; False if it would exceed the limit (then it is not recorded)."""
        now = time.monotonic() if now is None else now
        while self._times and now - self._times[0] > self.period:
            self._times.popleft()
        if len(self._times) >= self.intensity:
            return False
        self._times.append(now)
        return True

    def reset(self) -> None:
        self._times.clear()

    def describe(self) -> str:
        return f"more than {self.intensity} restarts within {self.period:g}s"
