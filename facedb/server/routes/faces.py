"""Enrolled faces: a thumbnail of each."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response

from ...api import FaceDB
from ..deps import AUTH, call, errors, get_db, read_key
from ..guard import Caller

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
