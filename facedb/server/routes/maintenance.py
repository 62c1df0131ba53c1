"""Catalog and index upkeep: check (and repair), vacuum, reindex."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.models import CheckReport, ReindexReport, VacuumReport
from ..deps import AUTH, admin_key, answer, call, errors, get_db, heavy, read_key, server_admin_key
from ..guard import Caller

router = APIRouter(tags=["maintenance"])
server_router = APIRouter(tags=["maintenance"])


@router.get("/check", response_model=CheckReport, responses=errors(*AUTH))
async def check(caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """How the index compares with the catalog (the system of record)."""
    return answer(await call(caller, db.check))


@router.post("/check/repair", dependencies=[heavy], response_model=CheckReport, responses=errors(*AUTH))
async def repair(caller: Caller = admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Check, and fix any drift from the catalog."""
    return answer(await call(caller, db.check, repair=True))


@server_router.post("/v1/vacuum", dependencies=[heavy], response_model=VacuumReport, responses=errors(*AUTH))
async def vacuum(caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Rebuild the index and compact the stores (every collection: server-wide)."""
    return answer(await call(caller, db.vacuum))


@router.post("/reindex", dependencies=[heavy], response_model=ReindexReport, responses=errors(*AUTH))
async def reindex(caller: Caller = admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Re-embed every stored image with the loaded pack."""
    return answer(await call(caller, db.reindex))
