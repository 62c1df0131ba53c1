"""The original tutorial's protocol on the Yale faces, through the CLI, far past its 0.9."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from dbtools import run_cli, run_json, run_process

from facedb.config import DEFAULT_PACK

pytestmark = [pytest.mark.dataset, pytest.mark.slow]


def yale_split(yale_dir: Path, seed: int) -> tuple[dict[str, list[Path]], dict[str, Path]]:
    by: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(yale_dir.iterdir()):
        if p.name.startswith("subject"):
            by[p.name.split(".")[0]].append(p)
    rng = random.Random(seed)
    probes = {s: rng.choice(files) for s, files in by.items()}
    gallery = {s: [f for f in files if f != probes[s]] for s, files in by.items()}
    return gallery, probes


@pytest.fixture(scope="module")
def yale_db(tmp_path_factory: pytest.TempPathFactory, yale_dir: Path):
    home = tmp_path_factory.mktemp("yale") / "home"
    gallery, probes = yale_split(yale_dir, seed=7)
    for subject, files in gallery.items():
        code, out, err = run_cli(home, "enroll", subject, *map(str, files), "--quiet")
        assert code == 0, err
    return home, gallery, probes


def test_precision_at_2_and_identity(yale_db) -> None:
    home, gallery, probes = yale_db
    data = run_json(home, "search", *map(str, probes.values()), "--by", "face", "-k", "2", "--reference")
    assert data["pack"] == DEFAULT_PACK and data["by"] == "face"
    hits, total = 0, 0
    for (subject, probe), res in zip(probes.items(), data["results"]):
        assert res["image"] == str(probe) and res["error"] is None
        assert len(res["faces"]) == 1, f"{probe}: expected one face"
        face = res["faces"][0]
        assert face["identity"] == subject
        assert face["reference_agrees"] is True
        hits += sum(m["subject"] == subject for m in face["matches"])
        total += len(face["matches"])
    assert total == 2 * len(probes)
    precision_at_2 = hits / total
    assert precision_at_2 >= 0.98, precision_at_2


def test_duplicates_were_skipped_by_content_hash(yale_db) -> None:
    home, gallery, _ = yale_db
    subjects = {s["name"]: s for s in run_json(home, "subjects")}
    assert set(subjects) == set(gallery)
    # The dataset has 9 byte-identical pairs; a duplicate is stored once.
    stored = sum(s["images"] for s in subjects.values())
    distinct = len({p.read_bytes() for files in gallery.values() for p in files})
    assert stored == distinct < sum(len(f) for f in gallery.values())
    again = run_json(home, "enroll", "subject05", *map(str, gallery["subject05"]))
    assert again["enrolled"] == 0 and again["duplicates"] == len(gallery["subject05"])


def test_subject_results_are_per_person(yale_db) -> None:
    home, _, probes = yale_db
    data = run_json(home, "search", str(probes["subject03"]), "-k", "5")
    matches = data["results"][0]["faces"][0]["matches"]
    names = [m["subject"] for m in matches]
    assert len(names) == 5 == len(set(names)), "one entry per subject"
    dists = [m["distance"] for m in matches]
    assert dists == sorted(dists)
    assert [m["match"] for m in matches] == [d <= data["threshold"] for d in dists]


def test_held_out_lfw_person_is_unknown(yale_db, lfw_dir: Path) -> None:
    home, _, _ = yale_db
    stranger = sorted((lfw_dir / "Aaron_Eckhart").glob("*.jpg"))[0]
    data = run_json(home, "search", str(stranger))
    face = data["results"][0]["faces"][0]
    assert face["identity"] is None
    assert all(m["match"] is False for m in face["matches"])


def test_new_process_gives_same_answers(yale_db) -> None:
    home, _, probes = yale_db
    args = ["search", *map(str, probes.values()), "-k", "3", "--json"]
    inproc = run_json(home, *args[:-1])
    proc = run_process(home, *args)
    assert proc.returncode == 0, proc.stderr.decode()
    other = json.loads(proc.stdout)
    assert other == inproc


def test_delete_then_no_probe_returns_its_faces(tmp_path: Path, yale_dir: Path) -> None:
    home = tmp_path / "home"
    gallery, probes = yale_split(yale_dir, seed=3)
    for subject in ("subject01", "subject02", "subject03"):
        assert run_cli(home, "enroll", subject, *map(str, gallery[subject]), "-q")[0] == 0
    doomed = run_json(home, "show", "subject02")
    doomed_ids = {f["face_id"] for img in doomed["images"] for f in img["faces"]}
    assert doomed_ids
    before = run_json(home, "search", str(probes["subject02"]))
    assert before["results"][0]["faces"][0]["identity"] == "subject02"

    out = run_json(home, "delete", "subject02", "--yes")
    assert out["faces"] == len(doomed_ids)
    for probe in probes.values():
        data = run_json(home, "search", str(probe), "-k", "10", "--reference")
        for face in data["results"][0]["faces"]:
            assert all(m["subject"] != "subject02" for m in face["matches"])
            assert all(m["face_id"] not in doomed_ids for m in face["matches"])
            assert face["reference_agrees"] is True
        by_face = run_json(home, "search", str(probe), "--by", "face", "-k", "50")
        assert all(m["face_id"] not in doomed_ids for f in by_face["results"][0]["faces"] for m in f["matches"])
    # Ask Chroma directly, bypassing facedb's SQL filter.
    from facedb import FaceDB

    db = FaceDB(home=home)
    with db.store.reading() as index:
        info = db.pack.info
        assert not (index.ids(info) & doomed_ids)
        vec = np.stack([f.embedding for f in db.detect(probes["subject02"])])
        got = {nb.face_id for row in index.query(info, vec, 100) for nb in row}
        assert got and not (got & doomed_ids)
    db.close()
    code, _, err = run_cli(home, "show", "subject02")
    assert code == 4 and "no subject named" in err
    assert run_json(home, "check")["clean"] is True
