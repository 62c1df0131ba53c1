"""Single faces, on real faces (the crops of insightface's t1.jpg, several photos of each person):
``faces list`` (each face and its distance to the subject's template), ``faces remove`` (gone
from SQL and from the index at once, journaled like a delete, crash-safe), ``faces move``
(searches name the new subject, the index metadata too), ``merge``, ``search --face-id`` (the
face itself is left out), through the Python API, the CLI and HTTP."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from crashtools import run_facedb
from facephotos import make_face_variants
from fastapi.testclient import TestClient
from pydantic import TypeAdapter
from sqlalchemy import func, select

from facedb.api import FaceDB
from facedb.catalog.models import AuditEntry, Face, Image, PendingDelete, SubjectTemplate
from facedb.cli import cli
from facedb.contract import faces as f
from facedb.errors import NotFoundError, UsageError
from facedb.server.app import create_app


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("people"), n_variants=4)


@pytest.fixture
def db(tmp_path: Path, people: dict[str, list[Path]]) -> Iterator[FaceDB]:
    """person1 has 3 photos of person1 and, by mistake, one of person2; person2 and person3 have 3."""
    db = FaceDB(home=tmp_path / "home", workers=1)
    assert db.enroll("person1", [*people["person1"][:3], people["person2"][3]]).enrolled == 4
    for name in ("person2", "person3"):
        assert db.enroll(name, people[name][:3]).enrolled == 3
    yield db
    db.close()


def _ids(db: FaceDB, subject: str) -> list[int]:
    return [x.face_id for x in db.faces(subject).faces]


def _wrong(db: FaceDB, people: dict[str, list[Path]]) -> int:
    """The id of person2's photo enrolled as person1."""
    return next(x.face_id for x in db.faces("person1").faces if x.image == str(people["person2"][3]))


def _sql_faces(db: FaceDB) -> dict[int, int]:
    with db.catalog.session() as s:
        return {int(i): int(sid) for i, sid in s.execute(select(Face.id, Face.subject_id))}


def _index_meta(db: FaceDB, ids: list[int]) -> dict[int, dict[str, Any]]:
    with db.store.writing() as index:
        col = index.collection(db.pack.contract(), create=False)
        got = col.get(ids=[str(i) for i in ids], include=["metadatas"])
    return {int(i): m for i, m in zip(got["ids"], got["metadatas"])}


# -- list --------------------------------------------------------------------------------------

def test_list_shows_every_face_with_its_distance_to_the_template(db: FaceDB, people: dict[str, list[Path]]) -> None:
    rep = db.faces("person1")
    assert rep.subject == "person1" and rep.template_faces == 4 and len(rep.faces) == 4
    assert [x.face_id for x in rep.faces] == sorted(x.face_id for x in rep.faces)
    # The distance is to the normalised mean of the subject's faces, computed here from SQL's embeddings.
    ids, mat = db.catalog.embeddings(db.pack_name, subject_id=db.catalog.subject_id("person1"))
    template = mat.sum(axis=0)
    template /= np.linalg.norm(template)
    expected = dict(zip(ids.tolist(), (1.0 - mat @ template).tolist()))
    for x in rep.faces:
        assert x.distance is not None and x.distance == pytest.approx(expected[x.face_id], abs=1e-5)
        assert x.indexed and x.pack == db.pack_name and x.quality and x.quality["eye_px"] > 0
        assert len(x.bbox) == 4 and x.bbox[2] > x.bbox[0] and x.score > 0.5
    # The photo of someone else is the farthest from the template, by a wide margin.
    wrong = _wrong(db, people)
    far = max(rep.faces, key=lambda x: x.distance or 0.0)
    assert far.face_id == wrong
    others = [x.distance or 0.0 for x in rep.faces if x.face_id != wrong]
    assert max(others) < 0.25 < (far.distance or 0.0), [x.distance for x in rep.faces]
    # The JSON shape.
    d = rep.to_dict()
    assert set(d["faces"][0]) >= {"face_id", "image", "bbox", "quality", "distance"}
    assert f.FacesReport.from_dict(d) == rep


def test_list_of_an_unknown_subject_is_not_found(db: FaceDB) -> None:
    with pytest.raises(NotFoundError):
        db.faces("nobody")


# -- remove --------------------------------------------------------------------------------------

