"""``facedb backup`` / ``facedb restore`` on real faces (the Yale photos).

A source database (three people, a deleted fourth, an API key, an audit trail) is backed up
once per module; the tests restore that snapshot into new homes (SQLite, PostgreSQL), through a
server, and with other weights, and look inside it for what must not be there.
"""
from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbtools import run_cli
from fastapi.testclient import TestClient

from facedb.api import FaceDB
from facedb.errors import AlreadyExistsError, AuthError, ModelError
from facedb.evaluation.servers import FacedbServer, bearer
from facedb.operations import gatekeeper
from facedb.server.app import create_app

PEOPLE = {"Ada Lovelace": "subject01", "Grace Hopper": "subject02", "Alan Turing": "subject03"}
GONE = "Zelda Vanished"  # deleted before the backup: nothing of her may be in it
GONE_TOO = "Yuri Erased"  # in a collection deleted before the backup
ENROLLED = ("normal", "happy", "sad", "glasses")
PROBES = ("wink", "surprised", "sleepy")


def _photos(yale: Path, subject: str, conditions: tuple[str, ...]) -> list[Path]:
    return [yale / f"{subject}.{c}" for c in conditions]


def _answers(db: Any, yale: Path) -> list[tuple[str | None, float]]:
    """Who each probe photo is, and the distance, for every person's probes."""
    probes = [p for s in PEOPLE.values() for p in _photos(yale, s, PROBES)]
    rep = db.search(probes, k=1)
    return [(r.faces[0].identity, round(r.faces[0].matches[0].distance, 5)) for r in rep.results]


