"""What ``facedb backup`` and ``facedb restore`` return (light: the thin client imports it when it
backs up or restores)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .models import CheckReport, FailedItem, Result


@dataclass(kw_only=True)
class BackupReport(Result):
    """A snapshot written by ``backup``: where, how big, what it holds (see docs/storage.md)."""

    path: str
    bytes: int
    format_version: int
    facedb_version: str
    #: the catalog's Alembic revision (a restore needs the same)
    schema_revision: str
    created_at: str
    faces_by_pack: dict[str, int] = field(default_factory=dict)
    #: rows per table in the snapshot
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    #: whether the snapshot carries the embedded index's files (a restore then copies them
    #: instead of rebuilding the index), and why not when it does not
    index_shipped: bool = False
    index_note: str | None = None


@dataclass(kw_only=True)
class RestoreReport(Result):
    """A snapshot restored into an empty database: rows, the index built from them, the check."""

    path: str
    catalog: str
    index: str
    rows: dict[str, int] = field(default_factory=dict)
    indexed_faces: int = 0
    #: faces re-embedded from their photos (``reindex_from_images``), and the photos that could not be
    reindexed: int = 0
    failed: list[FailedItem] = field(default_factory=list)
    rows_seconds: float = 0.0
    index_seconds: float = 0.0
    #: how the index was restored: "shipped" (the snapshot's index files, checked against the
    #: catalog) or "rebuilt" (from the restored embeddings); ``index_note`` says why it was rebuilt
    index_path: str = "rebuilt"
    index_note: str | None = None
    seconds: float = 0.0
    #: the ``default`` collection's check; ``clean``: every collection checked clean
    check: CheckReport | None = None
    clean: bool = False
