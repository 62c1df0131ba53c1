"""The active model pack and its contract with a database: vectors are only comparable when
the pack's name, dimension and weights fingerprint match what the database recorded."""
from __future__ import annotations

import threading
from pathlib import Path

from ..catalog.database import Catalog
from ..errors import IndexCorruptError, ModelError
from .engines import FaceEngine, PackInfo, load_engine


class ActivePack:
    """The pack a ``FaceDB`` searches and enrolls with; its engine loads on first use."""

    def __init__(self, catalog: Catalog, name: str, models_dir: Path | None, threshold: float | None = None) -> None:
        self.catalog = catalog
        self.name = name
        self.models_dir = models_dir
        self._threshold_override = threshold
        self._engine: FaceEngine | None = None
        self._load_lock = threading.Lock()

    @property
    def engine(self) -> FaceEngine:
        """The loaded engine (not thread-safe itself: analyse through ``facedb.analysis.pipeline``)."""
        if self._engine is None:
            with self._load_lock:
                if self._engine is None:
                    self._engine = load_engine(self.name, self.models_dir)
        return self._engine

    @property
    def info(self) -> PackInfo:
        return self.engine.info

    @property
    def threshold(self) -> float:
        """The match threshold in force: the constructor's, else the pack's calibrated default."""
        return self._threshold_override if self._threshold_override is not None else self.info.threshold

    def contract(self, register: bool = False) -> PackInfo:
        """The loaded pack's contract, refusing a database built with other weights.

        ``register`` records it when the database has none yet (before the first enrollment)."""
        info = self.info
        rec, reindexing = self.catalog.pack_state(info.name)
        if rec is None:
            if register:
                self.catalog.record_pack(info)
            return info
        if rec.fingerprint != info.fingerprint or rec.dim != info.dim:
            raise ModelError(
                f"this database's {info.name!r} faces were embedded with other model weights "
                f"(fingerprint {rec.fingerprint[:12]}…, dim {rec.dim}) than the ones loaded now "
                f"({info.fingerprint[:12]}…, dim {info.dim}); their vectors are not comparable. "
                "Run `facedb reindex` to re-embed the stored images with the loaded weights."
            )
        if reindexing:
            raise IndexCorruptError(
                f"a reindex of pack {info.name!r} was interrupted; run `facedb reindex` again to finish it"
            )
        return info
