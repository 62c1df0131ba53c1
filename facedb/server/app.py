"""The HTTP API of ``facedb serve``: a thin layer over one ``FaceDB``.

``create_app`` builds the application from the routers of ``facedb.server.routes`` (one per
resource) and the dependencies of ``facedb.server.deps``. Request and response bodies are the
CLI's ``--json`` shapes (the result models' ``to_dict()``), request options are the models of
``facedb.contract.requests``, and errors are ``ErrorBody`` (``{"error", "reason", "status",
"kind"}``) with the status from the one table in ``facedb.errors``; ``/openapi.json`` describes
all of it, and ``/docs`` shows it from assets inside the package. Images always arrive as bytes:
the server never opens a path or URL a client names.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..api import FaceDB
from ..contract.requests import ErrorBody, Problem, usage_error
from ..errors import AuthError, FacedbError, OverloadedError, UsageError
from .deps import collection_param, errors
from .guard import PER_COLLECTION_ROUTES, Admission, KeyCheck, route_template
from .jobs import Jobs
from .requestlog import RequestLog
from .routes import routers
from .uploads import Limits

log = logging.getLogger("facedb.server")
WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DOCS_DIR = Path(__file__).resolve().parent / "docs"


@dataclass(frozen=True)
class ServerConfig:
    limits: Limits = field(default_factory=Limits)
    #: heavy requests (analysis, writes) in progress at once; more get 503 + Retry-After
    queue: int = 32
    #: shared stores: how often to look for writes a dead facedb process left unfinished
    recover_every_s: float = 30.0
    #: background jobs waiting or running at most, and how long an ended job's result is kept
    #: when nobody fetches it
    max_jobs: int = 16
    job_keep_s: float = 3600.0


def error_body(exc: FacedbError) -> dict[str, Any]:
    problems = [Problem(field=f, message=m) for f, m in exc.problems] if isinstance(exc, UsageError) else []
    return ErrorBody(error=str(exc), reason=exc.reason, status=exc.http_status, kind=exc.kind,
                     problems=problems or None).model_dump(exclude_none=True)


def _error_response(exc: FacedbError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.http_status == 503:
        headers["Retry-After"] = "5"
    if isinstance(exc, AuthError) and exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="facedb"'
    return JSONResponse(error_body(exc), status_code=exc.http_status, headers=headers)


def create_app(db: FaceDB, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``db`` (which the caller opened and will close)."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Heavy requests wait in threads for the analysis workers: room for every admitted one,
        # plus the light requests beside them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.queue + 16
        # ... and as many in the loop's executor, which ``deps.call`` runs the routes' calls in
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=config.queue + 16, thread_name_prefix="facedb-call"))
        task = asyncio.create_task(_recover_periodically(db, config.recover_every_s)) if db.store.shared else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            app.state.jobs.close()

    app = FastAPI(title="facedb", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Face search service: enroll known faces, ask who is in a photo. "
                              "Every /v1 call over TCP needs 'Authorization: Bearer <API key>' with the "
                              "scope the call needs (read < write < admin); requests on the home's unix "
                              "socket come from its owner and need none. Every error answers an ErrorBody.")
    keys = KeyCheck(db.gate)
    # What the dependencies of facedb.server.deps read: the routers keep no state of their own.
    app.state.db = db
    app.state.limits = config.limits
    app.state.key_checks = {scope: keys(scope) for scope in ("read", "write", "admin")}
    app.state.admission = Admission(config.queue)
    app.state.jobs = Jobs(config.max_jobs, config.job_keep_s)

    @app.exception_handler(FacedbError)
    async def _facedb_error(request: Request, exc: FacedbError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        """A path or query parameter FastAPI checked (``face_id``, ``size``, ``vacuum``...)."""
        return _error_response(usage_error(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes (404), wrong methods (405)...: the same JSON error shape."""
        body = ErrorBody(error=str(exc.detail), reason="http", status=exc.status_code, kind="http")
        return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in %s %s: %s: %s", request.method, _route(request), type(exc).__name__, exc)
        body = ErrorBody(error="internal server error (logged on the server)", reason="internal", status=500,
                         kind="internal")
        return JSONResponse(body.model_dump(), status_code=500)

    # One log line per request (a plain ASGI middleware: see requestlog.py for why).
    app.add_middleware(RequestLog)

    server_wide, per_collection = routers()
    for router in server_wide:
        app.include_router(router)
    setattr(app.state, PER_COLLECTION_ROUTES, {id(route) for router in per_collection for route in router.routes})
    for router in per_collection:  # the default collection, then any collection by name
        app.include_router(router, prefix="/v1")
        app.include_router(router, prefix="/v1/collections/{collection}", dependencies=[Depends(collection_param)],
                           responses=errors(404, 422))  # an unknown or malformed collection name
    _mount_docs(app)
    _mount_web(app)
    return app


async def _recover_periodically(db: FaceDB, every_s: float) -> None:
    """Shared stores: whenever no write of any process is in flight, replay what a facedb process
    that died mid-write left (its faces stored but not indexed, its journaled deletes)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await run_in_threadpool(db.store.recover_now)
        except FacedbError as exc:  # a store is down: the next round tries again
            log.warning("background recovery skipped: %s", exc)


def _route(request: Request) -> str:
    return route_template(request)


def _version() -> str:
    from .. import __version__

    return __version__


def _mount_page(app: FastAPI, path: str, folder: Path, static_path: str, name: str) -> None:
    """``folder/index.html`` at ``path`` and ``folder/static`` at ``static_path`` (every asset inside
    the package, nothing from a CDN), under the strict content-security policy; nothing when the
    page is not installed."""
    index = folder / "index.html"
    if not index.is_file():
        return
    from fastapi.staticfiles import StaticFiles

    app.mount(static_path, StaticFiles(directory=folder / "static"), name=name)

    async def page() -> Response:
        return Response(index.read_bytes(), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP})

    app.add_api_route(path, page, methods=["GET"], include_in_schema=False)


def _mount_web(app: FastAPI) -> None:
    """The web page at / when it is installed."""
    _mount_page(app, "/", WEB_DIR, "/static", "static")


_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


def _mount_docs(app: FastAPI) -> None:
    """``/docs``: a page that reads ``/openapi.json`` and lists every route, its fields, answers
    and errors."""
    _mount_page(app, "/docs", DOCS_DIR, "/docs/static", "docs-static")
