"""A short Chroma answer (fewer neighbours than asked while the collection holds enough) is an
index fault: ``ChromaIndex.query`` retries it on a fresh client, then reports corruption.

The crash tests met such answers from Chroma 1.5.9 (rarely, on a busy machine); here the fault
is injected by dropping the last neighbour of the real Chroma answer, so the tests are
deterministic. Everything else (collection, vectors, the fresh client) is real.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facedb.analysis.engines.base import PackInfo
from facedb.errors import IndexCorruptError
from facedb.index.chroma_index import ChromaIndex

INFO = PackInfo(name="sface", dim=16, threshold=0.5, fingerprint="f" * 64, description="test")


@pytest.fixture
def index(tmp_path: Path) -> Any:
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(12, INFO.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    idx = ChromaIndex(tmp_path / "chroma")
    idx.add(INFO, list(range(1, 13)), vecs, [1] * 12)
    try:
        yield idx, vecs
    finally:
        idx.close()


def _drop_last(real: Any, times: int) -> tuple[Any, list[int]]:
    calls: list[int] = []

    def query(col: Any, vectors: np.ndarray, n: int) -> dict[str, Any]:
        res = real(col, vectors, n)
        calls.append(n)
        if len(calls) <= times:
            res = {key: [row[:-1] for row in rows] for key, rows in res.items() if key in ("ids", "distances")}
        return res

    return query, calls


def test_full_answer_is_returned_untouched(index: Any) -> None:
    idx, vecs = index
    rows = idx.query(INFO, vecs[:3], 12)
    assert [len(r) for r in rows] == [12, 12, 12]
    assert [r[0].face_id for r in rows] == [1, 2, 3]
    assert idx.retries == 0


def test_short_answer_is_retried_on_a_fresh_client(index: Any, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    idx, vecs = index
    fake, calls = _drop_last(ChromaIndex._query, times=1)
    monkeypatch.setattr(ChromaIndex, "_query", staticmethod(fake))
    old_client = idx._client
    rows = idx.query(INFO, vecs[:2], 12)
    assert calls == [12, 12]
    assert idx.retries == 1
    assert idx._client is not old_client
    assert [len(r) for r in rows] == [12, 12]
    assert sorted(nb.face_id for nb in rows[0]) == list(range(1, 13))
    assert "fewer than 12 neighbours" in caplog.text


def test_answer_short_twice_is_reported_as_corruption(index: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    idx, vecs = index
    fake, calls = _drop_last(ChromaIndex._query, times=2)
    monkeypatch.setattr(ChromaIndex, "_query", staticmethod(fake))
    with pytest.raises(IndexCorruptError, match="check --repair"):
        idx.query(INFO, vecs[:1], 5)
    assert calls == [5, 5]


def test_k_larger_than_the_collection_is_not_short(index: Any) -> None:
    idx, vecs = index
    rows = idx.query(INFO, vecs[:1], 50)
    assert len(rows[0]) == 12 and idx.retries == 0


def test_a_full_answer_needs_no_count(index: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a shared (server) index nothing is cached, so ``count`` is a round trip: a query that
    got its k neighbours does not ask for it; a short one does, to tell a fault from a small
    collection."""
    idx, vecs = index
    idx.shared = True  # count() is then never cached, as on a Chroma server
    counted: list[int] = []
    real_count = ChromaIndex.count

    def count(self: ChromaIndex, info: PackInfo) -> int:
        n: int = real_count(self, info)
        counted.append(n)
        return n

    monkeypatch.setattr(ChromaIndex, "count", count)
    assert [len(r) for r in idx.query(INFO, vecs[:2], 5)] == [5, 5] and counted == []
    assert [len(r) for r in idx.query(INFO, vecs[:1], 50)] == [12] and counted == [12]
    assert idx.retries == 0
