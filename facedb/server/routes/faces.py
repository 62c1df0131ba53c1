"""Enrolled faces one at a time: a thumbnail of each, a subject's faces, removing and moving
faces, merging two subjects, and searching with an enrolled face as the probe."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from ...api import FaceDB
from ...contract.faces import FaceSearchReport, FacesRemoveReport, FacesReport, MergeReport, MoveReport
from ...contract.requests import FaceSearchOptions, FacesMoveBody, FacesRemoveBody, MergeBody, parse
from ..deps import AUTH, answer, call, errors, get_db, heavy, json_body, read_key, write_key
from ..guard import Caller
from . import json_body_doc

router = APIRouter(tags=["subjects"])

_PLACEHOLDER = (b'<svg xmlns="http://www.w3.org/2000/svg" width="112" height="112" viewBox="0 0 112 112" '
                b'role="img" aria-label="photo not available"><rect width="112" height="112" fill="#d8dde3"/>'
                b'<circle cx="56" cy="44" r="20" fill="#9aa4b1"/><path d="M20 104c4-22 20-32 36-32s32 10 36 32z" '
                b'fill="#9aa4b1"/></svg>')
_IMAGE = {"schema": {"type": "string", "format": "binary"}}


@router.get("/faces/{face_id}/thumbnail", response_class=Response, responses={
    200: {"description": "The face (JPEG), or a placeholder (SVG, header X-Facedb-Placeholder).",
          "content": {"image/jpeg": _IMAGE, "image/svg+xml": _IMAGE}},
    **errors(*AUTH, 404, 422)})
async def thumbnail(face_id: int, size: int = Query(112, ge=16, le=512, description="Edge in pixels."),
                    caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> Response:
    """A JPEG crop of an enrolled face from its source photo while that file is on disk;
    an SVG placeholder (header ``X-Facedb-Placeholder``) when it is not."""
    jpeg = await call(caller, db.face_thumbnail, face_id, size)
    headers = {"Cache-Control": "no-store"}
    if jpeg is None:
        return Response(_PLACEHOLDER, media_type="image/svg+xml",
                        headers={**headers, "X-Facedb-Placeholder": "source photo not available"})
    return Response(jpeg, media_type="image/jpeg", headers=headers)


@router.get("/faces", response_model=FacesReport, responses=errors(*AUTH, 404, 422))
async def faces(subject: str = Query(min_length=1, description="The subject whose faces to list."),
                caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every face of a subject: photo, box, quality, and cosine distance to the subject's template.
    Same JSON as ``facedb faces list SUBJECT --json``."""
    return answer(await call(caller, db.faces, subject))


@router.get("/faces/{face_id}/search", response_model=FaceSearchReport, responses=errors(*AUTH, 404, 409, 422))
async def search_face(face_id: int,
                      k: int = Query(3, description=FaceSearchOptions.model_fields["k"].description or ""),
                      by: Literal["subject", "face"] = Query("subject"),
                      threshold: float | None = Query(None, description="Match when cosine distance <= this."),
                      scoring: Literal["template", "best"] = Query("template"),
                      caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """What is closest to an enrolled face (its stored embedding is the probe; the face itself is
    left out, see ``excluded``). Same JSON as ``facedb search --face-id ID --json``."""
    opts = parse(FaceSearchOptions, {"k": k, "by": by, "threshold": threshold, "scoring": scoring})
    return answer(await call(caller, db.search_face, face_id, **opts.keywords()))


@router.post("/faces/remove", dependencies=[heavy], response_model=FacesRemoveReport,
             responses=errors(*AUTH, 404, 422), openapi_extra=json_body_doc(FacesRemoveBody))
async def remove_faces(request: Request, caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Remove faces from both stores (and photos left without a face): JSON ``{"face_ids": [...],
    "vacuum": false}``. All or nothing: an unknown id (or one of another collection) is 404 and
    nothing is removed. A subject left without faces stays."""
    body = parse(FacesRemoveBody, await json_body(request))
    return answer(await call(caller, db.remove_faces, body.face_ids, vacuum=body.vacuum))


@router.post("/faces/move", dependencies=[heavy], response_model=MoveReport,
             responses=errors(*AUTH, 404, 422), openapi_extra=json_body_doc(FacesMoveBody))
async def move_faces(request: Request, caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Give faces (with their photos) to another subject of the collection: JSON
    ``{"face_ids": [...], "to": "name"}``; an unknown subject or face is 404."""
    body = parse(FacesMoveBody, await json_body(request))
    return answer(await call(caller, db.move_faces, body.face_ids, body.to))


@router.post("/merge", dependencies=[heavy], response_model=MergeReport,
             responses=errors(*AUTH, 404, 422), openapi_extra=json_body_doc(MergeBody))
async def merge(request: Request, caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Merge two subjects: JSON ``{"source": "a", "target": "b"}``; the source's photos and faces
    join the target and the source is deleted."""
    body = parse(MergeBody, await json_body(request))
    return answer(await call(caller, db.merge, body.source, body.target))
