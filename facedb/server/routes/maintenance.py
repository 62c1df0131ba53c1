"""Catalog and index upkeep: check (and repair), vacuum, reindex."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.models import CheckReport, ReindexReport, VacuumReport
from ..deps import AUTH, admin_key, answer, call, errors, get_db, heavy, read_key
from ..guard import Caller

router = APIRouter(tags=["maintenance"])


@router.get("/v1/check", response_model=CheckReport, responses=errors(*AUTH))
async def check(db: FaceDB = Depends(get_db), caller: Caller = read_key) -> JSONResponse:
    """How the index compares with the catalog (the system of record)."""
    return answer(await call(caller, db.check))


@router.post("/v1/check/repair", dependencies=[heavy], response_model=CheckReport, responses=errors(*AUTH))
async def repair(db: FaceDB = Depends(get_db), caller: Caller = admin_key) -> JSONResponse:
    """Check, and fix any drift from the catalog."""
    return answer(await call(caller, db.check, repair=True))


@router.post("/v1/vacuum", dependencies=[heavy], response_model=VacuumReport, responses=errors(*AUTH))
async def vacuum(db: FaceDB = Depends(get_db), caller: Caller = admin_key) -> JSONResponse:
    """Rewrite the stores so deleted faces are physically erased."""
    return answer(await call(caller, db.vacuum))


@router.post("/v1/reindex", dependencies=[heavy], response_model=ReindexReport, responses=errors(*AUTH))
async def reindex(db: FaceDB = Depends(get_db), caller: Caller = admin_key) -> JSONResponse:
    """Re-embed every stored image with the loaded pack."""
    return answer(await call(caller, db.reindex))
