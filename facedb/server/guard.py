"""Who is calling, what they may do, and how much work the server takes on at once.

- A request on the home's unix socket comes from the home's owner (the socket is 0600 in a
  0700 directory): it acts as ``local`` with every scope. Every request over TCP needs an API
  key (``Authorization: Bearer <key>``) whose scope allows the call.
- Heavy calls (analysis, writes) are admitted up to a bound; beyond it the server answers
  503 with ``Retry-After`` instead of queueing without limit.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import AuthError, OverloadedError
from ..operations.gatekeeper import ANONYMOUS_ACTOR, LOCAL_ACTOR, Gatekeeper, Scope
from ..wording import plural


@dataclass(frozen=True)
class Caller:
    """The authenticated caller of one request."""

    actor: str
    local: bool
    scope: str


#: ``app.state`` key: the routes of one collection, mounted under two prefixes (see ``route_template``).
PER_COLLECTION_ROUTES = "per_collection_routes"


def route_template(request: Request) -> str:
    """The path template of the request's route (``/v1/collections/{collection}/subjects/{name:path}``),
    never the raw path, which may hold a subject's name: for logs and the audit trail.

    The routes of one collection are declared once below ``/v1`` and mounted twice; the matched
    route is the one declared, so its prefix is told by the path parameter ``collection``."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:  # a mounted asset folder (the web page's, /docs'), or no route at all
        base = request.scope.get("app_root_path") or ""
        mount = (request.scope.get("root_path") or "")[len(base):]
        return f"{mount}/{{file}}" if mount else "(unmatched)"
    if id(route) in getattr(request.app.state, PER_COLLECTION_ROUTES, ()):
        return ("/v1/collections/{collection}" if "collection" in request.path_params else "/v1") + str(path)
    return str(path)


def is_local(request: Request) -> bool:
    """Whether the request arrived on a unix socket (uvicorn gives its server address as (path, None))."""
    server = request.scope.get("server")
    return bool(server) and server[1] is None  # type: ignore[index]


class KeyCheck:
    """Checks keys against the catalog; notes each key's last use at most once a minute."""

    TOUCH_EVERY_S = 60.0

    def __init__(self, gate: Gatekeeper) -> None:
        self.gate = gate
        self._touched: dict[str, float] = {}

    def __call__(self, need: Scope) -> Callable[..., Awaitable[Caller]]:
        async def dependency(request: Request, collection: str | None = None, any_collection: bool = False
                             ) -> Caller:
            """The caller of ``request``, whose key must allow ``need`` on ``collection`` (None: a
            server-wide call; ``any_collection``: a call about the key itself)."""
            if is_local(request):
                return Caller(LOCAL_ACTOR, True, "admin")
            header = request.headers.get("authorization", "")
            scheme, _, key = header.partition(" ")
            presented = key.strip() if scheme.lower() == "bearer" else None
            try:
                # a key checked in the last KEY_TRUST_S: no catalog read, no thread
                known = self.gate.authenticate_trusted(presented, need, collection, any_collection=any_collection)
                if known is None:
                    known = await run_in_threadpool(self.gate.authenticate, presented, need, collection,
                                                    any_collection=any_collection)
                name, scope = known
            except AuthError as exc:
                route = route_template(request)
                await run_in_threadpool(self._record_refusal, f"{request.method} {route}", exc, collection)
                raise
            now = time.monotonic()
            if now - self._touched.get(name, -1e9) > self.TOUCH_EVERY_S:
                self._touched[name] = now
                await run_in_threadpool(self.gate.catalog.touch_key, name)
            return Caller(name, False, scope)

        return dependency

    def _record_refusal(self, where: str, exc: AuthError, collection: str | None = None) -> None:
        """Audit a 401 or 403: the method and route *template* (the raw path may hold a subject
        name) and, for a 403, the key's name; never the key, nor any part of it. Batched: a
        client trying keys costs no commit per try."""
        self.gate.record("refused", actor=getattr(exc, "key_name", None) or ANONYMOUS_ACTOR,
                         outcome=exc.kind, detail=where, collection=collection)


class Admission:
    """At most ``limit`` heavy requests in the server at once; the next one gets 503."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.inflight = 0

    async def __call__(self) -> AsyncIterator[None]:
        if self.inflight >= self.limit:
            raise OverloadedError(f"the server is busy ({plural(self.inflight, 'request')} in progress); "
                                  "retry after the time in Retry-After", retry_after=1)
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
