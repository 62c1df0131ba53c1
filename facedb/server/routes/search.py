"""Who is in these photos (1:N), and is this the subject (1:1)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from ...analysis.files import Upload
from ...api import FaceDB
from ...contract.models import SearchReport, VerifyResult
from ...contract.requests import SearchOptions, VerifyOptions, parse
from ...errors import UsageError
from ...operations.gatekeeper import acting_as
from ..deps import AUTH, admitted, answer, call, errors, get_db, get_limits, heavy, read_key, uploads_of
from ..guard import Caller
from ..inline import SECURITY, resolved
from ..uploads import Limits, read_form
from . import multipart_body

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchReport, responses=errors(*AUTH, 413, 422),
             openapi_extra={**multipart_body(SearchOptions, {"images": True}), **SECURITY})
async def search(request: Request) -> JSONResponse:
    """Who is in each image? Multipart: repeated ``images``; fields ``k``, ``by``, ``threshold``,
    ``reference``, ``scoring`` (template|best), ``aligned`` (112x112 aligned crops). Same JSON as ``facedb search --json``; an image
    that cannot be used has its ``error`` and ``reason`` and the others are still answered."""
    # heavy, read_key, get_db and get_limits, called here rather than declared (see server/inline.py)
    async with admitted(request):
        caller, db, limits = await resolved(request, "read")
        form = await read_form(request, limits)
        images = uploads_of(form.files.get("images", []), None, caller)
        if not images:
            raise UsageError("send at least one image in the multipart field 'images'")
        opts = parse(SearchOptions, form.fields)
        if len(images) == 1:  # answered on the event loop when it can be (FaceDB.search_async)
            with acting_as(caller.actor):
                rep = await db.search_async(images[0], **opts.keywords())
            if rep is not None:
                return answer(rep)
        return answer(await call(caller, db.search, images, **opts.keywords()))


@router.post("/verify", dependencies=[heavy], response_model=VerifyResult,
             responses=errors(*AUTH, 404, 413, 422),
             openapi_extra=multipart_body(VerifyOptions, {"image": False}))
async def verify(request: Request, limits: Limits = Depends(get_limits),
                 caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """1:1: is the largest face in the multipart ``image`` the enrolled ``subject`` (under
    ``threshold``)? ``aligned``: the image is a 112x112 aligned crop (no detection)."""
    form = await read_form(request, limits)
    images = form.files.get("image", [])
    if len(images) != 1 or not form.text("subject"):
        raise UsageError("send one image in the multipart field 'image' and the field 'subject'")
    opts = parse(VerifyOptions, form.fields)
    return answer(await call(caller, db.verify, Upload(*images[0]), opts.subject, threshold=opts.threshold,
                             aligned=opts.aligned))
