"""Copy a database to other stores: an embedded home to PostgreSQL + a Chroma server, or back.

The catalog is the system of record, so a migration copies its rows (subjects, images, faces with
their embeddings, failures, settings, API keys, audit trail; ids kept) into the target catalog,
then builds the target index from the copied embeddings, and verifies the result with ``check``.
The source is not changed, and no write reaches it meanwhile (it is held exclusively).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, text

from ..catalog.models import Base, PendingDelete
from ..contract.models import CheckReport, Result
from ..errors import FacedbError

#: Rows per INSERT.
COPY_CHUNK = 2000

#: Tables a new database fills on its first open (settings, change counters): the copy replaces them.
FIRST_OPEN_TABLES = frozenset({"settings", "counters", "collections"})


@dataclass(kw_only=True)
class MigrateReport(Result):
    """What was copied where, how long it took, and the target's check."""

    source_catalog: str
    target_catalog: str
    target_index: str
    rows: dict[str, int] = field(default_factory=dict)
    indexed_faces: int = 0
    seconds: float = 0.0
    check: CheckReport | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["check"] = self.check.to_dict() if self.check else None
        return d


def migrate(source: Any, target: Any) -> MigrateReport:
    """Copy ``source`` (a ``FaceDB``) into ``target`` (a ``FaceDB`` on empty stores)."""
    t0 = time.perf_counter()
    src_cat, dst_cat = source.catalog, target.catalog
    if src_cat.safe_url == dst_cat.safe_url:
        raise FacedbError("the target catalog is the source catalog")
    with dst_cat.session() as s:
        if s.scalar(select(func.count()).select_from(Base.metadata.tables["faces"])) or \
                s.scalar(select(func.count()).select_from(Base.metadata.tables["subjects"])):
            raise FacedbError(f"the target catalog {dst_cat.safe_url} is not empty: migrate into a new database")
    report = MigrateReport(source_catalog=src_cat.safe_url, target_catalog=dst_cat.safe_url,
                           target_index=target.settings.chroma_url or str(target.settings.chroma_path))
    with source.store.exclusive() as _index:  # journal replayed; nothing else writes meanwhile
        with src_cat.engine.connect() as src, dst_cat.engine.begin() as dst:
            for table in Base.metadata.sorted_tables:
                if table.name == PendingDelete.__tablename__:
                    continue  # empty after the replay
                if table.name in FIRST_OPEN_TABLES:
                    dst.execute(table.delete())  # the target's own first-open rows give way
                n = 0
                rows = src.execute(select(table)).mappings()
                while chunk := rows.fetchmany(COPY_CHUNK):
                    batch = [dict(r) for r in chunk]
                    if table.name == "faces":
                        for r in batch:
                            r["indexed"] = False
                    dst.execute(table.insert(), batch)
                    n += len(batch)
                report.rows[table.name] = n
            if not dst_cat.is_sqlite:
                for table in Base.metadata.sorted_tables:
                    if "id" in table.c and table.c.id.autoincrement and table.name != PendingDelete.__tablename__:
                        dst.execute(text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                         f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"))
                # Statistics for the planner: without them, a query by subject right after a bulk copy
                # scanned every face through the (model, indexed) index (86 ms per subject at 100k faces).
                dst.execute(text("ANALYZE"))
    from ..store.journal import Journal
    from .maintenance import collection_catalogs

    with target.store.exclusive(recover=False) as index:
        for each in collection_catalogs(dst_cat):  # every collection's index, under its own names
            for model in each.models_in_use():
                rec = each.index_pack(model)
                if rec is not None:
                    Journal(each).add_from_catalog(index, rec)
                    report.indexed_faces += each.count_indexed(model)
        target.store.mark_recovered()
    report.check = target.check()
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
