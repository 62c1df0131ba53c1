"""The collections (galleries) of the server: list, create, delete (admin, server-wide).

Every route of one collection also exists under ``/v1/collections/{collection}/...`` (``create_app``
includes those routers twice); the unprefixed routes mean ``default``.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.models import CollectionInfo
from ...contract.requests import CollectionCreateBody, parse
from ..deps import AUTH, answer, call, errors, get_db, heavy, json_body, server_admin_key
from ..guard import Caller
from . import json_body_doc

server_router = APIRouter(tags=["collections"])


@server_router.get("/v1/collections", response_model=list[CollectionInfo], responses=errors(*AUTH))
async def list_collections(caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every collection with its pack, threshold, subjects and faces."""
    return answer(await call(caller, db.collections))


@server_router.post("/v1/collections", status_code=201, response_model=CollectionInfo,
                    responses=errors(*AUTH, 404, 409, 422), openapi_extra=json_body_doc(CollectionCreateBody))
async def create_collection(request: Request, caller: Caller = server_admin_key,
                            db: FaceDB = Depends(get_db)) -> JSONResponse:
    """A new, empty collection: JSON body ``{"name", "pack"?, "threshold"?}``."""
    body = parse(CollectionCreateBody, await json_body(request))
    info = await call(caller, db.create_collection, body.name, pack=body.pack, threshold=body.threshold)
    return JSONResponse(info.to_dict(), status_code=201)


@server_router.delete("/v1/collections/{name}", dependencies=[heavy], response_model=CollectionInfo,
                      responses=errors(*AUTH, 404, 422))
async def delete_collection(name: str, caller: Caller = server_admin_key,
                            db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Erase a collection and everything in it, as a subject delete erases (``default`` cannot be
    deleted; ``POST /v1/vacuum`` then rewrites the files so none of its bytes remain)."""
    return answer(await call(caller, db.delete_collection, name))