def test_remove_makes_the_face_unsearchable_at_once_and_gone_from_both_stores(
        db: FaceDB, people: dict[str, list[Path]]) -> None:
    wrong = _wrong(db, people)
    probe = people["person2"][3]  # the very photo that was enrolled as person1
    before = db.search([probe], by="face", k=3).results[0].faces[0].matches
    assert before[0].face_id == wrong and before[0].distance < 0.01
    assert wrong in db.index_face_ids()

    rep = db.remove_faces([wrong])
    assert (rep.face_ids, rep.faces, rep.images, rep.subjects) == ([wrong], 1, 1, {"person1": 1})

    after = db.search([probe], by="face", k=10).results[0].faces[0].matches
    assert wrong not in [m.face_id for m in after]
    assert db.search([probe]).results[0].faces[0].identity == "person2"  # person1's template is person1 again
    # Both stores: no SQL row (face, image, journal), no vector in the index.
    assert wrong not in _sql_faces(db) and wrong not in db.index_face_ids()
    with db.catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(Image).where(Image.path == str(probe))) == 0
        assert s.scalar(select(func.count()).select_from(PendingDelete)) == 0
        n = s.scalar(select(SubjectTemplate.n_faces).where(SubjectTemplate.subject_id == db.catalog.subject_id("person1")))
    assert n == 3 and db.faces("person1").template_faces == 3
    assert db.check().clean
    # The photo may be enrolled again (its bytes are no longer known), under the right name.
    assert db.enroll("person2", [probe]).enrolled == 1
    audit = [e for e in db.audit() if e.action == "faces_remove"]
    assert audit and audit[-1].faces == 1 and audit[-1].subject == "person1"


def test_remove_is_all_or_nothing(db: FaceDB) -> None:
    mine = _ids(db, "person3")
    with pytest.raises(NotFoundError, match="999999"):
        db.remove_faces([mine[0], 999999])
    assert _ids(db, "person3") == mine and set(mine) <= db.index_face_ids()
    with pytest.raises(UsageError):
        db.remove_faces([])


def test_a_subject_whose_last_face_is_removed_stays_empty(db: FaceDB, people: dict[str, list[Path]]) -> None:
    rep = db.remove_faces(_ids(db, "person3"))
    assert rep.faces == 3 and rep.images == 3
    assert {s.name: s.faces for s in db.subjects()}["person3"] == 0
    assert db.faces("person3").faces == [] and db.faces("person3").template_faces == 0
    hit = db.search([people["person3"][3]], k=5).results[0].faces[0]
    assert hit.identity is None and "person3" not in [m.subject for m in hit.matches]
    assert db.check().clean


def test_remove_with_vacuum_reports_the_rewrite(db: FaceDB) -> None:
    rep = db.remove_faces(_ids(db, "person3")[:1], vacuum=True)
    assert rep.vacuum is not None and rep.vacuum.bytes_after > 0
    assert "vacuum" in rep.to_dict()


# -- move ------------------------------------------------------------------------------------------

def test_move_changes_who_a_search_names(db: FaceDB, people: dict[str, list[Path]]) -> None:
    wrong = _wrong(db, people)
    probe = people["person2"][3]
    assert db.search([probe], scoring="best").results[0].faces[0].identity == "person1"

    rep = db.move_faces([wrong], "person2")
    assert (rep.to, rep.moved, rep.already, rep.subjects, rep.images) == ("person2", [wrong], [], {"person1": 1}, 1)

    for scoring in ("best", "template"):
        face = db.search([probe], scoring=scoring).results[0].faces[0]
        assert face.identity == "person2", scoring
    near = db.search([probe], by="face", k=1).results[0].faces[0].matches[0]
    assert (near.face_id, near.subject) == (wrong, "person2")
    assert _sql_faces(db)[wrong] == db.catalog.subject_id("person2")
    assert str(probe) in [im["path"] for im in db.show("person2").images]  # the photo moved with its face
    # The index metadata holds the new subject's id (and no name).
    assert _index_meta(db, [wrong])[wrong] == {"subject_id": db.catalog.subject_id("person2")}
    assert db.faces("person1").template_faces == 3 and db.faces("person2").template_faces == 4
    assert db.check().clean  # templates of both subjects in step with their faces
    # Moving it again to where it is changes nothing.
    again = db.move_faces([wrong], "person2")
    assert again.moved == [] and again.already == [wrong]


