"""Who are the people in these photos, enrolled or not (``facedb discover``)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.discover import DiscoverOptions, DiscoverReport
from ...contract.requests import parse
from ...errors import UsageError
from ..deps import AUTH, answer, call, errors, get_db, get_limits, heavy, read_key, uploads_of
from ..guard import Caller
from ..uploads import Limits, read_form
from . import multipart_body

router = APIRouter(tags=["discover"])


@router.post("/discover", dependencies=[heavy], response_model=DiscoverReport,
             responses=errors(*AUTH, 413, 422), openapi_extra=multipart_body(DiscoverOptions, {"images": True}))
async def discover(request: Request, limits: Limits = Depends(get_limits),
                   caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every face of the photos (repeated multipart ``images``, all in this one request: faces of
    different requests are not clustered together), one cluster per person: enrolled people
    named as search names them, the others grouped by face. Fields ``threshold`` (naming) and
    ``cluster_threshold``. Same JSON as ``facedb discover --json``; nothing is stored."""
    form = await read_form(request, limits)
    images = uploads_of(form.files.get("images", []), None, caller)
    if not images:
        raise UsageError("send at least one image in the multipart field 'images'")
    opts = parse(DiscoverOptions, form.fields)
    return answer(await call(caller, db.discover, images, **opts.keywords()))
