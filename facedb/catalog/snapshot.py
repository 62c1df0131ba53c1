"""The catalog's SQL for backup and restore: one consistent read of every table, and the bulk
insert of a snapshot's rows into an empty catalog.

Consistency without stopping the service:

- **SQLite** (no WAL: a long read transaction would hold the writers of the server that owns the
  home, and past the 30 s busy timeout fail them): the file is first copied page by page into an
  in-memory database with SQLite's online backup API (one step: the live file is read-locked
  only for the page copy, about a second per GB), and every table is then read from that copy.
  Nothing of it touches the disk, so a killed backup leaves no stray copy of the faces behind.
- **PostgreSQL**: one ``REPEATABLE READ`` read-only transaction: every table is read from the
  same snapshot while writers carry on.

What a snapshot leaves out (see ``docs/storage.md``): the delete journal (``pending_deletes``:
face ids whose vectors the index may still hold; the restored index is built from SQL), the
template markers of deleted subjects (a subject id and no vector), and the settings that only
describe the index (``rebuilding:*`` flags, the index generation).
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Table, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from ..errors import AlreadyExistsError, FacedbError
from .core import GENERATION_KEY, REBUILDING, CatalogCore
from .models import Base, Setting, Subject, SubjectTemplate

#: Rows per fetch and per INSERT.
CHUNK = 2000
#: Not in a snapshot: the delete journal (the index is rebuilt from SQL on restore).
SKIPPED_TABLES = frozenset({"pending_deletes"})
#: Tables a new database fills on its first open: the snapshot's rows replace them.
FIRST_OPEN_TABLES = frozenset({"settings", "counters", "collections"})
#: Tables whose rows make a catalog "not empty" for a restore.
CONTENT_TABLES = ("subjects", "images", "faces", "failures", "api_keys", "audit", "subject_templates",
                  "pending_deletes")


def snapshot_tables() -> list[Table]:
    """The tables a snapshot holds, parents first (the order their rows are inserted back)."""
    return [t for t in Base.metadata.sorted_tables if t.name not in SKIPPED_TABLES]


def binary_columns(table: Table) -> list[str]:
    """The columns holding raw bytes (embeddings, template vectors): stored beside the rows."""
    from sqlalchemy import LargeBinary

    return [c.name for c in table.columns if isinstance(c.type, LargeBinary)]


@contextmanager
def consistent_read(catalog: CatalogCore) -> Iterator[Connection]:
    """A connection that sees the whole catalog as of one instant (see the module's docstring)."""
    dialect = catalog.engine.dialect.name
    if dialect == "postgresql":
        with catalog.engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            with conn.begin():
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                yield conn
        return
    if dialect != "sqlite":
        raise FacedbError(f"backup supports SQLite and PostgreSQL catalogs, not {dialect}")
    path = make_url(catalog.url).database
    if not path or path == ":memory:":
        raise FacedbError(f"the catalog {catalog.safe_url} is not a file: nothing to back up")
    memory = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        source = sqlite3.connect(path, timeout=30)
        try:
            source.backup(memory)  # one step: a read lock on the file for the page copy only
        except sqlite3.OperationalError as exc:
            raise FacedbError(f"cannot read the catalog {catalog.safe_url}: {exc}") from None
        finally:
            source.close()
        engine = create_engine("sqlite://", creator=lambda: memory, poolclass=StaticPool)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()
    finally:
        memory.close()


def _where(table: Table) -> Any:
    """The rows of ``table`` a snapshot keeps (None: all)."""
    if table.name == "subject_templates":  # no marker of a deleted subject (its id and no vector)
        return (SubjectTemplate.n_faces > 0) & SubjectTemplate.subject_id.in_(select(Subject.id))
    if table.name == "settings":  # the index's own state: the restored index is new
        return (Setting.key != GENERATION_KEY) & ~Setting.key.like(REBUILDING + ":%")
    return None


def _ordered(table: Table, columns: Sequence[Any]) -> Any:
    q = select(*columns)
    where = _where(table)
    if where is not None:
        q = q.where(where)
    return q.order_by(*table.primary_key.columns)


def read_rows(conn: Connection, table: Table) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``table`` (without its binary columns), in primary-key order, in chunks."""
    skip = set(binary_columns(table))
    cols = [c for c in table.columns if c.name not in skip]
    result = conn.execute(_ordered(table, cols)).mappings()
    while chunk := result.fetchmany(CHUNK):
        yield [dict(r) for r in chunk]


def read_binary(conn: Connection, table: Table, column: str) -> Iterator[list[bytes]]:
    """One binary column of ``table``, in the same order as ``read_rows``, in chunks."""
    result = conn.execute(_ordered(table, [table.c[column]]))
    while chunk := result.fetchmany(CHUNK):
        yield [bytes(r[0]) for r in chunk]


def content_counts(catalog: CatalogCore) -> dict[str, int]:
    """Rows of each content table, and the collections other than ``default``: all 0 in an empty
    catalog (what a fresh home or database holds after its first open)."""
    tables = Base.metadata.tables
    with catalog.session() as s:
        out = {name: int(s.scalar(select(func.count()).select_from(tables[name])) or 0) for name in CONTENT_TABLES}
        out["collections"] = int(s.scalar(select(func.count()).select_from(tables["collections"])
                                          .where(tables["collections"].c.name != "default")) or 0)
    return out


def refuse_non_empty(catalog: CatalogCore) -> None:
    """Raise unless the catalog is empty (a restore never merges into existing data)."""
    held = {k: v for k, v in content_counts(catalog).items() if v}
    if held:
        what = ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in held.items())
        raise AlreadyExistsError(f"the target catalog {catalog.safe_url} is not empty ({what}): restore into a new "
                                 "home (--home) or an empty database (--db-url)")


def insert_rows(catalog: CatalogCore, tables: Iterator[tuple[Table, Iterator[list[dict[str, Any]]]]]) -> dict[str, int]:
    """Insert every table's rows (parents first) in one transaction; rows inserted per table.

    The target's first-open rows (settings, the ``default`` collection, counters) give way to the
    snapshot's. On PostgreSQL the id sequences then continue after the restored ids, and the
    planner's statistics are refreshed (a bulk load leaves them empty)."""
    counts: dict[str, int] = {}
    with catalog.engine.begin() as conn:
        for table, chunks in tables:
            if table.name in FIRST_OPEN_TABLES:
                conn.execute(table.delete())
            n = 0
            for chunk in chunks:
                if chunk:
                    conn.execute(table.insert(), chunk)
                    n += len(chunk)
            counts[table.name] = n
        if not catalog.is_sqlite:
            for table in Base.metadata.sorted_tables:
                if "id" in table.c and table.c.id.autoincrement and table.name not in SKIPPED_TABLES:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                      f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))
            conn.execute(text("ANALYZE"))
    return counts
