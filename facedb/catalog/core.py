"""The catalog's core: the connection (any SQLAlchemy URL), migrations, settings and pack records.

The query groups (``subjects.py``, ``faces.py``, ``keys.py``) build on ``CatalogCore``; every
method runs in its own transaction unless it takes a ``Session``.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import bindparam, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from .. import trace
from ..analysis.engines.base import PackInfo
from ..errors import DatabaseBusyError, FacedbError, UnavailableError
from .memo import CommitWatch, ReadMemo
from .models import Setting

T = TypeVar("T")
C = TypeVar("C", bound="CatalogCore")
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
#: The newest migration's revision id (a test checks it equals Alembic's head).
SCHEMA_HEAD = "0006"

#: Setting keys. ``pack:<name>`` holds a pack's contract (dim, fingerprint...); the two flags
#: journal a long operation so that the next process finishes it.
DEFAULT_PACK_KEY = "default_pack"
PACK_PREFIX = "pack:"
REBUILDING = "rebuilding"
REINDEXING = "reindexing"
GENERATION_KEY = "index_generation"
#: The collection every database has (an existing gallery became it in migration 0005).
DEFAULT_COLLECTION = "default"


def index_space(collection_id: int, name: str | None) -> str:
    """The prefix of a collection's index collections: none for ``default`` (its Chroma
    collections keep the names they had before collections existed), ``c<id>`` for the others
    (by id: a name may be reused after a delete, an id never is)."""
    return "" if name == DEFAULT_COLLECTION else f"c{collection_id}"


@dataclasses.dataclass(frozen=True)
class SpacedPack(PackInfo):
    """A pack's contract as one collection's index uses it: ``space`` names its Chroma collection."""

    space: str = ""


def in_space(info: PackInfo, space: str) -> PackInfo:
    """``info`` bound to an index space (``ChromaIndex`` names the collection from it)."""
    fields = {f.name: getattr(info, f.name) for f in dataclasses.fields(PackInfo)}
    return SpacedPack(**fields, space=space)


#: Two settings by key (``pack_state``): built once, bound per call. Two plain parameters, not an
#: expanding ``IN``, whose SQL would be rendered again at every call (a third of this read's CPU).
SETTINGS_READ = select(Setting.key, Setting.value).where(
    (Setting.key == bindparam("key1")) | (Setting.key == bindparam("key2")))


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
        extra: dict[str, Any] = {} if self.is_sqlite else {
            # a server restarted meanwhile: test pooled connections before use (recovers by itself)
            "pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
        self.engine: Engine = create_engine(url, connect_args=connect_args, **extra)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        database = self.engine.url.database if self.is_sqlite else None
        #: the hot reads' memo (``read``): a SQLite file only (see memo.py); shared by ``scoped`` views
        self.memo = ReadMemo(CommitWatch(database)) if database and database != ":memory:" else None
        self._cid: int | None = None
        #: the collection this catalog's subject/face queries are limited to (see ``scoped``)
        self.collection: str | None = None
        self.space = ""

    # -- collections -----------------------------------------------------------------
    def scoped(self: C, collection_id: int, name: str) -> C:
        """This catalog (same engine and sessions) with its subject, image, face, template,
        failure and journal queries limited to one collection."""
        view = copy.copy(self)
        view._cid, view.collection, view.space = int(collection_id), name, index_space(collection_id, name)
        return view

    @property
    def cid(self) -> int:
        """The bound collection's id. A catalog opened without ``scoped`` works on ``default``
        (what every database was before collections), looked up on first use."""
        if self._cid is None:
            from .models import Collection

            with self.session() as s:
                found = s.scalar(select(Collection.id).where(Collection.name == DEFAULT_COLLECTION))
            if found is None:
                raise FacedbError(f"the catalog {self.safe_url} has no collection {DEFAULT_COLLECTION!r}; "
                                  "open it with FaceDB once to upgrade it")
            self._cid, self.collection = int(found), DEFAULT_COLLECTION
        return self._cid

    def flag_key(self, kind: str, pack: str) -> str:
        """The setting of a journaled operation on the bound collection's index of ``pack``."""
        return f"{kind}:{pack}" + (f"@{self.space}" if self.space else "")

    def index_pack(self, name: str) -> PackInfo | None:
        """The recorded contract of pack ``name``, bound to this collection's index space."""
        rec = self.pack_record(name)
        return None if rec is None else in_space(rec, self.space)

    # -- lifecycle -------------------------------------------------------------
    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None for a new database)."""
        try:
            with self.engine.connect() as conn:
                rev: str | None = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
                return rev
        except ProgrammingError:  # PostgreSQL: no such table yet
            return None
        except OperationalError as exc:
            if "no such table" in str(exc.orig):  # SQLite
                return None
            raise self.unreachable(exc) from None

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
            with self.engine.connect() as conn:
                if self.is_sqlite:
                    # Rebuilding a parent table (0005) must not cascade into its children: SQLite
                    # applies ON DELETE CASCADE to the DROP of the old copy unless keys are off
                    # (a no-op inside a transaction, so before it begins).
                    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    conn.commit()
                try:
                    with conn.begin():
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, "head")
                finally:
                    if self.is_sqlite:
                        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                        conn.commit()
        except OperationalError as exc:
            raise self.unreachable(exc) from None
        except ProgrammingError as exc:
            raise FacedbError(f"cannot open or upgrade the catalog database {self.safe_url}: {exc.orig}") from None

    #: ANALYZE reads at most this many rows of each index (SQLite's ``analysis_limit``): the
    #: statistics are about the shape of the tables, so a sample keeps it well under a second.
    ANALYSIS_LIMIT = 1000
    #: Faces (by largest id) from which statistics matter, and the growth that makes them stale.
    STATS_MIN_FACES, STATS_GROWTH = 500, 4

    @trace.traced("sql.statistics")
    def refresh_statistics(self, force: bool = False) -> bool:
        """On SQLite, gather the query planner's statistics (``ANALYZE``) when there are none, or
        the faces have grown ``STATS_GROWTH``-fold since; whether it ran.

        Without statistics SQLite takes any equality on an index as selective: to read ten faces
        by id, or one subject's faces, of a collection, it walked the collection's index (all of
        its faces) instead of the primary key or the subject's index. Measured on a 100,000-face
        catalog: 59 ms for the subject-faces read of a search and 8 ms for the ten faces it
        names, 0.16 ms each once analysed (the ANALYZE took 0.05 s); the walk grows with the
        collection. PostgreSQL's autovacuum keeps its own statistics."""
        if not self.is_sqlite:
            return False
        try:
            with self.engine.connect() as conn:
                top = int(conn.exec_driver_sql("SELECT max(id) FROM faces").scalar() or 0)
                if top < self.STATS_MIN_FACES and not force:
                    return False
                has_stats = conn.exec_driver_sql(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='sqlite_stat1'").scalar()
                stat = conn.exec_driver_sql("SELECT stat FROM sqlite_stat1 WHERE tbl='faces' ORDER BY idx LIMIT 1"
                                            ).scalar() if has_stats else None
                rows = int(str(stat).split()[0]) if stat else 0
                if not force and rows and top <= rows * self.STATS_GROWTH:
                    return False
                conn.exec_driver_sql(f"PRAGMA analysis_limit={self.ANALYSIS_LIMIT}")
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        except OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False  # another process writes: the next open does it
            raise self.unreachable(exc) from None
        return True

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        if self.memo is not None:
            self.memo.watch.close()
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction; a database server that cannot be reached is ``UnavailableError``."""
        try:
            with self._sessions() as s, s.begin():
                yield s
        except (OperationalError, InterfaceError) as exc:
            raise self.unreachable(exc) from None

    def read(self, stmt: Executable, params: dict[str, Any]) -> list[Any]:
        """The rows of one read-only statement, built once with bind parameters (see
        ``SETTINGS_READ``), on a plain connection: the few reads every search makes cost a
        fraction of an ORM session each (``scripts/bench/server_cpu.py``). On a SQLite file the
        answer is remembered until the next commit anywhere (``memo.py``); ``stmt`` must then be
        built once (module level), not per call. A database server that cannot be reached is
        ``UnavailableError``, as in ``session``."""
        memo = self.memo
        version = memo.watch.version() if memo is not None else None
        if memo is not None and version is not None:
            key = memo.key(stmt, params)
            hit = memo.get(key, stmt, version)
            if hit is not None:
                return hit
        try:
            with self.engine.connect() as conn:
                rows = list(conn.execute(stmt, params).all())
        except (OperationalError, InterfaceError) as exc:
            raise self.unreachable(exc) from None
        if memo is not None and version is not None:
            memo.put(key, stmt, version, rows)
        return rows

    def unreachable(self, exc: DBAPIError) -> FacedbError:
        """The error a user can act on for a connection-level failure of the catalog."""
        text = str(exc.orig)
        if self.is_sqlite:
            if "locked" in text or "busy" in text:
                return DatabaseBusyError(f"the catalog {self.safe_url} is locked by another process: {text}")
            return FacedbError(f"the catalog {self.safe_url} cannot be used: {text}")
        first = text.strip().splitlines()[0] if text.strip() else type(exc.orig).__name__
        return UnavailableError(f"the catalog database {self.safe_url} cannot be reached ({first}); "
                                "facedb retries on the next request")

    def compact(self) -> None:
        """Rewrite the SQLite file so no freed page keeps old bytes (VACUUM); on PostgreSQL,
        VACUUM FULL writes every catalog table to new files without the deleted rows."""
        if self.engine.dialect.name == "postgresql":
            from .models import Base

            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql(f"VACUUM FULL {tables}")
            return
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
        """Insert or replace, atomically (two processes may record the same pack at once)."""
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        stmt = insert(Setting).values(key=key, value=value)
        with self.session() as s:
            s.execute(stmt.on_conflict_do_update(index_elements=[Setting.key], set_={"value": value}))

    def retrying(self, fn: Callable[[], T], attempts: int = 3) -> T:
        """``fn()`` (one transaction), again when it lost a race with another process on a
        unique row (the same new subject or photo enrolled at once): the next try sees that row."""
        for attempt in range(attempts):
            try:
                return fn()
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # -- pack contracts and journal flags ----------------------------------------
    def pack_record(self, name: str) -> PackInfo | None:
        """The contract of pack ``name`` as this database first recorded it."""
        raw = self.get_setting(PACK_PREFIX + name)
        return None if raw is None else _pack_info(name, raw)

    def pack_state(self, name: str) -> tuple[PackInfo | None, bool]:
        """``(pack_record(name), flag(REINDEXING, name))`` in one query: every search checks
        both, and one transaction costs half the CPU of two."""
        keys = (PACK_PREFIX + name, self.flag_key(REINDEXING, name))
        rows = {k: v for k, v in self.read(SETTINGS_READ, {"key1": keys[0], "key2": keys[1]})}
        raw = rows.get(keys[0])
        return (None if raw is None else _pack_info(name, raw)), bool(rows.get(keys[1]))

    def record_pack(self, info: PackInfo) -> None:
        self.set_setting(PACK_PREFIX + info.name, json.dumps(
            {"dim": info.dim, "fingerprint": info.fingerprint, "threshold": info.threshold,
             "description": info.description}))

    def recorded_packs(self) -> list[str]:
        """Every pack this database ever recorded, even one whose last face was deleted."""
        with self.session() as s:
            keys = s.scalars(select(Setting.key).where(Setting.key.like(PACK_PREFIX + "%"))).all()
        return sorted(k[len(PACK_PREFIX):] for k in keys)

    def index_generation(self) -> str:
        """A counter bumped when a rebuild ends (before its ``rebuilding`` flag is cleared); busy
        while such a flag is set. A search that reads it before and after its query and sees
        the same value did not overlap a rebuild (see ``Store.reading``)."""
        with self.session() as s:
            rows = dict(s.execute(select(Setting.key, Setting.value).where(
                (Setting.key == GENERATION_KEY) | Setting.key.like(REBUILDING + ":%"))).all())
        if any(v for k, v in rows.items() if k != GENERATION_KEY):
            from ..errors import DatabaseBusyError

            raise DatabaseBusyError("the search index is being rebuilt (vacuum, reindex or repair); retry in a moment")
        return rows.get(GENERATION_KEY) or "0"

    def bump_generation(self) -> None:
        with self.session() as s:
            row = s.get(Setting, GENERATION_KEY)
            if row is None:
                s.add(Setting(key=GENERATION_KEY, value="1"))
            else:
                row.value = str(int(row.value) + 1)

    def flag(self, kind: str, pack: str) -> bool:
        """Whether a journaled ``rebuilding`` / ``reindexing`` of ``pack`` (in the bound
        collection's index) is unfinished."""
        return bool(self.get_setting(self.flag_key(kind, pack)))

    def set_flag(self, kind: str, pack: str, on: bool) -> None:
        self.set_setting(self.flag_key(kind, pack), "1" if on else "")


def _pack_info(name: str, raw: str) -> PackInfo:
    """A pack's contract from its setting's JSON."""
    d = json.loads(raw)
    return PackInfo(name=name, dim=int(d["dim"]), threshold=float(d.get("threshold", 0.0)),
                    fingerprint=d["fingerprint"], description=d.get("description", ""))
