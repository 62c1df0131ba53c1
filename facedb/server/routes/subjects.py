"""Subjects: enroll photos, list, show, rename, delete; and the photos that failed."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.models import DeleteReport, EnrollReport, FailureRecord, ImportReport, SubjectDetail, SubjectInfo
from ...contract.requests import EnrollOptions, RenameBody, Renamed, parse
from ...errors import UsageError
from ..deps import AUTH, answer, call, errors, get_db, get_limits, heavy, json_body, read_key, uploads_of, write_key
from ..guard import Caller
from ..uploads import Limits, read_form, with_read_failures
from . import json_body_doc, multipart_body

router = APIRouter(tags=["subjects"])


def enroll_json(pack: str, rep: EnrollReport) -> dict[str, Any]:
    """The JSON of ``facedb enroll --json`` (one subject's report plus the totals)."""
    return ImportReport(pack=pack, subjects=[rep]).to_dict()


@router.get("/subjects", response_model=list[SubjectInfo], responses=errors(*AUTH))
async def subjects(caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every enrolled subject with its image and face counts."""
    return answer(await call(caller, db.subjects))


@router.get("/failures", response_model=list[FailureRecord], responses=errors(*AUTH, 422))
async def failures(subject: str | None = Query(None, description="Only this subject's."),
                   reason: str | None = Query(None, description="Only this reason (no_face, ...)."),
                   caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Photos that could not be enrolled, with their reasons."""
    return answer(await call(caller, db.failures, subject=subject, reason=reason))


@router.post("/subjects/{name:path}/images", dependencies=[heavy], response_model=ImportReport,
             responses=errors(*AUTH, 409, 413, 422),
             openapi_extra=multipart_body(EnrollOptions, {"images": True}))
async def enroll(name: str, request: Request, limits: Limits = Depends(get_limits),
                 caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Enroll: multipart ``images`` (+ ``metadata`` JSON object, ``multi_face`` resolve|largest|skip,
    ``face`` (0 = the largest, one image), ``aligned`` (112x112 aligned crops, no detection),
    ``quality_floor``: "default", "off" or ``eye_px=12,blur=10``).
    Partial success: the report lists every rejected file with its reason."""
    form = await read_form(request, limits)
    fields = dict(form.fields)
    images = with_read_failures(uploads_of(form.files.get("images", []), fields.pop("source_paths", None), caller),
                                fields.pop("read_failures", None))
    if not images:
        raise UsageError("send at least one image in the multipart field 'images'")
    opts = parse(EnrollOptions, fields)
    rep = await call(caller, db.enroll, name, images, multi_face=opts.multi_face, metadata=opts.metadata,
                     quality_floor=opts.floor, aligned=opts.aligned, face=opts.face)
    return answer(enroll_json(db.pack_name, rep))


@router.get("/subjects/{name:path}", response_model=SubjectDetail, responses=errors(*AUTH, 404, 422))
async def show(name: str, caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """One subject: metadata, images with their faces, failed images."""
    return answer(await call(caller, db.show, name))


@router.patch("/subjects/{name:path}", response_model=Renamed, responses=errors(*AUTH, 404, 409, 422),
              openapi_extra=json_body_doc(RenameBody))
async def rename(name: str, request: Request, caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Rename: JSON body ``{"name": "new name"}``."""
    body = parse(RenameBody, await json_body(request))
    await call(caller, db.rename, name, body.name)
    return answer(Renamed(old=name, new=body.name))


@router.delete("/subjects/{name:path}", dependencies=[heavy], response_model=DeleteReport,
               responses=errors(*AUTH, 404, 422))
async def delete(name: str, vacuum: bool = Query(False, description="Also rebuild the whole index and compact the stores (the deleted bytes leave the files without it)."),
                 caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Delete a subject with all its faces, bytes included; ``?vacuum=true`` also rebuilds the index."""
    return answer(await call(caller, db.delete, name, vacuum=vacuum))
