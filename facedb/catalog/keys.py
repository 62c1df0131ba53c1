"""API keys (stored as SHA-256 hashes only) and the audit trail."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from .. import trace
from ..errors import AlreadyExistsError, NotFoundError
from .core import DEFAULT_COLLECTION, CatalogCore
from .models import ApiKey, AuditEntry, Collection, Subject, iso, utcnow
from .subjects import DELETED_PREFIX


def _key_dict(k: ApiKey) -> dict[str, Any]:
    return {"name": k.name, "scope": k.scope, "collection": k.collection, "created_at": iso(k.created_at), "revoked_at": iso(k.revoked_at),
            "last_used_at": iso(k.last_used_at), "active": k.revoked_at is None}


#: The key lookup of every request over TCP (``active_key``): built once, bound per call.
KEY_READ = (select(ApiKey.name, ApiKey.scope, ApiKey.key_hash, ApiKey.collection)
            .where(ApiKey.key_hash == bindparam("hash"), ApiKey.revoked_at.is_(None)))


class KeyQueries(CatalogCore):
    # -- API keys ------------------------------------------------------------------
    def create_key(self, name: str, scope: str, key_hash: str, collection: str | None = None) -> dict[str, Any]:
        """A new key (its hash); ``collection`` limits it to that collection."""
        try:
            with self.session() as s:
                if s.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
                    raise AlreadyExistsError(f"an API key named {name!r} already exists (see `facedb keys list`)")
                row = ApiKey(name=name, scope=scope, key_hash=key_hash, collection=collection)
                s.add(row)
                s.flush()
                return _key_dict(row)
        except IntegrityError:  # created meanwhile by another process
            raise AlreadyExistsError(f"an API key named {name!r} already exists") from None

    def keys(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [_key_dict(k) for k in s.scalars(select(ApiKey).order_by(ApiKey.name))]

    def revoke_key(self, name: str) -> dict[str, Any]:
        with self.session() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.name == name))
            if row is None:
                raise NotFoundError(f"no API key named {name!r} (see `facedb keys list`)")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _key_dict(row)

    @trace.traced("sql.active_key")
    def active_key(self, key_hash: str) -> tuple[str, str, str, str | None] | None:
        """(name, scope, stored hash, collection it is limited to) of the unrevoked key with this
        hash, else None."""
        rows = self.read(KEY_READ, {"hash": key_hash})
        return (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None

    def touch_key(self, name: str) -> None:
        with self.session() as s:
            s.execute(update(ApiKey).where(ApiKey.name == name).values(last_used_at=utcnow()))

    # -- audit trail ------------------------------------------------------------------
    def add_audit(self, actor: str, action: str, subject: str | None, images: int, faces: int, outcome: str,
                  detail: str | None = None) -> None:
        self.add_audits([{"actor": actor, "action": action, "subject": subject, "images": images, "faces": faces,
                          "outcome": outcome, "detail": detail}])

    @trace.traced("sql.audit")
    def add_audits(self, rows: list[dict[str, Any]]) -> None:
        """Audit rows in one transaction (keys: actor, action, subject, images, faces, outcome,
        detail, optional at and collection). A subject that exists is also recorded by id (a
        name is looked up in the row's collection), so that deleting it can scrub its name from
        every row, renamed or not.

        A name that is not an enrolled subject of that collection (a typo, a subject deleted
        meanwhile, a failed enroll that created nothing) is not recorded at all: no later delete
        could find and scrub it, and it may be the very name a delete erased."""
        with self.session() as s:
            names = {r["subject"] for r in rows if r.get("subject")}
            ids: dict[tuple[str, str], int] = {}
            if names:
                q = (select(Collection.name, Subject.name, Subject.id).join(Collection, Collection.id == Subject.collection_id)
                     .where(Subject.name.in_(names)))
                ids = {(c, n): int(i) for c, n, i in s.execute(q)}

            def where(r: dict[str, Any]) -> tuple[str, str]:
                return (r.get("collection") or DEFAULT_COLLECTION, r["subject"])

            def kept(r: dict[str, Any]) -> bool:
                return bool(r.get("subject")) and (where(r) in ids or r["subject"].startswith(DELETED_PREFIX))

            s.add_all([AuditEntry(actor=r["actor"][:128], action=r["action"][:32], collection=r.get("collection"),
                                  subject=r["subject"][:256] if kept(r) else None,
                                  subject_id=ids.get(where(r)) if r.get("subject") else None, images=r["images"],
                                  faces=r["faces"], outcome=r["outcome"][:16],
                                  detail=(r.get("detail") or None) and r["detail"][:128],
                                  **({"at": r["at"]} if r.get("at") else {})) for r in rows])

    def audit(self, since: datetime | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit entries in time order, oldest first (the newest ``limit`` of them). Batched
        entries (searches, refusals) are written after later ones, so the order is by time."""
        with self.session() as s:
            q = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            if since is not None:
                q = q.where(AuditEntry.at >= since)
            if limit is not None:
                q = q.limit(limit)
            rows = list(s.scalars(q))
        return [{"id": r.id, "at": iso(r.at), "actor": r.actor, "action": r.action, "collection": r.collection,
                 "subject": r.subject,
                 "images": r.images, "faces": r.faces, "outcome": r.outcome, "detail": r.detail}
                for r in reversed(rows)]
