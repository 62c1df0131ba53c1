"""``facedb discover`` on real faces: the Yale people are each one cluster and never merged,
enrolled people are named as search names them, every face is in exactly one cluster, and the
CLI answers the same directly and through the owner's server (the thin client and the route)."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from facedb.api import FaceDB
from facedb.cli import EXIT_PARTIAL, EXIT_USAGE, cli
from facedb.evaluation.servers import FacedbServer


def person(image: str) -> str:
    """Yale's identity: the file name before the first dot (``subject07.happy`` -> ``subject07``)."""
    return Path(image).name.split(".")[0]


def check_contract(d: dict[str, Any]) -> None:
    """Every face in exactly one cluster; sizes, ids and representatives consistent."""
    seen: Counter[tuple[str, tuple[float, ...]]] = Counter()
    assert [c["id"] for c in d["clusters"]] == list(range(1, len(d["clusters"]) + 1))
    for c in d["clusters"]:
        assert c["size"] == len(c["faces"]) >= 1
        assert c["representative"] in c["faces"]
        for f in c["faces"]:
            assert set(f) >= {"image", "bbox", "quality", "frame_s"} and f["frame_s"] is None
            seen[(f["image"], tuple(f["bbox"]))] += 1
    assert all(n == 1 for n in seen.values())
    assert d["faces"] == sum(c["size"] for c in d["clusters"]) == len(seen)


