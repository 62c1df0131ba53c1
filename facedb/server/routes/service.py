"""Liveness, counts and model packs."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from ...api import FaceDB
from ...contract.models import PackStatus, Stats
from ...contract.requests import Health
from ..deps import AUTH, answer, call, errors, get_db, get_limits, read_key
from ..guard import Caller
from ..uploads import Limits

router = APIRouter(tags=["service"])
server_router = APIRouter(tags=["service"])


@server_router.get("/healthz", response_model=Health, responses=errors(503))
async def healthz(db: FaceDB = Depends(get_db), limits: Limits = Depends(get_limits)) -> JSONResponse:
    """Liveness: status, pack, indexed faces, and the upload limits (no key needed)."""
    faces = await run_in_threadpool(db.catalog.count_indexed, db.pack_name)
    return answer({"status": "ok", "pack": db.pack_name, "faces": faces, "threshold": db.threshold,
                   "limits": {"max_file_bytes": limits.max_file_bytes, "max_request_bytes": limits.max_request_bytes}})


@router.get("/stats", response_model=Stats, responses=errors(*AUTH))
async def stats(caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Counts, disk use and where the data lives (``facedb stats --json``)."""
    return answer(await call(caller, db.stats))


@router.get("/packs", response_model=list[PackStatus], responses=errors(*AUTH))
async def packs(caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """The model packs, the active one, and how many faces each has here (``facedb packs --json``)."""
    return answer(await call(caller, db.packs))
