"""Reviewing a gallery: faces that look like somebody else, two names for one person, one photo
under two names (read-only, so a read key may ask)."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.review import ReviewReport
from ..deps import AUTH, answer, call, errors, get_db, heavy, read_key
from ..guard import Caller

router = APIRouter(tags=["review"])


@router.get("/review", dependencies=[heavy], response_model=ReviewReport, responses=errors(*AUTH))
async def review(caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """What looks wrong in the collection's gallery, with the evidence for each finding:
    ``outliers`` (a face far from the rest of its subject, or closer to another subject),
    ``look_alikes`` (two subjects close enough to be one person) and ``duplicates`` (one photo
    under two names)."""
    return answer(await call(caller, db.review))
