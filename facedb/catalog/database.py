"""``Catalog``: the SQL system of record, and the only place facedb writes SQL.

Its queries are grouped by subject: ``subjects.py`` (subjects, failures), ``faces.py`` (images,
faces, the delete journal), ``keys.py`` (API keys, audit trail); ``core.py`` holds the
connection, the schema upgrade and the settings they share.
"""
from __future__ import annotations

from .collections import CollectionQueries
from .core import DEFAULT_COLLECTION, MIGRATIONS_DIR, SCHEMA_HEAD, CatalogCore
from .discover_runs import DiscoverRunQueries
from .face_edits import FaceEditQueries
from .faces import FaceHit, FaceQueries, NewFace, StoredItem
from .keys import KeyQueries
from .review import ReviewQueries

__all__ = ["Catalog", "CatalogCore", "DEFAULT_COLLECTION", "FaceHit", "MIGRATIONS_DIR", "NewFace", "SCHEMA_HEAD", "StoredItem"]


class Catalog(FaceQueries, KeyQueries, CollectionQueries, ReviewQueries, DiscoverRunQueries, FaceEditQueries):
    """Subjects, images, faces with embeddings, failures, the delete journal, API keys and the
    audit trail. Subjects and everything under them belong to a collection: their queries run
    on a catalog bound to one (``scoped``); settings, keys, the audit trail and the collections
    themselves are the database's."""
