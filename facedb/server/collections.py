"""Collections over HTTP: ``GET/POST /v1/collections`` and ``DELETE /v1/collections/{name}``
(admin scope), and the dependency that serves one collection's calls.

The server holds ONE ``FaceDB``; a call under ``/v1/collections/{collection}/...`` runs on
``db.collection(collection)``, a view sharing its stores, gatekeeper and workers. Wiring (the
merger's): ``app.include_router(collections_router(get_db, admin_key))``, and each per-collection
router mounted again under the prefix ``/v1/collections/{collection}`` with
``CollectionCheck(get_db)(need)`` as its dependency in place of the plain key check.
"""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Body, Depends, Request
from starlette.concurrency import run_in_threadpool

from ..api import FaceDB
from ..operations.gatekeeper import LOCAL_ACTOR, Scope, acting_as
from .guard import Caller, is_local

GetDB = Callable[..., Any]


@dataclass(frozen=True)
class InCollection:
    """An authenticated call on one collection: who calls, and the view of the collection."""

    caller: Caller
    db: FaceDB


class CollectionCheck:
    """The dependency of per-collection routes: checks the key for the path's ``collection``
    (a key limited to another collection gets 403 ``forbidden``), then gives
    ``db.collection(collection)`` (an unknown collection: 404 ``not_found``)."""

    TOUCH_EVERY_S = 60.0

    def __init__(self, get_db: GetDB) -> None:
        self.get_db = get_db
        self._touched: dict[str, float] = {}

    def __call__(self, need: Scope) -> Callable[..., Awaitable[InCollection]]:
        async def dependency(request: Request, collection: str, db: FaceDB = Depends(self.get_db)) -> InCollection:
            if is_local(request):
                caller = Caller(LOCAL_ACTOR, True, "admin")
            else:
                scheme, _, key = request.headers.get("authorization", "").partition(" ")
                presented = key.strip() if scheme.lower() == "bearer" else None
                name, scope = await run_in_threadpool(db.gate.authenticate, presented, need, collection)
                now = time.monotonic()
                if now - self._touched.get(name, -1e9) > self.TOUCH_EVERY_S:
                    self._touched[name] = now
                    await run_in_threadpool(db.gate.catalog.touch_key, name)
                caller = Caller(name, False, scope)
            view = await run_in_threadpool(db.collection, collection)
            return InCollection(caller, view)

        return dependency


async def _as(caller: Caller, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    def run() -> Any:
        with acting_as(caller.actor):
            return fn(*args, **kwargs)

    return await run_in_threadpool(run)


def collections_router(get_db: GetDB, admin_key: Callable[..., Awaitable[Caller]]) -> APIRouter:
    """The collections themselves (server-wide, admin scope: a key limited to one collection is
    refused, as the plain key check refuses it on every server-wide call)."""
    router = APIRouter(tags=["collections"])

    @router.get("/v1/collections")
    async def list_collections(db: FaceDB = Depends(get_db), caller: Caller = Depends(admin_key)
                               ) -> list[dict[str, Any]]:
        """Every collection with its pack, threshold, subjects and faces."""
        return [c.to_dict() for c in await _as(caller, db.collections)]

    @router.post("/v1/collections", status_code=201)
    async def create_collection(name: str = Body(...), pack: str | None = Body(None),
                                threshold: float | None = Body(None), db: FaceDB = Depends(get_db),
                                caller: Caller = Depends(admin_key)) -> dict[str, Any]:
        """A new, empty collection (``{"name", "pack"?, "threshold"?}``)."""
        info = await _as(caller, db.create_collection, name, pack=pack, threshold=threshold)
        out: dict[str, Any] = info.to_dict()
        return out

    @router.delete("/v1/collections/{name}")
    async def delete_collection(name: str, db: FaceDB = Depends(get_db),
                                caller: Caller = Depends(admin_key)) -> dict[str, Any]:
        """Erase a collection and everything in it (``default`` cannot be deleted)."""
        info = await _as(caller, db.delete_collection, name)
        out: dict[str, Any] = info.to_dict()
        return out

    return router
