"""The HTTP API of ``facedb serve``: a thin layer over one ``FaceDB``.

Request and response bodies are the CLI's ``--json`` shapes (the result dataclasses'
``to_dict()``); errors are ``{"error", "reason", "status", "kind"}`` with the status from the
one table in ``facedb.errors``. Images always arrive as bytes: the server never opens a path
or URL a client names.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import trace
from ..analysis.files import Upload
from ..analysis.quality import parse_quality_floor
from ..api import FaceDB
from ..errors import AuthError, FacedbError, OverloadedError, UsageError
from ..operations.gatekeeper import acting_as
from .guard import Admission, Caller, KeyCheck
from .uploads import Limits, read_form, with_read_failures

log = logging.getLogger("facedb.server")
T = TypeVar("T")
WEB_DIR = Path(__file__).resolve().parent.parent / "web"


@dataclass(frozen=True)
class ServerConfig:
    limits: Limits = field(default_factory=Limits)
    #: heavy requests (analysis, writes) in progress at once; more get 503 + Retry-After
    queue: int = 32
    #: shared stores: how often to look for writes a dead facedb process left unfinished
    recover_every_s: float = 30.0


def error_body(exc: FacedbError) -> dict[str, Any]:
    return {"error": str(exc), "reason": exc.reason, "status": exc.http_status, "kind": exc.kind}


def _error_response(exc: FacedbError) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(exc, OverloadedError):
        headers["Retry-After"] = str(exc.retry_after)
    elif exc.http_status == 503:
        headers["Retry-After"] = "5"
    if isinstance(exc, AuthError) and exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="facedb"'
    return JSONResponse(error_body(exc), status_code=exc.http_status, headers=headers)


# -- form fields ------------------------------------------------------------------------------

def _int(value: str | None, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {value!r}") from None
    if not lo <= n <= hi:
        raise UsageError(f"{name} must be between {lo} and {hi}, not {n}")
    return n


def _float(value: str | None, name: str, lo: float, hi: float) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(value)
    except ValueError:
        raise UsageError(f"{name} must be a number, not {value!r}") from None
    if not lo <= x <= hi:
        raise UsageError(f"{name} must be between {lo:g} and {hi:g}, not {x:g}")
    return x


def _bool(value: str | None, name: str) -> bool:
    if value is None or value == "":
        return False
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name} must be true or false, not {value!r}")


def _choice(value: str | None, name: str, options: tuple[str, ...]) -> str:
    if value is None or value == "":
        return options[0]
    if value not in options:
        raise UsageError(f"{name} must be one of {', '.join(options)}, not {value!r}")
    return value


def _uploads(images: list[tuple[str, bytes]], paths_field: str | None, caller: Caller) -> list[Upload]:
    """The uploaded images; the owner's own CLI (unix socket) may say which files it read them
    from (``source_paths``), so that reindex and thumbnails can find them later."""
    paths: list[str | None] = [None] * len(images)
    if caller.local and paths_field:
        try:
            given = json.loads(paths_field)
        except json.JSONDecodeError:
            raise UsageError("source_paths must be a JSON list") from None
        if not isinstance(given, list) or len(given) != len(images):
            raise UsageError("source_paths must list one path per image")
        paths = [p if isinstance(p, str) and p.startswith("/") else None for p in given]
    return [Upload(name, data, path) for (name, data), path in zip(images, paths)]


def create_app(db: FaceDB, config: ServerConfig | None = None) -> FastAPI:
    """The FastAPI application serving ``db`` (which the caller opened and will close)."""
    config = config or ServerConfig()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Heavy requests wait in threads for the analysis workers: room for every admitted one,
        # plus the light requests beside them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.queue + 16
        task = asyncio.create_task(_recover_periodically(db, config.recover_every_s)) if db.store.shared else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()

    app = FastAPI(title="facedb", version=_version(), docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Face search service: enroll known faces, ask who is in a photo. "
                              "Every /v1 call over TCP needs 'Authorization: Bearer <API key>'.")
    keys = KeyCheck(db.gate)
    read_key, write_key, admin_key = (Depends(keys(scope)) for scope in ("read", "write", "admin"))
    heavy = Admission(config.queue)
    app.state.admission = heavy
    limits = config.limits

    async def call(caller: Caller, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def run() -> T:
            with acting_as(caller.actor):
                return fn(*args, **kwargs)

        return await run_in_threadpool(run)

    @app.exception_handler(FacedbError)
    async def _facedb_error(request: Request, exc: FacedbError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return _error_response(UsageError(f"{where}: {first.get('msg', 'invalid request')}".strip(": ")))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Unknown routes (404), wrong methods (405)...: the same JSON error shape."""
        body = {"error": str(exc.detail), "reason": "http", "status": exc.status_code, "kind": "http"}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error in %s %s: %s: %s", request.method, _route(request), type(exc).__name__, exc)
        body = {"error": "internal server error (logged on the server)", "reason": "internal", "status": 500,
                "kind": "internal"}
        return JSONResponse(body, status_code=500)

    @app.middleware("http")
    async def _log_requests(request: Request, call_next: Callable[[Request], Any]) -> Response:
        """One line per request: method, route *template* (never a subject name), status, time."""
        t0 = time.perf_counter()
        with trace.span("http.request"):
            response: Response = await call_next(request)
        log.info("%s %s %d %.0f ms", request.method, _route(request), response.status_code,
                 1000 * (time.perf_counter() - t0))
        return response

    # -- no key ------------------------------------------------------------------------------
    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness: status, pack, indexed faces, and the upload limits (no key needed)."""
        faces = await run_in_threadpool(db.catalog.count_indexed, db.pack_name)
        return {"status": "ok", "pack": db.pack_name, "faces": faces, "threshold": db.threshold,
                "limits": {"max_file_bytes": limits.max_file_bytes, "max_request_bytes": limits.max_request_bytes}}

    # -- read ----------------------------------------------------------------------------------
    @app.post("/v1/search", tags=["search"], dependencies=[Depends(heavy)])
    async def search(request: Request, caller: Caller = read_key) -> dict[str, Any]:
        """Who is in each image? Multipart: repeated ``images``; fields ``k``, ``by``, ``threshold``,
        ``reference``, ``scoring`` (template|best). Same JSON as ``facedb search --json``."""
        form = await read_form(request, limits)
        images = _uploads(form.files.get("images", []), None, caller)
        if not images:
            raise UsageError("send at least one image in the multipart field 'images'")
        k = _int(form.text("k"), "k", 3, 1, 1000)
        by = _choice(form.text("by"), "by", ("subject", "face"))
        threshold = _float(form.text("threshold"), "threshold", 0.0, 2.0)
        reference = _bool(form.text("reference"), "reference")
        scoring = _choice(form.text("scoring"), "scoring", ("template", "best"))
        rep = await call(caller, db.search, images, k=k, threshold=threshold, by=by, reference=reference,
                         scoring=scoring)
        return rep.to_dict()

    @app.post("/v1/verify", tags=["search"], dependencies=[Depends(heavy)])
    async def verify(request: Request, caller: Caller = read_key) -> dict[str, Any]:
        """1:1: multipart ``image`` and field ``subject`` (and ``threshold``)."""
        form = await read_form(request, limits)
        images = form.files.get("image", [])
        subject = form.text("subject")
        if len(images) != 1 or not subject:
            raise UsageError("send one image in the multipart field 'image' and the field 'subject'")
        threshold = _float(form.text("threshold"), "threshold", 0.0, 2.0)
        res = await call(caller, db.verify, Upload(*images[0]), subject, threshold=threshold)
        return res.to_dict()

    @app.get("/v1/whoami", tags=["keys"])
    async def whoami(caller: Caller = read_key) -> dict[str, Any]:
        """The caller's key name and scope (the web page shows it and hides what the key may
        not do); on the unix socket: ``local`` with scope ``admin``."""
        return {"name": caller.actor, "scope": caller.scope}

    @app.get("/v1/subjects", tags=["subjects"])
    async def subjects(caller: Caller = read_key) -> list[dict[str, Any]]:
        return [s.to_dict() for s in await call(caller, db.subjects)]

    @app.get("/v1/failures", tags=["subjects"])
    async def failures(subject: str | None = None, reason: str | None = None,
                       caller: Caller = read_key) -> list[dict[str, Any]]:
        return [f.to_dict() for f in await call(caller, db.failures, subject=subject, reason=reason)]

    @app.get("/v1/stats", tags=["service"])
    async def stats(caller: Caller = read_key) -> dict[str, Any]:
        return (await call(caller, db.stats)).to_dict()

    @app.get("/v1/packs", tags=["service"])
    async def packs(caller: Caller = read_key) -> list[dict[str, Any]]:
        return [m.to_dict() for m in await call(caller, db.packs)]

    @app.get("/v1/check", tags=["maintenance"])
    async def check(caller: Caller = read_key) -> dict[str, Any]:
        return (await call(caller, db.check)).to_dict()

    @app.get("/v1/faces/{face_id}/thumbnail", tags=["subjects"])
    async def thumbnail(face_id: int, size: int = 112, caller: Caller = read_key) -> Response:
        """A JPEG crop of an enrolled face from its source photo while that file is on disk;
        an SVG placeholder (header ``X-Facedb-Placeholder``) when it is not."""
        size = _int(str(size), "size", 112, 16, 512)
        jpeg = await call(caller, db.face_thumbnail, face_id, size)
        headers = {"Cache-Control": "no-store"}
        if jpeg is None:
            return Response(_PLACEHOLDER, media_type="image/svg+xml",
                            headers={**headers, "X-Facedb-Placeholder": "source photo not available"})
        return Response(jpeg, media_type="image/jpeg", headers=headers)

    # -- write ---------------------------------------------------------------------------------
    @app.post("/v1/subjects/{name:path}/images", tags=["subjects"], dependencies=[Depends(heavy)])
    async def enroll(name: str, request: Request, caller: Caller = write_key) -> dict[str, Any]:
        """Enroll: multipart ``images`` (+ ``metadata`` JSON object, ``multi_face`` largest|skip,
        ``quality_floor``: "default", "off" or ``eye_px=12,blur=10``).
        Partial success: the report lists every rejected file with its reason."""
        form = await read_form(request, limits)
        images = with_read_failures(_uploads(form.files.get("images", []), form.text("source_paths"), caller),
                                    form.text("read_failures"))
        if not images:
            raise UsageError("send at least one image in the multipart field 'images'")
        multi_face = _choice(form.text("multi_face"), "multi_face", ("largest", "skip"))
        try:
            floor = parse_quality_floor(form.text("quality_floor") or "default")
        except FacedbError as exc:
            raise UsageError(str(exc)) from None
        metadata = None
        if form.text("metadata"):
            try:
                metadata = json.loads(form.text("metadata") or "")
            except json.JSONDecodeError as exc:
                raise UsageError(f"metadata is not valid JSON ({exc})") from None
            if not isinstance(metadata, dict):
                raise UsageError("metadata must be a JSON object")
        rep = await call(caller, db.enroll, name, images, multi_face=multi_face, metadata=metadata,
                         quality_floor=floor)
        return enroll_json(db.pack_name, rep)

    @app.get("/v1/subjects/{name:path}", tags=["subjects"])
    async def show(name: str, caller: Caller = read_key) -> dict[str, Any]:
        return (await call(caller, db.show, name)).to_dict()

    @app.patch("/v1/subjects/{name:path}", tags=["subjects"])
    async def rename(name: str, request: Request, caller: Caller = write_key) -> dict[str, Any]:
        """Rename: JSON body ``{"name": "new name"}``."""
        body = await _json_body(request)
        new = body.get("name")
        if not isinstance(new, str):
            raise UsageError('send a JSON body {"name": "<new name>"}')
        await call(caller, db.rename, name, new)
        return {"old": name, "new": new}

    @app.delete("/v1/subjects/{name:path}", tags=["subjects"], dependencies=[Depends(heavy)])
    async def delete(name: str, vacuum: bool = False, caller: Caller = write_key) -> dict[str, Any]:
        """Delete a subject with all its faces; ``?vacuum=true`` also erases the bytes now."""
        return (await call(caller, db.delete, name, vacuum=vacuum)).to_dict()

    # -- admin ---------------------------------------------------------------------------------
    @app.post("/v1/check/repair", tags=["maintenance"], dependencies=[Depends(heavy)])
    async def repair(caller: Caller = admin_key) -> dict[str, Any]:
        return (await call(caller, db.check, repair=True)).to_dict()

    @app.post("/v1/vacuum", tags=["maintenance"], dependencies=[Depends(heavy)])
    async def vacuum_(caller: Caller = admin_key) -> dict[str, Any]:
        return (await call(caller, db.vacuum)).to_dict()

    @app.post("/v1/reindex", tags=["maintenance"], dependencies=[Depends(heavy)])
    async def reindex(caller: Caller = admin_key) -> dict[str, Any]:
        return (await call(caller, db.reindex)).to_dict()

    @app.get("/v1/keys", tags=["keys"])
    async def list_keys(caller: Caller = admin_key) -> list[dict[str, Any]]:
        return [k.to_dict() for k in await call(caller, db.keys)]

    @app.post("/v1/keys", tags=["keys"])
    async def create_key(request: Request, caller: Caller = admin_key) -> dict[str, Any]:
        """JSON body ``{"name", "scope"}``; the answer holds the key, shown only this once."""
        body = await _json_body(request)
        name, scope = body.get("name"), body.get("scope")
        if not isinstance(name, str) or not isinstance(scope, str):
            raise UsageError('send a JSON body {"name": "...", "scope": "read|write|admin"}')
        info = await call(caller, db.create_key, name, scope)
        return {"name": info.name, "scope": info.scope, "key": info.key}

    @app.delete("/v1/keys/{name:path}", tags=["keys"])
    async def revoke_key(name: str, caller: Caller = admin_key) -> dict[str, Any]:
        return (await call(caller, db.revoke_key, name)).to_dict()

    @app.get("/v1/audit", tags=["keys"])
    async def audit(since: str | None = None, limit: int | None = None,
                    caller: Caller = admin_key) -> list[dict[str, Any]]:
        when = None
        if since:
            try:
                when = datetime.fromisoformat(since)
            except ValueError:
                raise UsageError(f"since must be an ISO date/time, not {since!r}") from None
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        if limit is not None and limit < 1:
            raise UsageError("limit must be at least 1")
        return [a.to_dict() for a in await call(caller, db.audit, since=when, limit=limit)]

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


def enroll_json(pack: str, rep: Any) -> dict[str, Any]:
    """The JSON of ``facedb enroll --json`` (one subject's report plus the totals)."""
    return {"pack": pack, "subjects": [rep.to_dict()], "enrolled": rep.enrolled, "duplicates": rep.duplicates,
            "n_failed": len(rep.failed)}


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 64 * 1024:
        raise UsageError("the JSON body is too long")
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UsageError("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object")
    return body


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "(unmatched)"


def _version() -> str:
    from .. import __version__

    return __version__


def _mount_web(app: FastAPI) -> None:
    """The web page at / (every asset inside the package), when it is installed."""
    index = WEB_DIR / "index.html"
    if not index.is_file():
        return
    from fastapi.staticfiles import StaticFiles

    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(index.read_bytes(), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP})


_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_PLACEHOLDER = (b'<svg xmlns="http://www.w3.org/2000/svg" width="112" height="112" viewBox="0 0 112 112" '
                b'role="img" aria-label="photo not available"><rect width="112" height="112" fill="#d8dde3"/>'
                b'<circle cx="56" cy="44" r="20" fill="#9aa4b1"/><path d="M20 104c4-22 20-32 36-32s32 10 36 32z" '
                b'fill="#9aa4b1"/></svg>')
