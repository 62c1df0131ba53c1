"""Collections: several galleries in one database.

Real faces throughout: the same name in two collections is two people; a face enrolled in one
collection never answers a search in another; the same photo may be enrolled in both; a key
limited to a collection is refused (403) elsewhere, over a real FastAPI app; deleting a
collection erases its embeddings' bytes from every file of the home (after vacuum); a database
made at revision 0004 migrates with its gallery as ``default`` and NFC duplicates merged.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dbtools import run_cli, run_process
from facephotos import make_face_variants
from test_erasure import files_containing, scan_home

from facedb.errors import AlreadyExistsError, AuthError, FacedbError, ForbiddenError, NotFoundError

NFC, NFD = "Zo\u00eb", "Zoe\u0308"


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("collections"), n_variants=3)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    from facedb import FaceDB

    db = FaceDB(home=tmp_path / "home", workers=1)
    yield db
    db.close()


def _face_ids(db: Any) -> set[int]:
    return {f["face_id"] for s in db.subjects() for img in db.show(s.name).images for f in img["faces"]}


# -- kept apart ----------------------------------------------------------------------------------

def test_two_collections_keep_subjects_faces_and_search_apart(db: Any, people: dict[str, list[Path]]) -> None:
    p1, p2 = people["person1"], people["person2"]
    assert db.enroll("alice", p1[:2]).enrolled == 2
    db.create_collection("lobby")
    lobby = db.collection("lobby")
    assert lobby.store.base is db.store.base and lobby.gate is db.gate  # one store, one gatekeeper
    assert lobby.analyzer is db.analyzer  # same pack: the same workers
    # The same name is another person here; the same photo may be enrolled again (as someone else).
    assert lobby.enroll("alice", p2[:2]).enrolled == 2
    rep = lobby.enroll("bob", p1[:1])
    assert rep.enrolled == 1 and not rep.failed
    assert [(s.name, s.faces) for s in db.subjects()] == [("alice", 2)]
    assert [(s.name, s.faces) for s in lobby.subjects()] == [("alice", 2), ("bob", 1)]
    mine, theirs = _face_ids(db), _face_ids(lobby)
    assert mine and theirs and not mine & theirs

    # person1's probe: "alice" in default; in the lobby, bob (person1's photo) and never a default face.
    assert db.search([p1[2]]).results[0].faces[0].identity == "alice"
    for scoring in ("template", "best"):
        face = lobby.search([p1[2]], k=5, scoring=scoring, reference=True).results[0].faces[0]
        assert face.identity == "bob" and face.reference_agrees is True
        assert {m.face_id for m in face.matches} <= theirs
    by_face = lobby.search([p1[2]], k=10, by="face").results[0].faces[0]
    assert {m.face_id for m in by_face.matches} == theirs
    # person2's probe matches nobody in default (alice is person1 there).
    face = db.search([p2[2]], k=5).results[0].faces[0]
    assert face.identity is None and {m.face_id for m in face.matches} <= mine
    assert db.verify(p1[2], "alice").match and not lobby.verify(p1[2], "alice").match

    # Deleting lobby's alice leaves default's alice; check is clean on both sides.
    assert lobby.delete("alice").faces == 2
    assert [s.name for s in db.subjects()] == ["alice"] and [s.name for s in lobby.subjects()] == ["bob"]
    assert db.check().clean and lobby.check().clean
    assert lobby.stats().subjects == 1 and db.stats().subjects == 1
    assert db.failures() == [] and lobby.failures() == []
    # The audit trail is server-wide and says which collection each call used.
    trail = [(a.action, a.collection) for a in db.audit()]
    assert ("enroll", "lobby") in trail and ("enroll", "default") in trail and ("collection_create", None) in trail


def test_a_collection_has_its_own_threshold_and_the_list_counts(db: Any, people: dict[str, list[Path]]) -> None:
    info = db.create_collection("strict", threshold=0.05)
    assert (info.name, info.threshold, info.pack) == ("strict", 0.05, None)
    strict = db.collection("strict")
    assert strict.threshold == 0.05 and db.threshold != 0.05
    strict.enroll("carol", people["person3"][:2])
    rep = strict.search([people["person3"][2]])
    assert rep.threshold == 0.05
    rows = {c.name: c for c in db.collections()}
    assert set(rows) == {"default", "strict"}
    assert (rows["strict"].subjects, rows["strict"].faces) == (1, 2) and rows["default"].faces == 0
    assert rows["strict"].to_dict() == type(rows["strict"]).from_dict(rows["strict"].to_dict()).to_dict()


def test_collection_names_unknown_collections_and_default(tmp_path: Path, db: Any) -> None:
    from facedb import FaceDB

    with pytest.raises(NotFoundError, match="facedb collections create nope"):
        FaceDB(home=tmp_path / "home", collection="nope")
    with pytest.raises(NotFoundError):
        db.collection("nope")
    for bad in ("", "a b", "../x", "-x", "x" * 65, "a/b"):
        with pytest.raises(FacedbError, match="collection name"):
            db.create_collection(bad)
    with pytest.raises(FacedbError, match="threshold"):
        db.create_collection("t", threshold=-1)
    with pytest.raises(FacedbError, match="unknown pack"):
        db.create_collection("t", pack="no-such-pack")
    db.create_collection("t")
    with pytest.raises(AlreadyExistsError):
        db.create_collection("t")
    with pytest.raises(FacedbError, match="cannot be deleted"):
        db.delete_collection("default")
    with pytest.raises(NotFoundError):
        db.delete_collection("nope")
    # FaceDB(collection=...) binds to an existing one (another process, say).
    db.close()
    with FaceDB(home=tmp_path / "home", collection="t") as other:
        assert other.collection_name == "t" and other.subjects() == []


# -- keys ---------------------------------------------------------------------------------------------

def test_a_collection_limited_key_is_refused_elsewhere(db: Any) -> None:
    db.create_collection("lobby")
    limited = db.create_key("lobby-cam", "write", collection="lobby")
    anywhere = db.create_key("ops", "admin")
    assert limited.collection == "lobby" and anywhere.collection is None
    assert {k.name: k.collection for k in db.keys()} == {"lobby-cam": "lobby", "ops": None}
    gate = db.gate
    assert gate.authenticate(limited.key, "read", "lobby") == ("lobby-cam", "write")
    with pytest.raises(ForbiddenError, match="limited to collection 'lobby'") as err:
        gate.authenticate(limited.key, "read", "default")
    assert err.value.http_status == 403 and err.value.reason == "forbidden"
    with pytest.raises(ForbiddenError):
        gate.authenticate(limited.key, "read", None)  # a server-wide call
    with pytest.raises(ForbiddenError):
        gate.authenticate(limited.key, "admin", "lobby")  # the scope still counts
    assert gate.authenticate(anywhere.key, "admin", "default") == ("ops", "admin")
    assert gate.authenticate(anywhere.key, "admin", None) == ("ops", "admin")
    with pytest.raises(AuthError):
        gate.authenticate("fdb_nope", "read", "lobby")
    with pytest.raises(NotFoundError):
        db.create_key("x", "read", collection="nope")


def test_collections_over_the_real_app(db: Any, people: dict[str, list[Path]]) -> None:
    from fastapi.testclient import TestClient

    admin = db.create_key("ops", "admin").key
    from facedb.server.app import create_app

    with TestClient(create_app(db)) as http:
        def call(method: str, path: str, key: str | None, **kw: Any) -> Any:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return http.request(method, path, headers=headers, **kw)

        r = call("POST", "/v1/collections", admin, json={"name": "lobby", "threshold": 0.4})
        assert r.status_code == 201 and r.json()["name"] == "lobby" and r.json()["threshold"] == 0.4
        assert call("POST", "/v1/collections", admin, json={"name": "lobby"}).status_code == 409
        assert call("POST", "/v1/collections", admin, json={"name": "a b"}).status_code == 400
        assert [c["name"] for c in call("GET", "/v1/collections", admin).json()] == ["default", "lobby"]
        db.collection("lobby").enroll("dave", people["person4"][:1])
        cam = db.create_key("lobby-cam", "read", collection="lobby").key
        r = call("GET", "/v1/collections/lobby/subjects", cam)
        assert r.status_code == 200 and [x["name"] for x in r.json()] == ["dave"]
        r = call("GET", "/v1/collections/default/subjects", cam)
        assert r.status_code == 403 and r.json()["reason"] == "forbidden"
        assert call("GET", "/v1/collections", cam).status_code == 403  # server-wide: refused
        assert call("GET", "/v1/collections/lobby/subjects", None).status_code == 401
        assert call("GET", "/v1/collections/nope/subjects", admin).status_code == 404
        assert call("GET", "/v1/collections/default/subjects", admin).json() == []
        assert call("DELETE", "/v1/collections/default", admin).status_code == 400
        r = call("DELETE", "/v1/collections/lobby", cam)
        assert r.status_code == 403
        r = call("DELETE", "/v1/collections/lobby", admin)
        assert r.status_code == 200 and (r.json()["subjects"], r.json()["faces"]) == (1, 1)
        assert call("GET", "/v1/collections/lobby/subjects", admin).status_code == 404
    assert [c.name for c in db.collections()] == ["default"]


# -- erasure --------------------------------------------------------------------------------------------

VICTIM = "Victim C9-collection"


def test_delete_collection_then_vacuum_erases_every_byte(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    from facedb import FaceDB
    from facedb.catalog.models import Face, Subject
    from facedb.catalog.models import Image as ImageRow

    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        assert db.enroll("keeper", people["person2"]).enrolled == 3
        db.create_collection("gone")
        gone = db.collection("gone")
        assert gone.enroll(VICTIM, people["person1"]).enrolled == 3
        # Filler faces in the doomed collection: beyond Chroma's sync threshold, so its HNSW
        # index is written to data_level0.bin (the positive control below).
        rng = np.random.default_rng(11)
        filler = rng.standard_normal((1100, 128)).astype(np.float32)
        filler /= np.linalg.norm(filler, axis=1, keepdims=True)
        with gone.catalog.session() as s:
            sub = Subject(name="filler", collection_id=gone.catalog.cid)
            s.add(sub)
            s.flush()
            for i, v in enumerate(filler):
                img = ImageRow(collection_id=gone.catalog.cid, subject_id=sub.id, path=f"/synthetic/{i}.jpg",
                               sha256=hashlib.sha256(b"f%d" % i).hexdigest(), size_bytes=0, width=1, height=1)
                s.add(img)
                s.flush()
                s.add(Face(collection_id=gone.catalog.cid, image_id=img.id, subject_id=sub.id, model=gone.pack_name,
                           x1=0.0, y1=0.0, x2=1.0, y2=1.0, score=1.0, landmarks=[[0.0, 0.0]] * 5, dim=128,
                           embedding=v.tobytes(), indexed=False))
        gone.store.mark_dirty()
        with gone.hold():  # the replay indexes them
            pass
        assert gone.check().clean and db.check().clean
        with gone.catalog.session() as s:
            sid = gone.catalog.subject(s, VICTIM).id
        _, victim = gone.catalog.embeddings(gone.pack_name, subject_id=sid)
        _, keeper = db.catalog.embeddings(db.pack_name)
    before = scan_home(home, victim)
    assert before.get("facedb.sqlite3") == [0, 1, 2], before
    assert any(f.endswith("data_level0.bin") and v == [0, 1, 2] for f, v in before.items()), before
    assert files_containing(home, VICTIM.encode())

    # As a user runs it: each command its own process. (A process that held the deleted vectors in
    # memory may hand freed heap to the index files a rebuild writes: see docs/storage.md.)
    def facedb_json(*args: str) -> Any:
        res = run_process(home, *args, "--json")
        assert res.returncode == 0, res.stderr.decode()
        return json.loads(res.stdout)

    info = facedb_json("collections", "delete", "gone", "--yes")
    assert (info["subjects"], info["faces"]) == (2, 1103)
    assert [c["name"] for c in facedb_json("collections", "list")] == ["default"]
    assert facedb_json("search", str(people["person1"][0]))["results"][0]["faces"][0]["identity"] != VICTIM
    facedb_json("vacuum")
    assert facedb_json("check")["clean"]
    assert facedb_json("search", str(people["person2"][0]))["results"][0]["faces"][0]["identity"] == "keeper"
    after = scan_home(home, np.concatenate([victim, filler[:5]]))
    assert after == {}, f"erased embeddings still on disk: {after}"
    assert files_containing(home, VICTIM.encode()) == []
    kept = scan_home(home, keeper)  # positive control: the survivors are still found
    assert kept.get("facedb.sqlite3") == [0, 1, 2], kept


# -- migration from 0004 -----------------------------------------------------------------------------------

def _build_0004(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    from facedb.catalog.database import MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "0004")


def _insert_0004_rows(url: str, vectors: dict[str, list[np.ndarray]]) -> None:
    """A gallery as facedb at 0004 stored it: subjects (two spellings of Zoë), images, indexed
    faces, their templates and the template counter."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    seq = 0
    with engine.begin() as conn:
        for sid, (name, vecs) in enumerate(vectors.items(), start=1):
            conn.execute(sa.text("INSERT INTO subjects (id, name, created_at) VALUES (:i, :n, CURRENT_TIMESTAMP)"),
                         {"i": sid, "n": name})
            for j, v in enumerate(vecs):
                fid = sid * 10 + j
                conn.execute(sa.text("INSERT INTO images (id, subject_id, path, sha256, size_bytes, width, height, "
                                     "status, source, created_at) VALUES (:i, :s, :p, :h, 1, 1, 1, 'enrolled', 'file', "
                                     "CURRENT_TIMESTAMP)"),
                             {"i": fid, "s": sid, "p": f"/p/{fid}.jpg", "h": hashlib.sha256(b"%d" % fid).hexdigest()})
                conn.execute(sa.text("INSERT INTO faces (id, image_id, subject_id, model, x1, y1, x2, y2, score, "
                                     "landmarks, dim, embedding, indexed, created_at) VALUES (:i, :i, :s, 'sface', 0, 0, "
                                     "1, 1, 1, '[]', :d, :e, :y, CURRENT_TIMESTAMP)"),
                             {"i": fid, "s": sid, "d": v.size, "e": v.astype(np.float32).tobytes(), "y": True})
            seq += 1
            conn.execute(sa.text("INSERT INTO subject_templates (subject_id, model, vector, n_faces, seq) "
                                 "VALUES (:s, 'sface', :v, :n, :q)"),
                         {"s": sid, "v": np.sum(vecs, axis=0).astype(np.float32).tobytes(), "n": len(vecs), "q": seq})
            conn.execute(sa.text("INSERT INTO failures (path, subject_name, reason, detail, created_at) "
                                 "VALUES (:p, :n, 'no_face', '', CURRENT_TIMESTAMP)"), {"p": f"/f/{sid}", "n": name})
        conn.execute(sa.text("UPDATE counters SET value = :q WHERE name = 'templates_seq'"), {"q": seq})
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'c.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def test_a_0004_database_migrates_to_default_and_merges_nfc_names(catalog_url: str,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from facedb.catalog.database import SCHEMA_HEAD, Catalog

    rng = np.random.default_rng(5)
    unit = [v / np.linalg.norm(v) for v in rng.standard_normal((5, 128))]
    _build_0004(catalog_url)
    _insert_0004_rows(catalog_url, {NFC: unit[:2], NFD: unit[2:3], "Bob": unit[3:5]})
    cat = Catalog(catalog_url)
    try:
        with caplog.at_level(logging.INFO):
            cat.upgrade()
        assert cat.schema_revision() == SCHEMA_HEAD
        assert [(c["name"], c["subjects"], c["faces"]) for c in cat.collection_rows()] == [("default", 2, 5)]
        rows = {r["name"]: r for r in cat.subject_rows()}  # the unscoped catalog is default's
        assert set(rows) == {NFC, "Bob"}
        assert (rows[NFC]["images"], rows[NFC]["faces"]) == (3, 3)
        assert cat.stale_templates("sface") == []
        ((sid, vec, _),) = [c for c in cat.template_changes("sface", 0) if c[1] is not None and c[0] == 1]
        assert np.allclose(vec, np.sum(unit[:3], axis=0), atol=1e-5)
        assert any(v is None for s, v, _ in cat.template_changes("sface", 0) if s == 2)  # the merged-away marker
        assert sorted(f["subject"] for f in cat.failures()) == sorted(["Bob", NFC, NFC])
        merged = [r.getMessage() for r in caplog.records if "merged" in r.getMessage()]
        assert merged and "1 merged" in merged[0]
        assert not any("Zo" in r.getMessage() or "Bob" in r.getMessage() for r in caplog.records)
        # The same name may now exist in another collection; a photo's bytes too.
        cat.create_collection("other", None, None)
        row = cat.collection_row("other")
        assert row is not None
        other = cat.scoped(row["id"], "other")
        assert other.subject_rows() == [] and other.known_sha256([hashlib.sha256(b"10").hexdigest()]) == {}
        assert cat.known_sha256([hashlib.sha256(b"10").hexdigest()]) == {hashlib.sha256(b"10").hexdigest(): NFC}
    finally:
        cat.dispose()


