"""The dependencies of ``deps`` as plain awaits, for the routes every client calls in a loop.

FastAPI resolves each declared dependency through ``solve_dependencies`` (a signature walk,
parameter extraction, and for a ``yield`` dependency an exit stack entered and left): on
``POST /v1/search`` that was about a quarter of the event loop's CPU per search, more than the
key check and the multipart parser together (py-spy, ``docs/benchmarks/server-cpu.md``). A
route declared with ``hot_route`` takes only the ``Request`` and calls the same functions
itself, in the order FastAPI would have called them: the heavy-request admission (503), the
caller's key (401/403), the collection (404), then the body. Its OpenAPI operation is the
one it had with the declared dependencies: the key's ``security`` requirement is stated in
``openapi_extra`` (the bearer scheme itself is documented by every other route).
"""
from __future__ import annotations

from typing import Any

from fastapi import Request

from ..api import FaceDB
from ..catalog.core import DEFAULT_COLLECTION
from ..operations.gatekeeper import Scope
from .deps import bearer, get_db
from .guard import Caller
from .uploads import Limits

#: ``openapi_extra`` of a route that checks the key itself: what ``Security(bearer)`` documents.
SECURITY: dict[str, Any] = {"security": [{bearer.scheme_name: []}]}


async def caller_of(request: Request, need: Scope) -> Caller:
    """``deps.read_key`` / ``write_key`` / ``admin_key``: the caller, whose key must allow ``need``
    on the request's collection (the path's ``{collection}``, else ``default``)."""
    collection = request.path_params.get("collection", DEFAULT_COLLECTION)
    caller: Caller = await request.app.state.key_checks[need](request, collection=collection)
    return caller


async def resolved(request: Request, need: Scope) -> tuple[Caller, FaceDB, Limits]:
    """The caller, the database and the upload limits of a heavy request (admitted already)."""
    caller = await caller_of(request, need)
    db = await get_db(request)
    limits: Limits = request.app.state.limits
    return caller, db, limits
