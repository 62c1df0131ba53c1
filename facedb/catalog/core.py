"""The catalog's core: the connection (any SQLAlchemy URL), migrations, settings and pack records.

The query groups (``subjects.py``, ``faces.py``, ``access.py``) build on ``CatalogCore``; every
method runs in its own transaction unless it takes a ``Session``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

from ..engine.base import PackInfo
from ..errors import FacedbError
from .models import Setting
from .. import trace

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: The newest migration's revision id (a test checks it equals Alembic's head).
SCHEMA_HEAD = "0002"

#: Setting keys. ``pack:<name>`` holds a pack's contract (dim, fingerprint...); the two flags
#: journal a long operation so that the next process finishes it.
DEFAULT_PACK_KEY = "default_pack"
PACK_PREFIX = "pack:"
REBUILDING = "rebuilding"
REINDEXING = "reindexing"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    # Deleted rows are overwritten with zeros: erased embeddings do not linger in free pages.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class CatalogCore:
    """Connection, sessions, schema and settings; the query groups build on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"timeout": 30, "check_same_thread": False} if self.is_sqlite else {}
        self.engine: Engine = create_engine(url, connect_args=connect_args)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- lifecycle -------------------------------------------------------------
    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None for a new database)."""
        try:
            with self.engine.connect() as conn:
                rev: str | None = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                return rev
        except (OperationalError, ProgrammingError):
            return None

    @trace.traced("sql.upgrade")
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

    def compact(self) -> None:
        """Rewrite the SQLite file so no freed page keeps old bytes (VACUUM)."""
        if not self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.commit()
        raw = self.engine.raw_connection()
        try:
            raw.isolation_level = None  # type: ignore[attr-defined]
            raw.cursor().execute("VACUUM")
        finally:
            raw.close()

    # -- settings --------------------------------------------------------------
    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Setting, key)
            return row.value if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.session() as s:
            s.merge(Setting(key=key, value=value))

    # -- pack contracts and journal flags ----------------------------------------
    def pack_record(self, name: str) -> PackInfo | None:
        """The contract of pack ``name`` as this database first recorded it."""
        raw = self.get_setting(PACK_PREFIX + name)
        if raw is None:
            return None
        d = json.loads(raw)
        return PackInfo(name=name, dim=int(d["dim"]), threshold=float(d.get("threshold", 0.0)),
                        fingerprint=d["fingerprint"], description=d.get("description", ""))

    def record_pack(self, info: PackInfo) -> None:
        self.set_setting(PACK_PREFIX + info.name, json.dumps(
            {"dim": info.dim, "fingerprint": info.fingerprint, "threshold": info.threshold,
             "description": info.description}))

    def recorded_packs(self) -> list[str]:
        """Every pack this database ever recorded, even one whose last face was deleted."""
        with self.session() as s:
            keys = s.scalars(select(Setting.key).where(Setting.key.like(PACK_PREFIX + "%"))).all()
        return sorted(k[len(PACK_PREFIX):] for k in keys)

    def flag(self, kind: str, pack: str) -> bool:
        """Whether a journaled ``rebuilding`` / ``reindexing`` of ``pack`` is unfinished."""
        return bool(self.get_setting(f"{kind}:{pack}"))

    def set_flag(self, kind: str, pack: str, on: bool) -> None:
        self.set_setting(f"{kind}:{pack}", "1" if on else "")
