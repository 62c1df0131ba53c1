"""``Catalog``: the SQL system of record, and the only place facedb writes SQL.

Its queries are grouped by subject: ``subjects.py`` (subjects, failures), ``faces.py`` (images,
faces, the delete journal), ``keys.py`` (API keys, audit trail); ``core.py`` holds the
connection, the schema upgrade and the settings they share.
"""
from __future__ import annotations

from .core import MIGRATIONS_DIR, SCHEMA_HEAD, CatalogCore
from .faces import FaceHit, FaceQueries, NewFace, StoredItem
from .keys import KeyQueries

__all__ = ["Catalog", "CatalogCore", "FaceHit", "MIGRATIONS_DIR", "NewFace", "SCHEMA_HEAD", "StoredItem"]


class Catalog(FaceQueries, KeyQueries):
    """Subjects, images, faces with embeddings, failures, the delete journal, API keys and the
    audit trail."""
