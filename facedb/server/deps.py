"""What every route depends on, in one place: the ``FaceDB`` it serves, the caller's key, the
heavy-request admission, and how a route runs a blocking call and answers.

Routers hold no state of their own: everything comes from ``request.app.state`` through these
dependencies, so the same router can be included again under another prefix with ``get_db``
choosing another database (several collections per server).
"""
from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

from fastapi import Depends, Path, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ..analysis.files import Upload
from ..api import FaceDB
from ..catalog.core import DEFAULT_COLLECTION
from ..contract.requests import ErrorBody
from ..errors import UsageError
from ..operations.gatekeeper import Scope, acting_as
from .guard import Caller
from .uploads import Limits, per_image

T = TypeVar("T")

#: Documents the key in /openapi.json; the check itself is ``guard.KeyCheck`` (a missing key is
#: refused there, with the audit trail and the error shape of every other refusal).
bearer = HTTPBearer(auto_error=False, scheme_name="apiKey", bearerFormat="facedb API key",
                    description="An API key from `facedb keys create NAME --scope read|write|admin`, "
                                "as 'Authorization: Bearer <key>'. Requests on the home's unix socket "
                                "(its owner) need none.")


#: The dependencies below are ``async``: FastAPI runs a plain ``def`` dependency in a worker thread,
#: one thread hop per dependency per request, which costs more than what they do.

async def get_db(request: Request) -> FaceDB:
    """The database this request is about: the collection named in the path
    (``/v1/collections/{collection}/...``: a view of the one ``FaceDB`` the server holds, sharing
    its stores and workers; an unknown collection is 404), else ``default``. Only a collection's
    view is looked up in a thread (the first time, it reads the catalog)."""
    db: FaceDB = request.app.state.db
    name = request.path_params.get("collection")
    return db if name is None else await run_in_threadpool(db.collection, name)


async def collection_param(collection: str = Path(description="The collection (gallery) the call is about.",
                                           min_length=1, max_length=128)) -> str:
    """Documents the ``{collection}`` of the prefixed routes (``get_db`` reads it)."""
    return collection


async def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


#: Which collections a route's key must be allowed: the one the call is about (a route of a
#: collection: the path's ``{collection}``, else ``default``), the whole server (keys, audit,
#: collections, vacuum: a key limited to one collection is refused), or any (``whoami``).
Reach = Literal["collection", "server", "any"]


def _key(need: Scope, reach: Reach = "collection") -> Callable[..., Any]:
    async def dependency(request: Request,
                         _credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Caller:
        collection = request.path_params.get("collection", DEFAULT_COLLECTION) if reach == "collection" else None
        caller: Caller = await request.app.state.key_checks[need](request, collection=collection,
                                                                    any_collection=reach == "any")
        return caller

    dependency.__name__ = f"{need}_key" if reach == "collection" else f"{reach}_{need}_key"
    return dependency


#: The caller, with a key of at least this scope that may use the call's collection (or the
#: owner on the unix socket).
read_key = Depends(_key("read"))
write_key = Depends(_key("write"))
admin_key = Depends(_key("admin"))
#: The same for server-wide calls, and for ``whoami`` (any valid key may ask who it is).
server_admin_key = Depends(_key("admin", "server"))
any_read_key = Depends(_key("read", "any"))


@asynccontextmanager
async def admitted(request: Request) -> AsyncIterator[None]:
    """A place among the heavy requests (analysis, writes), or 503 with Retry-After (as
    ``heavy``, for a route that admits itself: ``server.inline``)."""
    admission = request.app.state.admission()
    await admission.__anext__()
    try:
        yield
    finally:
        await admission.aclose()


async def _admit(request: Request) -> AsyncIterator[None]:
    async with admitted(request):
        yield


heavy = Depends(_admit)


async def call(caller: Caller, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, audited as the caller.

    The thread comes from the event loop's executor (``app.py`` gives the server's loop one
    sized like the admission queue), not from ``run_in_threadpool``: anyio hands each call to
    its thread through a ``queue.Queue``, whose Python-level ``Condition.notify`` was the event
    loop's largest single cost per search (py-spy, ``docs/benchmarks/server-cpu.md``); the
    executor's queue is C code. As with anyio's ``run_sync``, a request whose client went away
    still waits for its call to finish before it gives back its admission."""
    def run() -> T:
        with acting_as(caller.actor):
            return fn(*args, **kwargs)

    done = asyncio.get_running_loop().run_in_executor(None, contextvars.copy_context().run, run)
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await asyncio.wait({done})
        raise


def answer(result: Any) -> JSONResponse:
    """The JSON of a result (its ``to_dict()``: exactly the CLI's ``--json``), or of a list of them."""
    if isinstance(result, list):
        return JSONResponse([_plain(r) for r in result])
    return JSONResponse(_plain(result))


def _plain(result: Any) -> Any:
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    return result


async def json_body(request: Request) -> dict[str, Any]:
    """A small JSON object body (rename, key creation), before its model checks it."""
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise UsageError("the JSON body is too long")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object")
    return body


_DESCRIPTIONS = {
    401: "No API key, or an unknown or revoked one (header WWW-Authenticate).",
    403: "The key's scope does not allow this call, or the key is limited to another collection.",
    404: "No such subject, face, key or collection.",
    409: "The name is taken, or the model pack does not match the database.",
    413: "An upload over the server's limit per file or per request.",
    422: "A malformed request: a field, body or parameter that does not fit (the message says which).",
    503: "The server is busy or a store is unavailable: retry after the seconds in Retry-After.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route: each error status it may answer, with the ErrorBody shape."""
    return {s: {"model": ErrorBody, "description": _DESCRIPTIONS[s]} for s in statuses}


#: The errors of any call with a key: 401, 403 and 503 (busy store, full queue).
AUTH = (401, 403, 503)


def uploads_of(images: list[tuple[str, bytes]], paths_field: str | None, caller: Caller) -> list[Upload]:
    """The uploaded images; the owner's own CLI (unix socket) may say which files it read them
    from (``source_paths``), so that reindex and thumbnails can find them later."""
    paths: list[str | None] = [None] * len(images)
    if caller.local and paths_field:
        given = per_image(paths_field, len(images), "source_paths", "a path")
        paths = [p if isinstance(p, str) and p.startswith("/") else None for p in given]
    return [Upload(name, data, path) for (name, data), path in zip(images, paths)]