@pytest.fixture(scope="module")
def four_people(yale_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every photo of Yale's subjects 01-04 (43 files: subject01 has no centerlight), in a sub-folder too."""
    out = tmp_path_factory.mktemp("four")
    for p in sorted(yale_dir.glob("subject0[1-4].*")):
        dest = out / ("more" if person(p.name) == "subject04" else "") / p.name
        dest.parent.mkdir(exist_ok=True)
        shutil.copyfile(p, dest)
    return out


def test_yale_nobody_enrolled_each_person_is_one_cluster_never_merged(yale_dir: Path, tmp_path: Path) -> None:
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        rep = db.discover([yale_dir])
        assert db.subjects() == []  # read-only
    d = rep.to_dict()
    check_contract(d)
    assert not rep.failed and rep.faces == 164
    people_of = [{person(f.image) for f in c.faces} for c in rep.clusters]
    assert all(len(p) == 1 for p in people_of), people_of  # never two people in one cluster
    assert sorted(p for (p,) in people_of) == [f"subject{i:02d}" for i in range(1, 16)]  # each one cluster
    assert all(c.subject is None for c in rep.clusters)
    sizes = [c.size for c in rep.clusters]
    assert sizes == sorted(sizes, reverse=True)


def test_enrolled_people_are_named_as_search_names_them(four_people: Path, tmp_path: Path) -> None:
    photos = sorted(p for p in four_people.rglob("subject*") if p.is_file())
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        db.enroll("Ann", [p for p in photos if person(p.name) == "subject02"][:3])
        rep = db.discover([four_people])
        search = db.search(photos, k=1)
    named = {(r.image, tuple(f.bbox)): f.identity for r in search.results for f in r.faces}
    check_contract(rep.to_dict())
    assert rep.clusters[0].subject == "Ann"
    for c in rep.clusters:
        for f in c.faces:
            assert named[(f.image, tuple(f.bbox))] == c.subject  # the same name search gives, or None
        if c.subject is None:
            assert len({person(f.image) for f in c.faces}) == 1
            assert all(f.distance is None for f in c.faces)
    assert {person(f.image) for f in rep.clusters[0].faces} == {"subject02"}
    assert sum(c.subject is None for c in rep.clusters) == 3  # subjects 01, 03, 04


def test_cli_direct_and_through_the_owners_server_answer_the_same(four_people: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    direct = runner.invoke(cli, ["--home", str(home), "discover", str(four_people), "--json"])
    assert direct.exit_code == 0, direct.output
    d = json.loads(direct.output)
    check_contract(d)
    assert len(d["clusters"]) == 4 and d["faces"] == 43
    text = runner.invoke(cli, ["--home", str(home), "discover", str(four_people)])
    assert text.exit_code == 0 and "4 clusters" in text.output and "#1" in text.output
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    partial = runner.invoke(cli, ["--home", str(home), "discover", str(four_people), str(bad), "--json"])
    assert partial.exit_code == EXIT_PARTIAL
    p = json.loads(partial.output)
    assert [(f["path"], f["reason"]) for f in p["failed"]] == [(str(bad), "not_an_image")]
    assert p["clusters"] == d["clusters"]
    usage = runner.invoke(cli, ["--home", str(home), "discover", str(four_people), "--cluster-threshold", "1.5"])
    assert usage.exit_code == EXIT_USAGE and "--cluster-threshold" in usage.output
    with FacedbServer(home, workers=1):  # the CLI now goes through the server's socket (Client.discover)
        served = runner.invoke(cli, ["--home", str(home), "discover", str(four_people), str(bad), "--json"])
        # Saved through the server: the owner's files can be enrolled from the run, then it is forgotten.
        saved = runner.invoke(cli, ["--home", str(home), "discover", str(four_people), "--save", "trip", "--json"])
        enrolled = runner.invoke(cli, ["--home", str(home), "enroll-cluster", "trip", "2", "Eve", "--json"])
        forgot = runner.invoke(cli, ["--home", str(home), "discover", "--forget", "trip", "--json"])
    assert served.exit_code == EXIT_PARTIAL, served.output
    s = json.loads(served.output)
    assert s == p
    assert saved.exit_code == 0 and json.loads(saved.output)["run"] == "trip", saved.output
    assert enrolled.exit_code == 0, enrolled.output
    e = json.loads(enrolled.output)
    assert e["subject"] == "Eve" and e["enrolled"] + e["duplicates"] == d["clusters"][1]["size"]
    assert forgot.exit_code == 0 and json.loads(forgot.output)["faces"] == 43


def _file_bytes(home: Path) -> bytes:
    """Every byte of the home's catalog files (the SQLite file and its journals)."""
    return b"".join(p.read_bytes() for p in sorted(home.glob("*.sqlite*")) if p.is_file())


def test_a_saved_run_enrolls_a_cluster_and_forget_erases_it(four_people: Path, tmp_path: Path) -> None:
    from facedb.catalog.models import DiscoverFace, DiscoverRun
    from facedb.errors import AlreadyExistsError, NotFoundError

    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        rep = db.discover([four_people], save="trip")
        assert rep.run == "trip" and rep.to_dict()["run"] == "trip"
        with pytest.raises(AlreadyExistsError):
            db.discover([four_people / "subject02.happy"], save="trip")
        with db.catalog.session() as s:
            stored = [(int(c), bytes(e)) for c, e in s.query(DiscoverFace.cluster, DiscoverFace.embedding)]
            assert s.query(DiscoverFace).count() == rep.faces == 43
        # The cluster of subject03 becomes a subject through enrollment (duplicates skipped).
        c3 = next(c for c in rep.clusters if {person(f.image) for f in c.faces} == {"subject03"})
        enrolled = db.enroll_cluster("trip", c3.id, "Carol")
        assert enrolled.subject == "Carol" and not enrolled.failed
        assert enrolled.enrolled + enrolled.duplicates == c3.size and enrolled.duplicates == 1  # .normal == .noglasses
        probe = next(p for p in sorted(four_people.glob("subject03.*")))
        assert db.search([probe], k=1).results[0].faces[0].identity == "Carol"
        with pytest.raises(NotFoundError):
            db.enroll_cluster("trip", 99, "Nobody")
        # A run of bytes: nothing facedb may reopen, so its clusters cannot be enrolled, only reported.
        data = (four_people / "subject01.happy").read_bytes()
        db.discover([data], save="sent")
        sent = db.enroll_cluster("sent", 1, "Ann")
        assert sent.enrolled == 0 and [f.reason for f in sent.failed] == ["not_on_disk"]
        audited = [e for e in db.audit() if e.action == "discover"]
        assert (audited[0].images, audited[0].faces, audited[0].outcome) == (43, 43, "ok")
        assert audited[0].detail == f"{len(rep.clusters)} clusters of 43 faces saved"  # no name of anyone
        gone = db.forget_run("trip")
        assert (gone.run, gone.faces, gone.clusters) == ("trip", 43, len(rep.clusters))
        db.forget_run("sent")
        with pytest.raises(NotFoundError):
            db.forget_run("trip")
        with db.catalog.session() as s:
            assert s.query(DiscoverFace).count() == 0 and s.query(DiscoverRun).count() == 0
    left = _file_bytes(home)
    assert left and not [c for c, e in stored if c != c3.id and e in left]  # no byte left on disk
    # (Carol's faces are enrolled now: the same photos give the same vectors, rightly stored.)


def test_runs_belong_to_their_collection_and_leave_with_it(four_people: Path, tmp_path: Path) -> None:
    from facedb.catalog.models import DiscoverFace
    from facedb.errors import NotFoundError

    with FaceDB(home=tmp_path / "home", workers=1) as db:
        db.create_collection("lobby")
        lobby = db.collection("lobby")
        lobby.discover([four_people / "subject01.happy"], save="door")
        with pytest.raises(NotFoundError):
            db.forget_run("door")  # not the default collection's
        db.delete_collection("lobby")
        with db.catalog.session() as s:
            assert s.query(DiscoverFace).count() == 0


def test_cli_save_enroll_cluster_and_forget(four_people: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    saved = runner.invoke(cli, ["--home", str(home), "discover", str(four_people), "--save", "trip", "--json"])
    assert saved.exit_code == 0, saved.output
    d = json.loads(saved.output)
    assert d["run"] == "trip"
    first = d["clusters"][0]
    res = runner.invoke(cli, ["--home", str(home), "enroll-cluster", "trip", str(first["id"]), "Dora", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["enrolled"] >= 1
    assert runner.invoke(cli, ["--home", str(home), "discover", "--forget", "trip"]).exit_code == 0
    again = runner.invoke(cli, ["--home", str(home), "discover", "--forget", "trip"])
    assert again.exit_code == 4 and "no saved discover run" in again.output
    assert runner.invoke(cli, ["--home", str(home), "discover"]).exit_code == EXIT_USAGE