def test_an_existing_home_keeps_its_gallery_and_index_as_default(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    """A real home made at head, taken back to 0004 (as an older facedb left it), with a second,
    decomposed spelling of a subject: opening it migrates, merges, and searches without a reindex."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from facedb import FaceDB
    from facedb.catalog.database import MIGRATIONS_DIR
    from facedb.index.chroma_index import collection_name, index_name

    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll(NFC, people["person1"][:2])
        db.enroll("Bob", people["person2"][:2])
        url = db.settings.db_url
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.downgrade(cfg, "0004")
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # one of Zoë's photos as a decomposed-name subject of its own
        conn.execute(sa.text("INSERT INTO subjects (id, name, created_at) VALUES (99, :n, CURRENT_TIMESTAMP)"),
                     {"n": NFD})
        img = conn.execute(sa.text("SELECT max(id) FROM images WHERE subject_id = 1")).scalar()
        conn.execute(sa.text("UPDATE images SET subject_id = 99 WHERE id = :i"), {"i": img})
        conn.execute(sa.text("UPDATE faces SET subject_id = 99 WHERE image_id = :i"), {"i": img})
    engine.dispose()
    with FaceDB(home=home, workers=1) as db:
        assert [c.name for c in db.collections()] == ["default"]
        assert index_name(db.pack.info) == collection_name(db.pack_name)  # the Chroma collection kept its name
        assert [(s.name, s.faces) for s in db.subjects()] == [("Bob", 2), (NFC, 2)]
        assert db.check().clean  # nothing to re-index, templates in step
        assert db.search([people["person1"][2]]).results[0].faces[0].identity == NFC


# -- CLI -------------------------------------------------------------------------------------------------

def test_the_collections_commands_and_the_global_option(tmp_path: Path, people: dict[str, list[Path]],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"

    def ok(*args: str) -> Any:
        code, out, err = run_cli(home, *args, "--json")
        assert code == 0, f"exit {code}: {err}\n{out}"
        return json.loads(out)

    assert [c["name"] for c in ok("collections", "list")] == ["default"]
    made = ok("collections", "create", "lobby", "--threshold", "0.45")
    assert made["name"] == "lobby" and made["threshold"] == 0.45 and made["pack"] is None
    code, _, err = run_cli(home, "collections", "create", "lobby")
    assert code == 1 and "already exists" in err
    code, _, err = run_cli(home, "collections", "create", "bad name")
    assert code == 1 and "collection name" in err
    assert ok("--collection", "lobby", "enroll", "erin", *map(str, people["person5"][:2]), "-q")["enrolled"] == 2
    assert [s["name"] for s in ok("--collection", "lobby", "subjects")] == ["erin"]
    assert ok("subjects") == []
    monkeypatch.setenv("FACEDB_COLLECTION", "lobby")
    assert [s["name"] for s in ok("subjects")] == ["erin"]
    found = ok("search", str(people["person5"][2]))
    assert found["threshold"] == 0.45 and found["results"][0]["faces"][0]["identity"] == "erin"
    monkeypatch.delenv("FACEDB_COLLECTION")
    code, _, err = run_cli(home, "--collection", "nope", "subjects")
    assert code == 4 and "facedb collections create nope" in err
    key = ok("keys", "create", "cam", "--scope", "read", "--collection", "lobby")
    assert key["collection"] == "lobby" and key["key"].startswith("fdb_")
    assert {k["name"]: k["collection"] for k in ok("keys", "list")} == {"cam": "lobby"}
    code, out, _ = run_cli(home, "keys", "list")
    assert code == 0 and "collection lobby" in out
    code, out, _ = run_cli(home, "audit")
    assert code == 0 and "[lobby] 'erin'" in out
    rows = {c["name"]: c for c in ok("collections", "list")}
    assert (rows["lobby"]["subjects"], rows["lobby"]["faces"]) == (1, 2)
    code, _, err = run_cli(home, "collections", "delete", "lobby")
    assert code == 2 and "--yes" in err
    code, _, err = run_cli(home, "collections", "delete", "default", "--yes")
    assert code == 1 and "cannot be deleted" in err
    gone = ok("collections", "delete", "lobby", "--yes")
    assert (gone["name"], gone["subjects"], gone["faces"]) == ("lobby", 1, 2)
    assert [c["name"] for c in ok("collections", "list")] == ["default"]
    code, out, _ = run_cli(home, "collections", "list")
    assert code == 0 and "default" in out and "1 collection\n" in out


# -- the client's request path ------------------------------------------------------------------------------

def test_the_client_puts_collection_calls_under_the_collection() -> None:
    from facedb.client import Client, collection_path

    assert collection_path("/v1/search", None) == "/v1/search"
    assert collection_path("/v1/search", "default") == "/v1/search"
    assert collection_path("/v1/search", "lobby") == "/v1/collections/lobby/search"
    assert collection_path("/v1/subjects/Zo%C3%AB/images", "lobby") == "/v1/collections/lobby/subjects/Zo%C3%AB/images"
    for wide in ("/v1/keys", "/v1/keys/cam", "/v1/audit", "/v1/collections", "/v1/collections/lobby", "/v1/vacuum"):
        assert collection_path(wide, "lobby") == wide
    assert collection_path("/healthz", "lobby") == "/healthz"
    sent: list[tuple[str, str]] = []
    client = Client("http://127.0.0.1:9", collection="lobby")
    client._http.request = lambda method, path, **kw: sent.append((method, path)) or []  # type: ignore[method-assign]
    client.subjects()
    client.keys()
    client.collections()
    assert sent == [("GET", "/v1/collections/lobby/subjects"), ("GET", "/v1/keys"), ("GET", "/v1/collections")]



def test_migrate_to_a_new_home_copies_every_collection(tmp_path: Path, db: Any, people: dict[str, list[Path]]) -> None:
    db.enroll("alice", people["person1"][:2])
    db.create_collection("lobby", threshold=0.5)
    db.collection("lobby").enroll("bob", people["person2"][:2])
    rep = db.migrate_to(home=tmp_path / "copy")
    assert rep.rows["collections"] == 2 and rep.indexed_faces == 4 and rep.check is not None and rep.check.clean
    from facedb import FaceDB

    with FaceDB(home=tmp_path / "copy", workers=1) as copy:
        assert {c.name: c.threshold for c in copy.collections()} == {"default": None, "lobby": 0.5}
        lobby = copy.collection("lobby")
        assert copy.search([people["person1"][2]]).results[0].faces[0].identity == "alice"
        assert lobby.search([people["person2"][2]]).results[0].faces[0].identity == "bob"
        assert lobby.search([people["person1"][2]]).results[0].faces[0].identity is None
        assert lobby.check().clean


@pytest.mark.slow
def test_collections_on_postgres_and_a_chroma_server(tmp_path: Path, pg_url: str, chroma_server: Any,
                                                     people: dict[str, list[Path]]) -> None:
    """On shared stores each collection has its own Chroma collection on the server (the
    default's keeps its old name), and deleting a collection drops its one."""
    from facedb import FaceDB
    from facedb.index.chroma_index import collection_name

    chroma_server.ensure_running()
    client = chroma_server.client()
    for c in client.list_collections():
        client.delete_collection(c.name)
    with FaceDB(home=tmp_path / "home", db_url=pg_url, chroma_url=chroma_server.url, workers=1) as db:
        db.enroll("alice", people["person1"][:2])
        db.create_collection("lobby")
        lobby = db.collection("lobby")
        lobby.enroll("alice", people["person2"][:2])
        lobby_index = collection_name(db.pack_name, lobby.catalog.space)
        assert lobby.catalog.space and {c.name for c in client.list_collections()} == {
            collection_name(db.pack_name), lobby_index}
        assert db.search([people["person2"][2]]).results[0].faces[0].identity is None
        assert lobby.search([people["person2"][2]], scoring="best").results[0].faces[0].identity == "alice"
        assert db.check().clean and lobby.check().clean
        db.delete_collection("lobby")
        assert {c.name for c in client.list_collections()} == {collection_name(db.pack_name)}
        assert db.search([people["person1"][2]], scoring="best").results[0].faces[0].identity == "alice"


def test_a_delete_collection_killed_after_sql_is_finished_by_the_next_process(
        tmp_path: Path, people: dict[str, list[Path]]) -> None:
    """Killed between the SQL delete and the index drop: the journal still holds the face ids of a
    collection that no longer exists; the next process to open the index drops its Chroma collection."""
    import signal

    import chromadb
    from dbtools import run_process

    from facedb import FaceDB
    from facedb.index.chroma_index import collection_name

    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("keeper", people["person2"][:2])
        db.create_collection("gone")
        gone = db.collection("gone")
        gone.enroll(VICTIM, people["person1"][:2])
        doomed = collection_name(db.pack_name, gone.catalog.space)
        chroma_path = db.settings.chroma_path

    def index_names() -> set[str]:
        client = chromadb.PersistentClient(path=str(chroma_path))
        try:
            return {c.name for c in client.list_collections()}
        finally:
            client.close()

    assert doomed in index_names()
    proc = run_process(home, "collections", "delete", "gone", "--yes",
                       env={"FACEDB_CRASH_AT": "delete_collection.after_sql"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert doomed in index_names()  # the kill came before the index drop
    with FaceDB(home=home, workers=1) as db:
        assert [c.name for c in db.collections()] == ["default"]
        with db.hold():  # opening the index replays the journal
            pass
        with db.catalog.session() as s:
            from sqlalchemy import func, select

            from facedb.catalog.models import PendingDelete

            assert s.scalar(select(func.count()).select_from(PendingDelete)) == 0
        assert db.check().clean
    assert doomed not in index_names() and collection_name(db.pack_name) in index_names()
