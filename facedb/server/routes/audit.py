"""The audit trail (admin)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from ...api import FaceDB
from ...contract.models import AuditEntry
from ...contract.requests import AuditQuery, parse
from ..deps import AUTH, answer, call, errors, get_db, server_admin_key
from ..guard import Caller

server_router = APIRouter(tags=["keys"])

_SINCE = AuditQuery.model_fields["since"].description
_LIMIT = AuditQuery.model_fields["limit"].description


@server_router.get("/v1/audit", response_model=list[AuditEntry], responses=errors(*AUTH, 422))
async def audit(since: str | None = Query(None, description=_SINCE, examples=["24h", "2026-12-01T08:00"]),
                limit: int | None = Query(None, description=f"{_LIMIT} (at least 1)"),
                caller: Caller = server_admin_key, db: FaceDB = Depends(get_db)) -> JSONResponse:
    """Every write and every search: who, what, on which subject, how it ended (newest first)."""
    q = parse(AuditQuery, {"since": since, "limit": limit})
    return answer(await call(caller, db.audit, since=q.since, limit=q.limit))
