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
    assert served.exit_code == EXIT_PARTIAL, served.output
    s = json.loads(served.output)
    assert s == p