def test_move_to_an_unknown_subject_or_of_an_unknown_face_changes_nothing(db: FaceDB) -> None:
    mine = _ids(db, "person3")
    with pytest.raises(NotFoundError, match="nobody"):
        db.move_faces(mine[:1], "nobody")
    with pytest.raises(NotFoundError, match="999999"):
        db.move_faces([mine[0], 999999], "person2")
    assert _ids(db, "person3") == mine and db.check().clean


# -- merge -----------------------------------------------------------------------------------------

def test_merge_moves_every_face_and_deletes_the_source(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        db.enroll("P. Two", people["person2"][:2], metadata={"team": "red", "badge": 7})
        db.enroll("Person Two", people["person2"][2:], metadata={"team": "blue"})
        db.enroll("person3", people["person3"][:2])
        source_ids = _ids(db, "P. Two")
        rep = db.merge("P. Two", "Person Two")
        assert (rep.source, rep.target, rep.images, rep.faces) == ("P. Two", "Person Two", 2, 2)
        assert rep.metadata == {"team": "blue", "badge": 7}  # the target's values win
        assert [s.name for s in db.subjects()] == ["Person Two", "person3"]
        assert set(source_ids) < set(_ids(db, "Person Two")) and len(_ids(db, "Person Two")) == 4
        meta = _index_meta(db, source_ids)
        assert all(m == {"subject_id": db.catalog.subject_id("Person Two")} for m in meta.values()) and len(meta) == 2
        hit = db.search([people["person2"][0]]).results[0].faces[0]
        assert hit.identity == "Person Two" and all(m.subject != "P. Two" for m in hit.matches)
        assert db.check().clean
        # The source's history is the target's; deleting the target leaves neither name behind.
        trail = db.audit()
        assert not any(e.subject == "P. Two" for e in trail)
        assert any(e.action == "merge" and e.subject == "Person Two" for e in trail)
        db.delete("Person Two")
        with db.catalog.session() as s:
            rows = s.execute(select(AuditEntry.subject, AuditEntry.detail)).all()
        assert not any("Two" in (subj or "") or "Two" in (detail or "") for subj, detail in rows), rows
        with pytest.raises(NotFoundError):
            db.merge("nobody", "person3")
        with pytest.raises(UsageError):
            db.merge("person3", "person3")


# -- search --face-id ----------------------------------------------------------------------------

def test_search_by_face_id_finds_the_same_persons_other_faces_first(db: FaceDB) -> None:
    probe = _ids(db, "person3")[0]
    by_face = db.search_face(probe, by="face", k=4)
    assert by_face.excluded == [probe] and by_face.subject == "person3"
    ids = [m.face_id for m in by_face.matches]
    assert probe not in ids
    assert [m.subject for m in by_face.matches[:2]] == ["person3", "person3"]
    assert set(ids[:2]) == set(_ids(db, "person3")[1:3])
    assert by_face.matches[0].distance > 0.0  # never itself (distance 0)
    for scoring in ("template", "best"):
        rep = db.search_face(probe, scoring=scoring, k=3)
        assert rep.identity == "person3" and rep.matches[0].subject == "person3", scoring
        assert probe not in [m.face_id for m in rep.matches]
        assert len({m.subject for m in rep.matches}) == 3


def test_search_by_face_id_scores_its_own_subject_without_it(db: FaceDB) -> None:
    probe = _ids(db, "person3")[0]
    rep = db.search_face(probe, k=3)
    ids, mat = db.catalog.embeddings(db.pack_name, subject_id=db.catalog.subject_id("person3"))
    v = mat[list(ids).index(probe)]
    rest = mat[[i for i, x in enumerate(ids) if x != probe]].sum(axis=0)
    expected = 1.0 - float(v @ (rest / np.linalg.norm(rest)))
    own = next(m for m in rep.matches if m.subject == "person3")
    assert own.distance == pytest.approx(expected, abs=1e-5)
    # A face that is its subject's only one: its subject is not an answer at all.
    solo = db.enroll("solo", [db.faces("person3").faces[0].image.replace("_v0", "_v3")])
    assert solo.enrolled == 1
    alone = db.search_face(solo.face_ids[0], k=5)
    assert "solo" not in [m.subject for m in alone.matches]
    assert alone.identity == "person3"  # solo is another photo of person3


def test_search_by_face_id_errors(db: FaceDB) -> None:
    with pytest.raises(NotFoundError):
        db.search_face(999999)
    with pytest.raises(UsageError, match="k: input should be greater than or equal to 1, not 0"):
        db.search_face(_ids(db, "person1")[0], k=0)  # the request model's check, as over HTTP


def test_faces_of_another_collection_are_not_found_and_never_touched(db: FaceDB, people: dict[str, list[Path]]) -> None:
    db.create_collection("lobby")
    lobby = db.collection("lobby")
    lobby.enroll("person1", people["person1"][:2])
    theirs = _ids(lobby, "person1")
    mine = _ids(db, "person3")
    for call in (lambda: db.remove_faces(theirs[:1]), lambda: db.move_faces(theirs[:1], "person3"),
                 lambda: db.search_face(theirs[0]), lambda: lobby.remove_faces(mine[:1]),
                 lambda: lobby.move_faces(mine[:1], "person1")):
        with pytest.raises(NotFoundError):
            call()
    assert _ids(lobby, "person1") == theirs and _ids(db, "person3") == mine
    assert db.check().clean and lobby.check().clean
    with pytest.raises(NotFoundError):
        lobby.faces("person3")


# -- crashes: the journal finishes the write ---------------------------------------------------

@pytest.mark.slow
def test_a_remove_killed_after_sql_is_finished_by_the_next_process(tmp_path: Path,
                                                                  people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("person1", people["person1"][:3])
        victim = _ids(db, "person1")[0]
    run = run_facedb(home, ["faces", "remove", str(victim), "--yes"], crash_at="faces_remove.after_sql")
    assert run.killed, run.describe()
    with FaceDB(home=home, workers=1) as db:
        with db.catalog.session() as s:  # before anything replays: journaled, not in SQL
            assert s.scalar(select(func.count()).select_from(PendingDelete)) == 1
        assert victim not in db.index_face_ids()  # the replay deleted the vector
        assert victim not in _sql_faces(db) and db.check().clean
        near = db.search([people["person1"][0]], by="face", k=3).results[0].faces[0].matches
        assert victim not in [m.face_id for m in near]


@pytest.mark.slow
def test_a_move_killed_after_sql_is_finished_by_the_next_process(tmp_path: Path,
                                                                people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("person1", people["person1"][:3])
        db.enroll("person2", people["person2"][:2])
        moving = _ids(db, "person1")[:2]
    run = run_facedb(home, ["faces", "move", *map(str, moving), "--to", "person2"], crash_at="faces_move.after_sql")
    assert run.killed, run.describe()
    with FaceDB(home=home, workers=1) as db:
        assert db.search([people["person1"][0]], by="face", k=1).results[0].faces[0].matches[0].subject == "person2"
        meta = _index_meta(db, moving)
        assert [m for m in meta.values()] == [{"subject_id": db.catalog.subject_id("person2")}] * 2
        assert db.check().clean and db.faces("person2").template_faces == 4


# -- the CLI -----------------------------------------------------------------------------------------

def _cli(home: Path, *args: str) -> tuple[int, Any]:
    res = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    out = res.stdout.strip()
    try:
        return res.exit_code, json.loads(out) if out else None
    except ValueError:
        return res.exit_code, out


def test_cli_commands_and_exit_codes(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("person1", people["person1"][:3])
        db.enroll("person2", people["person2"][:2])
        db.enroll("dup", people["person2"][2:3])
        p1 = _ids(db, "person1")
    code, listed = _cli(home, "faces", "list", "person1", "--json")
    assert code == 0 and [x["face_id"] for x in listed["faces"]] == p1
    code, text = _cli(home, "faces", "list", "person1")
    assert code == 0 and f"face {p1[0]}" in text and "distance" in text
    assert _cli(home, "faces", "list", "nobody", "--json")[0] == 4
    code, near = _cli(home, "search", "--face-id", str(p1[0]), "--json")
    assert code == 0 and near["excluded"] == [p1[0]] and near["identity"] == "person1"
    assert _cli(home, "search", "--face-id", "999999", "--json")[0] == 4
    assert _cli(home, "search", "--face-id", str(p1[0]), str(people["person1"][0]))[0] == 2
    assert _cli(home, "search", "--face-id", str(p1[0]), "--reference")[0] == 2
    assert _cli(home, "search", "--face-id", str(p1[0]), "-k", "0")[0] == 2
    assert _cli(home, "search", "--face-id", "x")[0] == 2
    assert _cli(home, "faces", "move", str(p1[0]), "--to", "nobody", "--json")[0] == 4
    code, moved = _cli(home, "faces", "move", str(p1[0]), "--to", "person2", "--json")
    assert code == 0 and moved["moved"] == [p1[0]]
    assert _cli(home, "faces", "remove", str(p1[1]))[0] == 2  # no --yes, stdin not a terminal
    assert _cli(home, "faces", "remove", "999999", "--yes", "--json")[0] == 4
    code, removed = _cli(home, "faces", "remove", str(p1[1]), "--yes", "--json")
    assert code == 0 and removed["face_ids"] == [p1[1]]
    assert _cli(home, "merge", "dup", "person2")[0] == 2  # no --yes
    assert _cli(home, "merge", "dup", "dup", "--yes")[0] == 2
    assert _cli(home, "merge", "nobody", "person2", "--yes")[0] == 4
    code, merged = _cli(home, "merge", "dup", "person2", "--yes", "--json")
    assert code == 0 and merged["faces"] == 1
    code, subjects = _cli(home, "subjects", "--json")
    assert {s["name"]: s["faces"] for s in subjects} == {"person1": 1, "person2": 4}


# -- HTTP ----------------------------------------------------------------------------------------------

def test_http_routes_and_their_errors(db: FaceDB, people: dict[str, list[Path]]) -> None:
    read = db.create_key("r", "read").key
    write = db.create_key("w", "write").key
    db.create_collection("lobby")
    db.collection("lobby").enroll("person1", people["person1"][:1])
    rh, wh = {"Authorization": f"Bearer {read}"}, {"Authorization": f"Bearer {write}"}
    wrong = _wrong(db, people)
    with TestClient(create_app(db)) as c:
        listed = TypeAdapter(f.FacesReport).validate_python(c.get("/v1/faces", params={"subject": "person1"}, headers=rh).json())
        assert len(listed.faces) == 4
        assert c.get("/v1/faces", params={"subject": "nobody"}, headers=rh).status_code == 404
        near = TypeAdapter(f.FaceSearchReport).validate_python(c.get(f"/v1/faces/{wrong}/search", headers=rh,
                                                       params={"by": "face", "k": "2"}).json())
        assert near.excluded == [wrong] and near.matches[0].subject == "person2"
        # Writes need a write key; a refused call changes nothing.
        assert c.post("/v1/faces/remove", json={"face_ids": [wrong]}, headers=rh).status_code == 403
        assert c.post("/v1/faces/move", json={"face_ids": [wrong], "to": "person2"}, headers=rh).status_code == 403
        assert wrong in db.index_face_ids()
        res = c.post("/v1/faces/move", json={"face_ids": [wrong], "to": "nobody"}, headers=wh)
        assert res.status_code == 404 and res.json()["kind"] == "not_found"
        moved = TypeAdapter(f.MoveReport).validate_python(c.post("/v1/faces/move", json={"face_ids": [wrong], "to": "person2"},
                                                   headers=wh).json())
        assert moved.moved == [wrong]
        # A face of default is not lobby's: 404 under /v1/collections/lobby, untouched.
        res = c.post("/v1/collections/lobby/faces/remove", json={"face_ids": [wrong]}, headers=wh)
        assert res.status_code == 404 and wrong in db.index_face_ids()
        assert c.get(f"/v1/collections/lobby/faces/{wrong}/search", headers=rh).status_code == 404
        removed = TypeAdapter(f.FacesRemoveReport).validate_python(c.post("/v1/faces/remove", json={"face_ids": [wrong]},
                                                            headers=wh).json())
        assert removed.face_ids == [wrong] and wrong not in db.index_face_ids()
        assert c.get(f"/v1/faces/{wrong}/search", headers=rh).status_code == 404
        assert c.get(f"/v1/faces/{wrong}/thumbnail", headers=rh).status_code == 404
        res = c.post("/v1/merge", json={"source": "person3", "target": "person3"}, headers=wh)
        assert res.status_code == 422
        merged = TypeAdapter(f.MergeReport).validate_python(c.post("/v1/merge", json={"source": "person3", "target": "person2"},
                                                     headers=wh).json())
        assert merged.faces == 3
        assert c.post("/v1/merge", json={"source": "person3", "target": "person2"}, headers=wh).status_code == 404
    actions = {e.action for e in db.audit()}
    assert {"faces_remove", "faces_move", "merge", "search_face"} <= actions


def test_cli_and_http_answer_the_same(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    """Parity: ``faces list`` and ``search --face-id`` print the JSON the server answers."""
    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("person1", people["person1"][:3])
        db.enroll("person2", people["person2"][:3])
        probe = _ids(db, "person1")[1]
    calls = [(["faces", "list", "person1"], "/v1/faces", {"subject": "person1"})]
    for extra in ([], ["--by", "face", "-k", "4"], ["--scoring", "best", "--threshold", "0.3"]):
        params = dict(zip([a.lstrip("-") for a in extra[::2]], extra[1::2]))
        calls.append((["search", "--face-id", str(probe), *extra], f"/v1/faces/{probe}/search", params))
    local = []
    for args, _, _ in calls:
        code, out = _cli(home, *args, "--json")
        assert code == 0, out
        local.append(out)
    with FaceDB(home=home, workers=1) as db, TestClient(create_app(db)) as c:
        key = db.create_key("parity", "read").key
        for (args, path, params), mine in zip(calls, local):
            served = c.get(path, params=params, headers={"Authorization": f"Bearer {key}"})
            assert served.status_code == 200 and served.json() == mine, args


@pytest.mark.slow
def test_remove_move_and_merge_on_postgresql(tmp_path: Path, people: dict[str, list[Path]], pg_url: str) -> None:
    """The same writes with the catalog on a real PostgreSQL server (templates, journal, audit)."""
    with FaceDB(home=tmp_path / "home", db_url=pg_url, workers=1) as db:
        db.enroll("person1", [*people["person1"][:3], people["person2"][3]], metadata={"a": 1})
        db.enroll("P2", people["person2"][:2])
        db.enroll("person2", people["person2"][2:3])
        wrong = _wrong(db, people)
        assert max(db.faces("person1").faces, key=lambda x: x.distance or 0.0).face_id == wrong
        assert db.move_faces([wrong], "P2").moved == [wrong]
        assert db.search([people["person2"][3]], scoring="best").results[0].faces[0].identity == "P2"
        merged = db.merge("P2", "person2")
        assert (merged.faces, merged.images) == (3, 3)
        assert _index_meta(db, [wrong])[wrong] == {"subject_id": db.catalog.subject_id("person2")}
        gone = db.remove_faces(_ids(db, "person1")[:1])
        assert gone.faces == 1 and gone.face_ids[0] not in db.index_face_ids()
        near = db.search_face(_ids(db, "person2")[0], by="face", k=2)
        assert [m.subject for m in near.matches] == ["person2", "person2"]
        assert [(s.name, s.faces) for s in db.subjects()] == [("person1", 2), ("person2", 4)]
        assert db.check().clean


# -- what the index keeps of a subject ------------------------------------------------------------

def test_the_index_keeps_subject_ids_and_no_name(db: FaceDB, people: dict[str, list[Path]], tmp_path: Path) -> None:
    """Chroma holds each face's subject id and nothing that names it: not at enrollment, not
    after a rename or a move; a name an older facedb stored there is dropped by the relabel."""
    db.enroll("Zoë Quillfeather", people["person3"][3:])
    db.enroll("Wilhelmina Starling", people["person2"][3:])
    ids = _ids(db, "Zoë Quillfeather")
    assert _index_meta(db, ids) == {i: {"subject_id": db.catalog.subject_id("Zoë Quillfeather")} for i in ids}
    with db.store.writing() as index:  # as facedb <= 0.2 wrote it
        col = index.collection(db.pack.contract(), create=False)
        col.update(ids=[str(ids[0])], metadatas=[{"subject_id": db.catalog.subject_id("Zoë Quillfeather"),
                                                  "subject": "Zoë Quillfeather"}])
    db.rename("Zoë Quillfeather", "Yara Moonbeam")
    assert _index_meta(db, ids) == {i: {"subject_id": db.catalog.subject_id("Yara Moonbeam")} for i in ids}
    db.move_faces(ids[:1], "person2")
    assert _index_meta(db, ids[:1]) == {ids[0]: {"subject_id": db.catalog.subject_id("person2")}}
    assert db.check().clean
    db.close()
    names = (b"Wilhelmina Starling", b"Yara Moonbeam")  # never in Chroma (the legacy name was)
    for path in db.settings.chroma_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in names), f"a name is in {path}"
