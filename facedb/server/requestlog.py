"""The server's one log line per request, as a plain ASGI middleware.

Starlette's ``@app.middleware("http")`` (``BaseHTTPMiddleware``) runs the rest of the
application in a task of its own and hands the response back through memory streams: per
request, a task group, two streams and a wrapped response, about a tenth of the server's own
CPU per search (measured with ``scripts/bench/server_cpu.py``). This middleware only watches the
``http.response.start`` message go by, so it costs a clock read and the log line.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import trace
from .guard import route_template

log = logging.getLogger("facedb.server")


class RequestLog:
    """One line per HTTP request: method, route *template* (never a subject name, which the raw
    path may hold), status, milliseconds until the response was sent; and the tracing span
    ``http.request`` around it. A request that raises is logged by the error handler instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [0]

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with trace.span("http.request"):
            await self.app(scope, receive, watch)
        if log.isEnabledFor(logging.INFO):
            request: Any = Request(scope)
            log.info("%s %s %d %.0f ms", scope["method"], route_template(request), status[0],
                     1000 * (time.perf_counter() - t0))
