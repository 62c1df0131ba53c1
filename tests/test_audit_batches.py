"""The audit trail's batched entries (``Gatekeeper``: searches are written in batches, by a timer
or at ``flush``): a flush waits for a batch the timer is writing, so that ``FaceDB.close`` never
disposes of the catalog under a write still in flight (its connection was then left open until
garbage collection, a ``ResourceWarning`` on PostgreSQL)."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from facedb.api import FaceDB
from facedb.operations import gatekeeper


def test_a_flush_returns_only_once_the_timers_batch_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gatekeeper, "FLUSH_EVERY_S", 0.01)
    db = FaceDB(home=tmp_path / "home", workers=1)
    try:
        real = db.gate.catalog.add_audits
        started, written = threading.Event(), threading.Event()

        def slow(rows: list[dict[str, Any]]) -> None:
            started.set()
            time.sleep(0.3)
            real(rows)
            written.set()

        monkeypatch.setattr(db.gate.catalog, "add_audits", slow)
        db.gate.record("search", images=1, faces=1, detail="named 0 of 1 face")
        assert started.wait(10)  # the timer's thread is writing the batch...
        db.gate.flush()  # ...and a flush (FaceDB.close makes one) waits for it
        assert written.is_set()
        monkeypatch.setattr(db.gate.catalog, "add_audits", real)
        assert [e.action for e in db.audit()] == ["search"]
    finally:
        db.close()