def _members(path: Path) -> dict[str, bytes]:
    """Every member of the snapshot, decompressed."""
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes]) -> None:
    """A copy of snapshot ``src`` with its members passed through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, yale_dir: Path) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("backup")
    db = FaceDB(home=root / "src", workers=1)
    try:
        n_faces = 0
        for name, subject in PEOPLE.items():
            n_faces += db.enroll(name, _photos(yale_dir, subject, ENROLLED), metadata={"team": "blue"}).enrolled
        db.enroll(GONE, _photos(yale_dir, "subject04", ENROLLED))
        with db.store.base.catalog.engine.connect() as conn:
            gone_vectors = [bytes(r[0]) for r in conn.exec_driver_sql(
                "SELECT embedding FROM faces JOIN subjects ON subjects.id = faces.subject_id WHERE subjects.name = ?",
                (GONE,))]
            kept_vectors = [bytes(r[0]) for r in conn.exec_driver_sql(
                "SELECT embedding FROM faces JOIN subjects ON subjects.id = faces.subject_id WHERE subjects.name = ?",
                ("Ada Lovelace",))]
        db.rename(GONE, f"{GONE} II")  # her name now also in another row's text ("renamed from ...")
        db.delete(f"{GONE} II")
        # A person in a collection deleted before the backup: gone the same way.
        db.create_collection("temp")
        db.collection("temp").enroll(GONE_TOO, _photos(yale_dir, "subject08", ENROLLED[:2]))
        with db.store.base.catalog.engine.connect() as conn:
            gone_vectors += [bytes(r[0]) for r in conn.exec_driver_sql(
                "SELECT embedding FROM faces JOIN subjects ON subjects.id = faces.subject_id WHERE subjects.name = ?",
                (GONE_TOO,))]
        db.delete_collection("temp")
        key = db.create_key("door", "read").key
        answers = _answers(db, yale_dir)
        audit = [e.to_dict() for e in db.audit()]
        snap = root / "snap.zip"
        report = db.backup(snap)
    finally:
        db.close()
    assert len(gone_vectors) >= 3 and len(kept_vectors) >= 2 and n_faces >= 9
    yield {"n_faces": n_faces, "root": root, "snap": snap, "report": report, "key": key, "answers": answers, "audit": audit,
           "gone_vectors": gone_vectors, "kept_vectors": kept_vectors}


def test_the_snapshot_is_private_and_says_what_it_holds(source: dict[str, Any]) -> None:
    snap, rep = source["snap"], source["report"]
    assert (snap.stat().st_mode & 0o777) == 0o600
    assert rep.rows["subjects"] == 3 and rep.rows["faces"] == source["n_faces"] and rep.rows["api_keys"] == 1
    assert rep.faces_by_pack == {"sface-flip": source["n_faces"]}
    manifest = json.loads(_members(snap)["manifest.json"])
    assert manifest["format"] == "facedb-backup" and manifest["schema_revision"] == rep.schema_revision
    assert manifest["packs"]["sface-flip"]["fingerprint"] and manifest["packs"]["sface-flip"]["dim"] == 128
    assert not any(p.name.endswith(".tmp") for p in snap.parent.iterdir())


def test_a_subject_deleted_before_the_backup_leaves_no_trace(source: dict[str, Any]) -> None:
    members = _members(source["snap"])
    raw = source["snap"].read_bytes()
    for blob in [*members.values(), raw]:
        assert GONE.encode() not in blob and GONE_TOO.encode() not in blob
        for vector in source["gone_vectors"]:
            assert vector not in blob
    # ...where a live subject's name and vectors are found (the scan can see them).
    everything = b"".join(members.values())
    assert b"Ada Lovelace" in everything
    assert all(v in members["tables/faces.embedding.bin"] for v in source["kept_vectors"])
    assert b"pending_deletes" not in b"".join(n.encode() for n in members)


def test_restore_answers_like_the_source(source: dict[str, Any], yale_dir: Path) -> None:
    db = FaceDB(home=source["root"] / "restored", workers=1)
    try:
        rep = db.restore(source["snap"])
        assert rep.clean and rep.indexed_faces == source["n_faces"] and rep.check is not None
        assert rep.check.catalog_faces == source["n_faces"]
        assert _answers(db, yale_dir) == source["answers"]
        assert db.check().clean
        assert [s.name for s in db.subjects()] == sorted(PEOPLE)
        assert db.show("Ada Lovelace").metadata == {"team": "blue"}
        # The key still works (only its hash was copied) and the audit trail came along.
        assert db.gate.authenticate(source["key"], "read") == ("door", "read")
        with pytest.raises(AuthError):
            db.gate.authenticate(gatekeeper.new_key(), "read")
        restored = [e.to_dict() for e in db.audit()]
        assert restored[:len(source["audit"])] == source["audit"]
        assert [e["action"] for e in restored[len(source["audit"]):]] == ["restore", "search"]
        # It is a working database: a new face is enrolled and found.
        db.enroll("Ada Lovelace", _photos(yale_dir, "subject01", ("noglasses",)))
        assert db.check().clean
    finally:
        db.close()


def test_restore_refuses_a_database_that_is_not_empty(source: dict[str, Any], yale_dir: Path) -> None:
    home = source["root"] / "busy"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("Someone", _photos(yale_dir, "subject05", ("normal",)))
        with pytest.raises(AlreadyExistsError, match="not empty"):
            db.restore(source["snap"])
        assert [s.name for s in db.subjects()] == ["Someone"] and db.check().clean
    code, _, err = run_cli(home, "restore", str(source["snap"]))
    assert code == AlreadyExistsError.exit_code and "not empty" in err and "--home" in err
    with FaceDB(home=home, workers=1) as db:
        assert [s.name for s in db.subjects()] == ["Someone"]
    # The CLI's text: what it wrote, where.
    code, out, err = run_cli(home, "backup", str(home.parent / "busy.zip"))
    assert code == 0, err
    assert out.startswith(f"wrote {home.parent / 'busy.zip'}: 1 subject, 1 face, 1 audit entry (")


def test_restore_refuses_other_weights_unless_it_reindexes(source: dict[str, Any], yale_dir: Path) -> None:
    other = source["root"] / "other-weights.zip"
    real = json.loads(_members(source["snap"])["manifest.json"])["packs"]["sface-flip"]["fingerprint"]

    def other_fingerprint(name: str, data: bytes) -> bytes:
        return data.replace(real.encode(), b"f" * len(real)) if name.endswith((".json", "settings.jsonl")) else data

    _rewrite(source["snap"], other, other_fingerprint)
    home = source["root"] / "reweighed"
    code, _, err = run_cli(home, "restore", str(other))
    assert code == ModelError.exit_code and "other model weights" in err and "--reindex-from-images" in err
    code, out, err = run_cli(home, "restore", str(other), "--reindex-from-images", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["reindexed"] == source["n_faces"] and rep["failed"] == [] and rep["clean"]
    with FaceDB(home=home, workers=1) as db:
        assert _answers(db, yale_dir) == source["answers"]
        assert db.store.base.catalog.pack_record("sface-flip").fingerprint == real


def test_restore_refuses_what_is_not_a_snapshot(source: dict[str, Any], tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK not really")
    code, _, err = run_cli(tmp_path / "home", "restore", str(junk))
    assert code == 2 and "not a facedb snapshot" in err
    cut = tmp_path / "cut.zip"
    cut.write_bytes(source["snap"].read_bytes()[:-200])
    code, _, err = run_cli(tmp_path / "home", "restore", str(cut))
    assert code == 2 and "not a facedb snapshot" in err
    with FaceDB(home=tmp_path / "home", workers=1) as db:  # nothing was written
        assert db.subjects() == [] and db.audit() == []


def test_http_backup_and_restore(source: dict[str, Any], yale_dir: Path, tmp_path: Path) -> None:
    with FaceDB(home=tmp_path / "empty", workers=1) as db, TestClient(create_app(db)) as client:
        admin = db.create_key("admin", "admin").key or ""
        read = db.create_key("reader", "read").key or ""
        # A database with an API key is not empty (a restore over TCP is refused; the owner
        # restores on the unix socket, see the server test below): 409.
        res = client.post("/v1/restore", content=source["snap"].read_bytes(), headers=bearer(admin))
        assert res.status_code == 409 and "not empty" in res.json()["error"]
        assert client.get("/v1/backup", headers=bearer(read)).status_code == 403
        res = client.get("/v1/backup", headers=bearer(admin))
        assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
        snap = tmp_path / "over-http.zip"
        snap.write_bytes(res.content)
        assert json.loads(_members(snap)["manifest.json"])["tables"]["api_keys"] == 2
        # A damaged body never reaches the catalog: 422, and the upload's temporary file is gone.
        res = client.post("/v1/restore", content=b"PK junk", headers=bearer(admin))
        assert res.status_code in (409, 422)
    assert not [p for p in (tmp_path / "empty").iterdir() if p.name.startswith(".restore-")]


def test_backup_while_a_server_owns_the_home(source: dict[str, Any], yale_dir: Path, tmp_path: Path) -> None:
    home = tmp_path / "served"
    with FaceDB(home=home, workers=1) as db:
        db.restore(source["snap"])
    with FacedbServer(home, workers=1) as srv:
        # Enrolments go on while the backup runs; the snapshot holds each photo whole or not at all.
        writer = threading.Thread(target=srv.cli, args=("enroll", "Late Comer",
                                                        *map(str, _photos(yale_dir, "subject06", ENROLLED))))
        writer.start()
        snap = tmp_path / "served.zip"
        rep = srv.cli_json("backup", str(snap))
        writer.join()
        assert (snap.stat().st_mode & 0o777) == 0o600 and rep["rows"]["subjects"] in (3, 4)
        assert rep["index_shipped"] is True, rep  # the server copied its own index under its lock
        key = srv.new_key("ops", "admin")
        res = srv.cli("--server", srv.url, "--api-key", key, "backup", str(tmp_path / "remote.zip"))
        assert res.returncode == 0, res.stderr
        assert json.loads(_members(tmp_path / "remote.zip")["manifest.json"])["tables"]["subjects"] == 4
    with FaceDB(home=tmp_path / "from-served", workers=1) as db:
        restored = db.restore(snap)
        assert restored.clean and restored.index_path == "shipped", restored.to_dict()
        faces = {s.name: s.faces for s in db.subjects()}
        assert faces.get("Late Comer", len(ENROLLED)) == len(ENROLLED)  # whole photos, never half a write
        assert _answers(db, yale_dir) == source["answers"]


def test_restore_through_the_server_that_owns_an_empty_home(source: dict[str, Any], yale_dir: Path,
                                                           tmp_path: Path) -> None:
    home = tmp_path / "served-empty"
    with FacedbServer(home, workers=1) as srv:
        rep = srv.cli_json("restore", str(source["snap"]))
        assert rep["clean"] and rep["indexed_faces"] == source["n_faces"]
        assert rep["index_path"] == "shipped", rep  # the server's open index was replaced by the snapshot's
        out = srv.cli_json("search", *map(str, _photos(yale_dir, "subject02", PROBES[:1])))
        assert out["results"][0]["faces"][0]["identity"] == "Grace Hopper"
        again = srv.cli("restore", str(source["snap"]))
        assert again.returncode == AlreadyExistsError.exit_code and b"not empty" in again.stderr
    assert not [p for p in home.iterdir() if p.name.startswith(".restore-")]


@pytest.mark.slow
def test_sqlite_snapshot_restores_into_postgresql(source: dict[str, Any], yale_dir: Path, pg_url: str,
                                                 tmp_path: Path) -> None:
    db = FaceDB(home=tmp_path / "pg-home", db_url=pg_url, workers=1)
    try:
        rep = db.restore(source["snap"])
        assert rep.clean and rep.catalog.startswith("postgresql")
        assert _answers(db, yale_dir) == source["answers"]
        assert db.gate.authenticate(source["key"], "read") == ("door", "read")
        db.enroll("New Person", _photos(yale_dir, "subject07", ("normal",)))  # the id sequences moved on
        assert db.check().clean
        # ...and back: a PostgreSQL snapshot restores into SQLite.
        back = tmp_path / "pg.zip"
        db.backup(back)
    finally:
        db.close()
    with FaceDB(home=tmp_path / "back", workers=1) as lite:
        assert lite.restore(back).clean
        assert {s.name for s in lite.subjects()} == {*PEOPLE, "New Person"}
        assert _answers(lite, yale_dir) == source["answers"]
    assert os.path.exists(back)


@pytest.mark.slow
def test_restore_into_shared_stores_replaces_what_the_chroma_server_held(source: dict[str, Any], yale_dir: Path,
                                                                         pg_cluster: Any, chroma_server: Any,
                                                                         tmp_path: Path) -> None:
    """PostgreSQL + a Chroma server (the shared coordinator's locks): a second restore into a new
    database on the same Chroma server finds the first one's collection under the same name, and
    replaces it instead of mixing two databases' ids."""
    pg_cluster.ensure_running()
    chroma_server.ensure_running()
    urls = [pg_cluster.create_database(), pg_cluster.create_database()]
    try:
        for i, url in enumerate(urls):
            with FaceDB(home=tmp_path / f"shared{i}", db_url=url, chroma_url=chroma_server.url, workers=1) as db:
                rep = db.restore(source["snap"])
                assert rep.clean and rep.indexed_faces == source["n_faces"], rep.to_dict()
                assert rep.index == chroma_server.url
                assert _answers(db, yale_dir) == source["answers"]
                if i == 0:  # a face the next database does not have: an orphan, were it kept
                    assert db.enroll("Extra Person", _photos(yale_dir, "subject09", ("normal",))).enrolled == 1
    finally:
        for url in urls:
            pg_cluster.drop_database(url.rsplit("/", 1)[1])


def test_a_face_the_source_had_not_indexed_yet_is_indexed_by_the_restore(yale_dir: Path, tmp_path: Path) -> None:
    """A write in flight at backup time (stored, not yet marked indexed): the restored index holds
    it and its subject's template counts it; every other face goes straight in with its template."""
    from sqlalchemy import update

    from facedb.catalog.models import Face

    with FaceDB(home=tmp_path / "src", workers=1) as db:
        n = db.enroll("Pending Person", _photos(yale_dir, "subject10", ENROLLED[:3])).enrolled
        with db.catalog.session() as s:
            first = min(f["face_id"] for img in db.show("Pending Person").images for f in img["faces"])
            s.execute(update(Face).where(Face.id == first).values(indexed=False))
        db.catalog.rebuild_templates(db.pack_name)  # the template of the indexed faces only, as in a real write
        db.backup(tmp_path / "pending.zip")
    with FaceDB(home=tmp_path / "dst", workers=1) as db:
        rep = db.restore(tmp_path / "pending.zip")
        assert rep.clean and rep.indexed_faces == n
        assert first in db.index_face_ids()
