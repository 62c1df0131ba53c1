"""The hot reads' memo (``facedb/catalog/memo.py``): answered from memory while the SQLite catalog is
unchanged, read again after any commit, from this process or another one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dbtools import run_process
from facephotos import make_face_variants

from facedb.catalog.core import SETTINGS_READ
from facedb.catalog.database import Catalog

KEY = "memo-test"


def _value(cat: Catalog) -> str | None:
    rows = cat.read(SETTINGS_READ, {"key1": KEY, "key2": "absent"})
    return rows[0][1] if rows else None


def test_a_repeated_read_is_remembered_until_any_commit(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    reader, writer = Catalog(f"sqlite:///{path}"), Catalog(f"sqlite:///{path}")
    reader.upgrade()
    try:
        assert reader.memo is not None
        writer.set_setting(KEY, "one")
        assert _value(reader) == "one"
        hits = reader.memo.hits
        assert _value(reader) == "one" and reader.memo.hits == hits + 1  # from memory

        writer.set_setting(KEY, "two")  # another connection of this process commits
        assert _value(reader) == "two"
        assert _value(reader) == "two"

        reader.set_setting(KEY, "three")  # the reader's own catalog commits (another pooled connection)
        assert _value(reader) == "three"

        # another process commits, with plain sqlite3
        code = (f"import sqlite3; c = sqlite3.connect({str(path)!r}); "
                f"c.execute(\"UPDATE settings SET value = 'four' WHERE key = '{KEY}'\"); c.commit()")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        assert _value(reader) == "four"
        # the remembered rows are copies: a caller that edits its list does not edit the memo
        reader.read(SETTINGS_READ, {"key1": KEY, "key2": "absent"}).clear()
        assert _value(reader) == "four"
    finally:
        reader.dispose()
        writer.dispose()


def test_a_statement_built_per_call_is_never_mistaken_for_another(tmp_path: Path) -> None:
    """The memo keys on the statement's id, which Python reuses once the statement is freed."""
    from sqlalchemy import bindparam, select

    from facedb.catalog.models import Setting

    cat = Catalog(f"sqlite:///{tmp_path / 'c.db'}")
    cat.upgrade()
    try:
        cat.set_setting("a", "1")
        cat.set_setting("b", "2")
        for key, want in [("a", "1"), ("b", "2")] * 3:
            stmt = select(Setting.value).where(Setting.key == bindparam("k"), Setting.key != bindparam("x"))
            assert cat.read(stmt, {"k": key, "x": ""}) == [(want,)]
            del stmt
    finally:
        cat.dispose()


def test_no_memo_without_a_sqlite_file(tmp_path: Path) -> None:
    cat = Catalog("sqlite://")
    assert cat.memo is None
    cat.dispose()


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("memo"), n_variants=3)


def test_a_search_sees_what_another_process_changed(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    """An open FaceDB searches (its catalog reads remembered); a CLI process renames, then deletes
    the person it names: the next search of the open FaceDB says so at once."""
    from facedb import FaceDB

    home = tmp_path / "home"
    db: Any = FaceDB(home=home, workers=1)
    try:
        db.enroll("Alice", people["person1"][:2])
        db.enroll("Carol", people["person2"][:2])
        probe = people["person1"][2]
        for _ in range(2):
            assert db.search([probe]).results[0].faces[0].identity == "Alice"
        memo = db.store.base.catalog.memo
        assert memo is not None and memo.hits > 0  # the second search read from memory

        done = run_process(home, "rename", "Alice", "Bob")
        assert done.returncode == 0, done.stderr
        assert db.search([probe]).results[0].faces[0].identity == "Bob"

        done = run_process(home, "delete", "Bob", "--yes")
        assert done.returncode == 0, done.stderr
        face = db.search([probe]).results[0].faces[0]
        assert face.identity is None
        assert all(m.subject != "Bob" for m in face.matches)
    finally:
        db.close()


def test_a_subjects_faces_are_kept_until_the_change_feed_moves_them(
        tmp_path: Path, people: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    """``TemplateCache.subject_faces``: the faces of the subjects a search ranked are read once,
    then kept across commits that do not touch them (here the audit trail's), and read again
    after a rename, a face removal, a move and a delete of that subject."""
    from facedb import FaceDB
    from facedb.catalog.templates import TemplateQueries

    reads: list[list[int]] = []
    original = TemplateQueries.subject_faces

    def counted(self: Any, model: str, subject_ids: Any) -> Any:
        reads.append(sorted(subject_ids))
        return original(self, model, subject_ids)

    monkeypatch.setattr(TemplateQueries, "subject_faces", counted)
    db: Any = FaceDB(home=tmp_path / "home", workers=1)
    try:
        db.enroll("Alice", people["person1"][:2])
        db.enroll("Carol", people["person2"][:2])
        probe = people["person1"][2]

        def top() -> Any:
            return db.search([probe], k=2).results[0].faces[0].matches[0]

        assert top().subject == "Alice"
        assert reads, "the first search reads the ranked subjects' faces"
        db.gate.flush()  # a commit (the audit trail) that changes no face
        reads.clear()
        for _ in range(3):
            assert top().subject == "Alice"
        assert reads == [], "kept: no face of a ranked subject changed"

        db.rename("Alice", "Bob")
        assert top().subject == "Bob" and reads, "a rename is read again"

        first = top()
        assert db.remove_faces([first.face_id]).faces == 1
        after = top()
        assert after.subject == "Bob" and after.face_id != first.face_id

        db.move_faces([after.face_id], "Carol")
        moved = db.search([probe], k=2).results[0].faces[0].matches
        assert all(m.face_id != after.face_id or m.subject == "Carol" for m in moved)
        assert "Bob" not in {m.subject for m in moved}  # Bob has no face left

        db.delete("Carol")
        assert all(m.subject != "Carol" for m in db.search([probe], k=2).results[0].faces[0].matches)
    finally:
        db.close()
