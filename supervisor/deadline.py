"""Waiting for a condition with a deadline: the one way this project waits (never a fixed sleep)."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Awaitable, Callable


async def wait_until(
    check: Callable[[], Awaitable[bool] | bool],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll `check` until it returns true; raise TimeoutError naming `what` after `timeout` seconds.

    An exception raised by `check` counts as "not yet" (the thing polled is usually still starting);
    the last one is chained to the TimeoutError so the cause is visible.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - polling a thing that may not be up yet
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}") from last_error
        await asyncio.sleep(interval)
