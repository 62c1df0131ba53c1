"""A rebuild's bulk load into Chroma (``ChromaIndex.load``), on a real ``chroma run`` server.

A restore into a Chroma server rebuilds the index from the catalog, now with ``load``: ``add``
into the new collection instead of ``upsert`` (docs/benchmarks/chroma-load.md measured the write
paths). These tests hold what that must keep: the restored server answers like the source, with
facedb's HNSW settings, the same ids and metadata, no stale vector under an id a failed drop left,
and a later delete still leaves no byte of the deleted vectors in the server's folder.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dbtools import run_json
from facephotos import make_face_variants
from test_erasure import files_containing, scan_home, subject_vectors, survivors_found

from facedb.analysis.engines.base import PackInfo
from facedb.index.chroma_index import HEADER, HNSW, ChromaIndex, _hnsw_of

VICTIM = "Victim Q7ZX-load"
INFO = PackInfo(name="p", dim=128, threshold=0.5, fingerprint="f" * 64, description="")


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("faces"))


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[Any]:
    from facedb.evaluation.servers import ChromaServer, chroma_unavailable

    reason = chroma_unavailable()
    if reason:
        pytest.skip(reason)
    srv = ChromaServer(tmp_path / "chroma" / "data").start()
    try:
        yield srv
    finally:
        srv.cleanup()


def _persisted(data: Path) -> list[int]:
    """The faces each HNSW segment of a Chroma folder holds on disk (its header's count)."""
    return [HEADER.unpack((h.parent / "header.bin").read_bytes()[:HEADER.size])[3]
            for h in sorted(data.glob("*/header.bin"))]


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, 128)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_a_restore_into_a_chroma_server_answers_like_the_source_and_still_erases(
        tmp_path: Path, people: dict[str, list[Path]], server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    source, restored, snap = tmp_path / "source", tmp_path / "restored", tmp_path / "s.facedb-backup"
    for name, person in ((VICTIM, "person1"), ("keeper", "person2"), ("third", "person3")):
        assert run_json(source, "enroll", name, *map(str, people[person]), "-q")["enrolled"] == 3
    before = run_json(source, "search", str(people["person2"][1]), "-k", "3")["results"][0]["faces"][0]
    run_json(source, "backup", str(snap))

    monkeypatch.setenv("FACEDB_CHROMA_URL", server.url)
    monkeypatch.setenv("FACEDB_CHROMA_DATA", str(server.path))
    rep = run_json(restored, "restore", str(snap))
    assert rep["index_path"] == "rebuilt" and rep["clean"] is True and rep["indexed_faces"] == 9, rep

    # facedb's create-time HNSW settings (recall is part of the target: never lowered for speed)
    client = server.client()
    (col,) = client.list_collections()
    hnsw = _hnsw_of(col)
    assert {k: hnsw[k] for k in ("space", "max_neighbors", "ef_construction")} == \
        {"space": "cosine", "max_neighbors": HNSW["max_neighbors"], "ef_construction": HNSW["ef_construction"]}
    assert (hnsw["max_neighbors"], hnsw["ef_construction"]) == (32, 200)
    victim = subject_vectors(restored, VICTIM)
    got = col.get(include=["embeddings", "metadatas"])
    assert len(got["ids"]) == 9 and all(set(m) == {"subject_id"} for m in got["metadatas"]), "no names in Chroma"
    stored = np.asarray(got["embeddings"], dtype=np.float32)
    assert all(np.isclose(stored @ v, 1.0, atol=1e-5).any() for v in victim), "the victim's vectors went in"

    after = run_json(restored, "search", str(people["person2"][1]), "-k", "3")["results"][0]["faces"][0]
    assert after["identity"] == before["identity"] == "keeper"
    assert [(m["subject"], m["face_id"], m["distance"]) for m in after["matches"]] == \
        [(m["subject"], m["face_id"], pytest.approx(m["distance"], abs=1e-5)) for m in before["matches"]]

    # a delete after the load: the erasure pads to this collection's threshold, not the default
    run_json(restored, "delete", VICTIM, "--yes")
    assert scan_home(server.path, victim) == {}, "deleted embeddings still in the Chroma server's folder"
    assert files_containing(server.path, VICTIM.encode()) == []
    survivors_found(restored, people["person2"][1], 6)


def test_load_into_a_server_spans_batches_and_keeps_ids_and_metadata(server: Any) -> None:
    vecs = _unit(11_000, seed=5)  # three of Chroma's 5,000-record calls
    ids = list(range(1, 11_001))
    index = ChromaIndex(url=server.url, server_data=server.path)
    try:
        index.load(INFO, ids, list(vecs), [i // 5 + 1 for i in ids])  # one array a face, as a rebuild gives
        assert index.count(INFO) == 11_000 and index.ids(INFO) == set(ids)
        assert _persisted(server.path) == [11_000]  # past Chroma's sync threshold: on disk, whole
        probe = np.arange(0, 11_000, 500)
        hits = index.query(INFO, vecs[probe], 1)
        assert [h[0].face_id for h in hits] == [ids[p] for p in probe]
        col = index.collection(INFO, create=False)
        got = col.get(ids=["1", "11000"], include=["metadatas"])
        assert dict(zip(got["ids"], got["metadatas"])) == {"1": {"subject_id": 1}, "11000": {"subject_id": 2201}}
    finally:
        index.close()


def test_load_over_a_collection_that_was_not_dropped_replaces_stale_vectors(server: Any) -> None:
    """``add`` ignores an id Chroma already holds: a load into a collection that still holds
    faces (its drop failed) goes through the missing-only path, so no stale vector survives."""
    vecs = _unit(40, seed=6)
    index = ChromaIndex(url=server.url)
    try:
        index.add(INFO, [1, 2, 3], vecs[30:33], [1, 1, 1])  # stale vectors under ids 1-3
        index.load(INFO, list(range(1, 31)), vecs[:30], [1] * 30)
        assert index.count(INFO) == 30
        assert [h[0].face_id for h in index.query(INFO, vecs[:3], 1)] == [1, 2, 3]
        assert index.query(INFO, vecs[30:31], 1)[0][0].distance > 0.2  # the stale vector is gone
    finally:
        index.close()


def test_an_embedded_load(tmp_path: Path) -> None:
    vecs = _unit(1_500, seed=7)
    index = ChromaIndex(tmp_path / "index")
    try:
        index.load(INFO, list(range(1, 1_501)), vecs, [1] * 1_500)
        assert index.count(INFO) == 1_500
        assert [h[0].face_id for h in index.query(INFO, vecs[[0, 749, 1_499]], 1)] == [1, 750, 1_500]
    finally:
        index.close()
