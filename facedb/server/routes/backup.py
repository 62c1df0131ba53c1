"""Backup (a snapshot of the whole database, streamed as it is written) and restore (admin,
server-wide)."""
from __future__ import annotations

import io
import os
import queue
import secrets
import threading
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...api import FaceDB
from ...contract.lifecycle import RestoreReport
from ...errors import UnavailableError, UsageError
from ...operations.gatekeeper import acting_as
from ..deps import AUTH, answer, call, errors, get_db, heavy, server_admin_key
from ..guard import Caller

server_router = APIRouter(tags=["backup"])

_ZIP = {"type": "string", "format": "binary", "contentMediaType": "application/zip"}
#: Bytes handed from the writing thread to the response at a time, and blocks in flight.
BLOCK = 1 << 20
IN_FLIGHT = 8


class ZipResponse(StreamingResponse):
    media_type = "application/zip"


class _Pipe(io.RawIOBase):
    """A write-only stream into a bounded queue that the response reads (zip files can be
    written to a stream that cannot seek). A response that stops reading (the client went away)
    cancels it: the next write raises and the writer ends."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=IN_FLIGHT)
        self.cancelled = False

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.put(data)
        return len(data)

    def put(self, item: bytes | BaseException | None) -> None:
        while not self.cancelled:
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise UnavailableError("the client stopped reading the snapshot")


def _json_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``errors()`` of a route whose success is not JSON: its errors still are (ErrorBody)."""
    return {s: {"description": doc["description"],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
            for s, doc in errors(*statuses).items()}


@server_router.get("/v1/backup", response_class=ZipResponse, responses={
    200: {"content": {"application/zip": {"schema": _ZIP}},
          "description": "The snapshot (a zip: see docs/storage.md), written as the catalog is read."},
    **_json_errors(*AUTH)})
async def backup(caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> Any:
    """One consistent snapshot of the whole database (every collection, keys hashed, the audit
    trail, the packs' contracts), streamed as it is written; writes and searches go on."""
    pipe = _Pipe()

    def write() -> None:
        try:
            with acting_as(caller.actor), io.BufferedWriter(pipe, buffer_size=BLOCK) as out:
                db.backup(out)
            pipe.put(None)
        except BaseException as exc:  # handed to the response: before the first byte, an error answer
            if not pipe.cancelled:
                pipe.put(exc)

    threading.Thread(target=write, name="facedb-backup", daemon=True).start()
    first = await run_in_threadpool(pipe.queue.get)
    if isinstance(first, BaseException):
        raise first

    def blocks() -> Iterator[bytes]:
        item: bytes | BaseException | None = first
        try:
            while item is not None:
                if isinstance(item, BaseException):
                    raise item  # mid-stream: the response is cut short, and the client's check fails
                yield item
                item = pipe.queue.get()
        finally:
            pipe.cancelled = True

    return ZipResponse(blocks(), headers={"Content-Disposition": 'attachment; filename="facedb-backup.zip"',
                                          "Cache-Control": "no-store"})


@server_router.post("/v1/restore", dependencies=[heavy], response_model=RestoreReport,
                    responses=errors(*AUTH, 409, 422),
                    openapi_extra={"requestBody": {"required": True, "content": {"application/zip": {"schema": _ZIP}}}})
async def restore(request: Request, caller: Caller = server_admin_key, db: FaceDB = Depends(get_db),
                  reindex_from_images: bool = Query(False, description="Accept a snapshot made with other weights: "
                                                    "re-embed its photos from their files.")) -> JSONResponse:
    """Restore a snapshot (the body, as ``GET /v1/backup`` wrote it) into this server's database,
    which must be empty (409 otherwise); 409 for a snapshot of other model weights."""
    home = db.settings.home
    tmp = home / f".restore-{os.getpid()}-{secrets.token_hex(4)}.zip"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            async for block in request.stream():
                await run_in_threadpool(out.write, block)
        if tmp.stat().st_size == 0:
            raise UsageError("the body is empty: send the snapshot file (Content-Type: application/zip)")
        return answer(await call(caller, db.restore, tmp, reindex_from_images=reindex_from_images))
    finally:
        tmp.unlink(missing_ok=True)
