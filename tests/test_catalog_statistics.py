"""SQLite's planner statistics, and the count of indexed faces a search checks.

Without ``sqlite_stat1`` SQLite read every face of a collection (its collection index) to find
ten faces by id or one subject's faces: the cost of a search grew with the gallery. Opening a
home with enough faces and no statistics gathers them; so does a restore."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import select

from facedb import FaceDB
from facedb.catalog.models import Face, Image, Subject
from facedb.catalog.templates import FACES_READ
from facedb.evaluation.scale_service import build


def _plans(path: Path) -> dict[str, str]:
    """The query plans of the two per-search reads, as SQLite would run them now."""
    con = sqlite3.connect(path)
    try:
        from sqlalchemy.dialects import sqlite

        hits = (select(Face.id, Subject.name, Image.path).join(Subject, Subject.id == Face.subject_id)
                .join(Image, Image.id == Face.image_id).where(Face.collection_id == 1, Face.id.in_(list(range(5, 16)))))
        faces = FACES_READ[None].params(cid=1, model="sface-flip", ids=list(range(3, 13)))
        out = {}
        for name, stmt in (("hits", hits), ("subject_faces", faces)):
            sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            out[name] = " | ".join(r[3] for r in con.execute("EXPLAIN QUERY PLAN " + sql))
        return out
    finally:
        con.close()


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stats")
    build(root / "home", root / "data", 1500, 128, log=lambda *_: None)
    return root / "home"


def test_opening_a_home_without_statistics_gathers_them(gallery: Path) -> None:
    db_file = gallery / "facedb.sqlite3"
    before = _plans(db_file)  # rows bulk-inserted: no statistics yet
    assert "ix_faces_collection_model_indexed" in before["hits"], before
    with FaceDB(home=gallery, workers=1) as db:
        after = _plans(db_file)
        assert "PRIMARY KEY" in after["hits"] and "collection_model" not in after["hits"], after
        assert "ix_faces_subject" in after["subject_faces"], after
        assert not db.catalog.refresh_statistics()  # fresh: nothing to do until the faces grow 4x


def test_a_search_counts_the_indexed_faces_again_only_after_a_change(gallery: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with FaceDB(home=gallery, workers=1) as db:
        calls: list[str] = []
        real = type(db.catalog).count_indexed

        def counting(self, model: str) -> int:  # type: ignore[no-untyped-def]
            calls.append(model)
            return real(self, model)

        monkeypatch.setattr(type(db.catalog), "count_indexed", counting)
        for _ in range(3):
            assert db.search_face(20, k=3, by="face").matches
        assert len(calls) == 1
        db.remove_faces([21])  # the indexed set changes: the next search counts again
        assert [m.face_id for m in db.search_face(20, k=3, by="face").matches if m.face_id == 21] == []
        assert len(calls) == 2
