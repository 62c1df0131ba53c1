"""Long work in the background: submit it, follow its progress, fetch its result once, or cancel it."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.requests import JobInfo, JobOptions, parse
from ...errors import UsageError
from ...operations.gatekeeper import acting_as
from ..deps import AUTH, errors, get_db, get_limits, read_key, uploads_of
from ..guard import Caller
from ..jobs import Jobs
from ..uploads import Limits, read_form
from . import multipart_body

router = APIRouter(tags=["jobs"])
JOB_ID = Path(description="The job's id, as POST /jobs answered it.", min_length=1, max_length=64)


def _jobs(request: Request) -> Jobs:
    jobs: Jobs = request.app.state.jobs
    return jobs


@router.post("/jobs", status_code=202, response_model=JobInfo, responses=errors(*AUTH, 413, 422),
             openapi_extra=multipart_body(JobOptions, {"images": True}))
async def submit(request: Request, limits: Limits = Depends(get_limits), caller: Caller = read_key,
                 db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Start a search (``kind=search``: photos and videos, with the options of ``POST /search``)
    or a discovery (``kind=discover``: the options of ``POST /discover``) in the background:
    answers 202 with the job at once. ``GET /jobs/{id}`` follows its progress
    and gives its result once, ``DELETE /jobs/{id}`` cancels it."""
    from ..app import error_body

    form = await read_form(request, limits)
    images = uploads_of(form.files.get("images", []), None, caller)
    if not images:
        raise UsageError("send at least one image or video in the multipart field 'images'")
    opts = parse(JobOptions, form.fields)
    verb, keywords = opts.work()

    def work(progress: Callable[[int], None]) -> dict[str, Any]:
        with acting_as(caller.actor):
            if verb == "discover":
                return db.discover(images, **keywords, progress=progress).to_dict()
            return db.search(images, **keywords, progress=progress).to_dict()

    job = _jobs(request).submit(opts.kind, caller.actor, db.collection_name, len(images), work, error_body)
    return JSONResponse(job.view(), status_code=202)


@router.get("/jobs/{job_id}", response_model=JobInfo, responses=errors(*AUTH, 404, 422))
async def fetch(request: Request, job_id: str = JOB_ID, caller: Caller = read_key,
                db: FaceDB = Depends(get_db)) -> JSONResponse:
    """The job: its status and progress; once it has ended, its result (or error), given once:
    the job is then forgotten."""
    return JSONResponse(_jobs(request).fetch(job_id, caller.actor, db.collection_name))


@router.delete("/jobs/{job_id}", response_model=JobInfo, responses=errors(*AUTH, 404, 422))
async def cancel(request: Request, job_id: str = JOB_ID, caller: Caller = read_key,
                 db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Cancel the job (a running search stops at its next photo or video frame) and forget it."""
    return JSONResponse(_jobs(request).cancel(job_id, caller.actor, db.collection_name))
