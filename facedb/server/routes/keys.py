"""API keys (admin), and who the caller is."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.models import KeyInfo
from ...contract.requests import CreatedKey, KeyCreateBody, Whoami, parse
from ..deps import AUTH, answer, any_read_key, call, errors, get_db, json_body, server_admin_key
from ..guard import Caller
from . import json_body_doc

server_router = APIRouter(tags=["keys"])


@server_router.get("/v1/whoami", response_model=Whoami, responses=errors(*AUTH))
async def whoami(caller: Caller = any_read_key) -> JSONResponse:
    """The caller's key name and scope (the web page shows it and hides what the key may
    not do); on the unix socket: ``local`` with scope ``admin``."""
    return answer({"name": caller.actor, "scope": caller.scope})


@server_router.get("/v1/keys", response_model=list[KeyInfo], responses=errors(*AUTH))
async def list_keys(caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every key: name, scope, when created, revoked and last used; never the key itself."""
    return answer(await call(caller, db.keys))


@server_router.post("/v1/keys", response_model=CreatedKey, responses=errors(*AUTH, 409, 422),
             openapi_extra=json_body_doc(KeyCreateBody))
async def create_key(request: Request, caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """JSON body ``{"name", "scope", "collection"?}``; the answer holds the key, shown only this
    once. A key with a ``collection`` may use only that collection (403 anywhere else)."""
    body = parse(KeyCreateBody, await json_body(request))
    info = await call(caller, db.create_key, body.name, body.scope, collection=body.collection)
    return answer({"name": info.name, "scope": info.scope, "collection": info.collection, "key": info.key})


@server_router.delete("/v1/keys/{name:path}", response_model=KeyInfo, responses=errors(*AUTH, 404, 422))
async def revoke_key(name: str, caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Revoke a key: its next request is refused (401)."""
    return answer(await call(caller, db.revoke_key, name))
