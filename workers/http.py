"""HTTP pieces every worker shares: JSON errors, bounded body reads, the error/metrics middleware."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from aiohttp import web

from workers.input import InputError
from workers.metrics import MetricsRegistry

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HttpError(Exception):
    """Raised inside a handler to answer `status` with {"error": message}."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def fail(status: int, message: str, **extra: Any) -> NoReturn:
    raise HttpError(status, message, **extra)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it is known to exceed `limit` bytes (before buffering it all)."""
    if request.content_length is not None and request.content_length > limit:
        fail(413, f"request body is {request.content_length} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            fail(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _route_label(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def make_middleware(metrics: MetricsRegistry) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Turn HttpError/InputError/HTTPException/crashes into JSON and count/time every request."""
    requests = metrics.counter("http_requests_total", "HTTP requests by route, method and status",
                               ("route", "method", "status"))
    latency = metrics.histogram("http_request_duration_seconds", "HTTP request latency", ("route", "method"))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        try:
            response = await handler(request)
        except HttpError as exc:
            response = json_error(exc.status, exc.message, **exc.extra)
        except InputError as exc:
            response = json_error(exc.status, exc.message)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = json_error(exc.status, exc.reason)
        except Exception:  # a bug in a handler: log it, answer 500, keep serving
            log.exception("unhandled error in %s %s", request.method, request.path)
            response = json_error(500, "internal error (see the worker log)")
        route = _route_label(request)
        requests.inc(route=route, method=request.method, status=str(response.status))
        latency.observe(time.perf_counter() - started, route=route, method=request.method)
        return response

    return middleware
