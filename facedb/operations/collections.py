"""Collections: several galleries in one database, each with its own pack, threshold, subjects
and index collections. ``FaceDB`` binds to one; ``FaceDB.collection(name)`` is a view bound to
another that shares the stores, the gatekeeper and (for the same pack) the analysis workers."""
from __future__ import annotations

import re
from pathlib import Path

from ..analysis.engines import FaceEngine, PackInfo
from ..analysis.packs import ActivePack
from ..catalog.core import DEFAULT_COLLECTION, in_space
from ..catalog.database import Catalog
from ..errors import FacedbError

#: Collection names go in URL paths (``/v1/collections/{name}/...``): a safe alphabet only.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def validate_collection_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise FacedbError(f"collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit")
    return name


def validate_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    value = float(threshold)
    if not 0.0 < value <= 2.0:
        raise FacedbError(f"threshold {threshold!r}: a cosine distance between 0 (exclusive) and 2")
    return value


class CollectionPack(ActivePack):
    """The active pack as one collection uses it: its contract names the collection's index
    collections (``PackInfo.space``), its threshold is the collection's, and a pack already
    loaded for another collection (``shared``) lends its engine instead of loading it again."""

    def __init__(self, catalog: Catalog, name: str, models_dir: Path | None, threshold: float | None = None,
                 shared: ActivePack | None = None) -> None:
        super().__init__(catalog, name, models_dir, threshold)
        self._shared = shared if shared is not None and shared.name == name else None

    @property
    def engine(self) -> FaceEngine:
        return self._shared.engine if self._shared is not None else super().engine

    @property
    def info(self) -> PackInfo:
        return in_space(self.engine.info, self.catalog.space)


__all__ = ["DEFAULT_COLLECTION", "CollectionPack", "validate_collection_name", "validate_threshold"]
