"""Opening the catalog (any SQLAlchemy URL), running migrations, and the queries facedb needs."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import create_engine, delete, event, func, select, tuple_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import FacedbError, NotFoundError
from .models import Base, Face, Failure, Image, PendingDelete, Setting, Subject

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: The newest migration's revision id (a test checks it equals Alembic's head).
SCHEMA_HEAD = "0001"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten with zeros: erased embeddings do not linger in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


@dataclass(frozen=True)
class FaceHit:
    """A face row joined with what a search result needs to show."""

    face_id: int
    subject_id: int
    subject: str
    image_path: str
    image_id: int
    indexed: bool
    model: str


class Catalog:
    """The SQL system of record. Every write method runs in its own transaction."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"timeout": 30} if self.is_sqlite else {}
        # pool_pre_ping: after a database server restart, pooled connections are dead; test each
        # on checkout instead of failing the first call made on it (not needed for a file).
        self.engine: Engine = create_engine(url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- lifecycle -------------------------------------------------------------
    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None for a new database)."""
        try:
            with self.engine.connect() as conn:
                return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        except (OperationalError, ProgrammingError):
            return None

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest Alembic revision.

        Alembic itself is only imported when the database is not already at ``SCHEMA_HEAD``.
        """
        if self.schema_revision() == SCHEMA_HEAD:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except (OperationalError, ProgrammingError) as exc:
            raise FacedbError(f"cannot open or upgrade the catalog database {self.safe_url}: {exc.orig}") from None

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    # -- settings --------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Setting, key)
            return row.value if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.session() as s:
            s.merge(Setting(key=key, value=value))

    # -- subjects --------------------------------------------------------------
    def subject(self, s: Session, name: str) -> Subject:
        row = s.scalar(select(Subject).where(Subject.name == name))
        if row is None:
            raise NotFoundError(f"no subject named {name!r} (see `facedb subjects`)")
        return row

    def subjects_by_name(self, s: Session, names: Sequence[str],
                         info: dict[str, dict[str, Any]] | None = None) -> dict[str, Subject]:
        """The named subjects, created when new (one query for the lot); ``info`` merges metadata."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, Subject] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            found.update({row.name: row for row in s.scalars(select(Subject).where(Subject.name.in_(chunk)))})
        new = [Subject(name=n, info=(info or {}).get(n)) for n in wanted if n not in found]
        if new:
            s.add_all(new)
            s.flush()
            found.update({row.name: row for row in new})
        for n, extra in (info or {}).items():
            if extra and n in found and found[n] not in new:
                found[n].info = {**(found[n].info or {}), **extra}
        return found

    def forget_failures(self, s: Session, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the failure records of these (path, subject name) pairs."""
        for i in range(0, len(keys), 400):
            chunk = list(keys[i:i + 400])
            if chunk:
                s.execute(delete(Failure).where(tuple_(Failure.path, Failure.subject_name).in_(chunk)))

    def subject_rows(self) -> list[dict[str, Any]]:
        with self.session() as s:
            faces = (
                select(Face.subject_id, func.count(Face.id).label("n"))
                .group_by(Face.subject_id).subquery()
            )
            images = (
                select(Image.subject_id, func.count(Image.id).label("n"))
                .group_by(Image.subject_id).subquery()
            )
            q = (
                select(Subject, func.coalesce(images.c.n, 0), func.coalesce(faces.c.n, 0))
                .outerjoin(images, images.c.subject_id == Subject.id)
                .outerjoin(faces, faces.c.subject_id == Subject.id)
                .order_by(Subject.name)
            )
            rows = [
                {"name": sub.name, "images": int(ni), "faces": int(nf), "metadata": sub.info,
                 "created_at": sub.created_at.isoformat() if sub.created_at else None}
                for sub, ni, nf in s.execute(q)
            ]
        # Code-point order on every database (ORDER BY follows the database's collation, which
        # is linguistic on a typical PostgreSQL server and byte order on SQLite).
        return sorted(rows, key=lambda r: r["name"])

    # -- images and faces ------------------------------------------------------
    def known_sha256(self, digests: Sequence[str]) -> dict[str, str]:
        """Map each already-stored digest to the name of the subject that owns it."""
        out: dict[str, str] = {}
        digests = list(digests)
        with self.session() as s:
            for i in range(0, len(digests), 500):
                chunk = digests[i:i + 500]
                q = select(Image.sha256, Subject.name).join(Subject).where(Image.sha256.in_(chunk))
                out.update({d: n for d, n in s.execute(q)})
        return out

    def unindexed_faces(self, model: str) -> list[tuple[int, np.ndarray, int, str]]:
        """(face id, embedding, subject id, subject name) of faces not yet in the index."""
        with self.session() as s:
            q = (select(Face.id, Face.embedding, Face.subject_id, Subject.name).join(Subject)
                 .where(Face.model == model, Face.indexed.is_(False)))
            return [(fid, np.frombuffer(emb, dtype=np.float32), sid, name) for fid, emb, sid, name in s.execute(q)]

    def mark_indexed(self, face_ids: Sequence[int]) -> None:
        ids = list(face_ids)
        with self.session() as s:
            for i in range(0, len(ids), 500):
                s.execute(update(Face).where(Face.id.in_(ids[i:i + 500])).values(indexed=True))

    def hits(self, face_ids: Sequence[int]) -> dict[int, FaceHit]:
        ids = list(face_ids)
        out: dict[int, FaceHit] = {}
        with self.session() as s:
            for i in range(0, len(ids), 500):
                q = (select(Face.id, Face.subject_id, Subject.name, Image.path, Image.id, Face.indexed, Face.model)
                     .join(Subject, Subject.id == Face.subject_id).join(Image, Image.id == Face.image_id)
                     .where(Face.id.in_(ids[i:i + 500])))
                for fid, sid, name, path, iid, indexed, model in s.execute(q):
                    out[fid] = FaceHit(fid, sid, name, path, iid, bool(indexed), model)
        return out

    def embeddings(self, model: str, subject_id: int | None = None, indexed_only: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(face ids, float32 matrix) of a pack's faces, optionally of one subject."""
        with self.session() as s:
            q = select(Face.id, Face.embedding).where(Face.model == model).order_by(Face.id)
            if indexed_only:
                q = q.where(Face.indexed.is_(True))
            if subject_id is not None:
                q = q.where(Face.subject_id == subject_id)
            rows = s.execute(q).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        return ids, mat

    def face_ids(self, model: str) -> set[int]:
        with self.session() as s:
            return set(s.scalars(select(Face.id).where(Face.model == model, Face.indexed.is_(True))))

    def models_in_use(self) -> dict[str, int]:
        with self.session() as s:
            return {m: int(n) for m, n in s.execute(select(Face.model, func.count(Face.id)).group_by(Face.model))}

    # -- deletion --------------------------------------------------------------
    def delete_subject(self, name: str) -> dict[str, list[int]]:
        """Remove a subject and everything of it; journal its face ids per pack for the index."""
        with self.session() as s:
            sub = self.subject(s, name)
            rows = s.execute(select(Face.id, Face.model).where(Face.subject_id == sub.id)).all()
            by_model: dict[str, list[int]] = {}
            for fid, model in rows:
                by_model.setdefault(model, []).append(fid)
                s.add(PendingDelete(face_id=fid, model=model))
            s.execute(delete(Face).where(Face.subject_id == sub.id))
            s.execute(delete(Image).where(Image.subject_id == sub.id))
            s.execute(delete(Failure).where(Failure.subject_name == name))
            s.delete(sub)
        return by_model

    def pending_deletes(self) -> dict[str, list[int]]:
        with self.session() as s:
            out: dict[str, list[int]] = {}
            for fid, model in s.execute(select(PendingDelete.face_id, PendingDelete.model)):
                out.setdefault(model, []).append(fid)
            return out

    def clear_pending_deletes(self, face_ids: Sequence[int]) -> None:
        ids = list(face_ids)
        with self.session() as s:
            for i in range(0, len(ids), 500):
                s.execute(delete(PendingDelete).where(PendingDelete.face_id.in_(ids[i:i + 500])))

    # -- failures --------------------------------------------------------------
    def failures(self, subject: str | None = None, reason: str | None = None) -> list[Failure]:
        with self.session() as s:
            q = select(Failure).order_by(Failure.id)
            if subject:
                q = q.where(Failure.subject_name == subject)
            if reason:
                q = q.where(Failure.reason == reason)
            return list(s.scalars(q))

    def compact(self) -> None:
        """Rewrite the SQLite file so no freed page keeps old bytes (VACUUM); on PostgreSQL,
        VACUUM FULL writes every catalog table to new files without the deleted rows."""
        if self.engine.dialect.name == "postgresql":
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"VACUUM FULL {tables}")
        if self.is_sqlite:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.commit()
            raw = self.engine.raw_connection()
            try:
                raw.isolation_level = None  # type: ignore[attr-defined]
                raw.cursor().execute("VACUUM")
            finally:
                raw.close()
