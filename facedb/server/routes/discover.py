"""Who are the people in these photos, enrolled or not (``facedb discover``); saved runs and
enrolling one of their clusters."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from ...analysis.files import Upload
from ...analysis.quality import parse_quality_floor
from ...api import FaceDB
from ...contract.discover import DiscoverReport, ForgetReport
from ...contract.models import EnrollReport
from ...contract.requests import DiscoverOptions, EnrollClusterBody, parse
from ...errors import UsageError
from ..deps import AUTH, answer, call, errors, get_db, get_limits, heavy, json_body, read_key, uploads_of, write_key
from ..guard import Caller
from ..uploads import Limits, read_form
from . import json_body_doc, multipart_body

router = APIRouter(tags=["discover"])


async def _photos(request: Request, limits: Limits, caller: Caller) -> tuple[list[Upload], dict[str, Any]]:
    """The uploaded photos (with the owner's ``source_paths``) and the other form fields."""
    form = await read_form(request, limits)
    fields = dict(form.fields)
    images = uploads_of(form.files.get("images", []), fields.pop("source_paths", None), caller)
    if not images:
        raise UsageError("send at least one image in the multipart field 'images'")
    return images, fields


@router.post("/discover", dependencies=[heavy], response_model=DiscoverReport,
             responses=errors(*AUTH, 413, 422), openapi_extra=multipart_body(DiscoverOptions, {"images": True}))
async def discover(request: Request, limits: Limits = Depends(get_limits),
                   caller: Caller = read_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every face of the photos (repeated multipart ``images``, all in this one request: faces of
    different requests are not clustered together), one cluster per person: enrolled people
    named as search names them, the others grouped by face. Fields ``threshold`` (naming) and
    ``cluster_threshold``. Same JSON as ``facedb discover --json``; nothing is stored."""
    images, fields = await _photos(request, limits, caller)
    opts = parse(DiscoverOptions, fields)
    return answer(await call(caller, db.discover, images, **opts.keywords()))


@router.post("/discover/runs", dependencies=[heavy], response_model=DiscoverReport,
             responses=errors(*AUTH, 409, 413, 422),
             openapi_extra=multipart_body(DiscoverOptions, {"images": True}, required=("name",)))
async def discover_and_save(request: Request, limits: Limits = Depends(get_limits),
                            caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """``POST /discover``, and the run is kept under the form field ``name`` (its faces, clusters
    and embeddings, in the catalog) for ``.../clusters/{id}/enroll``; 409 when the name is taken."""
    images, fields = await _photos(request, limits, caller)
    name = fields.pop("name", None)
    if not name:
        raise UsageError("name: give the run's name in the form field 'name'")
    opts = parse(DiscoverOptions, fields)
    return answer(await call(caller, db.discover, images, save=name, **opts.keywords()))


@router.delete("/discover/runs/{run}", response_model=ForgetReport, responses=errors(*AUTH, 404, 422))
async def forget(run: str = PathParam(description="The saved run."), caller: Caller = write_key,
                 db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Erase a saved run: its faces, clusters and embeddings leave the catalog."""
    return answer(await call(caller, db.forget_run, run))


@router.post("/discover/runs/{run}/clusters/{cluster_id}/enroll", dependencies=[heavy], response_model=EnrollReport,
             responses=errors(*AUTH, 404, 422), openapi_extra=json_body_doc(EnrollClusterBody))
async def enroll_cluster(request: Request, run: str = PathParam(description="The saved run."),
                         cluster_id: int = PathParam(description="The cluster's id in the run."),
                         caller: Caller = write_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Enroll a saved run's cluster as subject ``name`` (JSON ``{"name", "quality_floor"?}``):
    its photos go through enrollment, as ``POST /subjects/{name}/images`` would."""
    body = parse(EnrollClusterBody, await json_body(request))
    return answer(await call(caller, db.enroll_cluster, run, cluster_id, body.name,
                             quality_floor=parse_quality_floor(body.quality_floor)))
