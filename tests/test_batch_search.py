"""Searching many files at once: worker processes give the same answers as one process,
and a bad file fails alone."""
from __future__ import annotations

from pathlib import Path

import pytest
from facephotos import make_face_variants

from facedb import FaceDB
from facedb.analysis.pipeline import MIN_POOL_ITEMS


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A home with person1..person6 enrolled from one crop each, and 7 distinct files per
    person (42 probes: enough for the worker pool) plus two bad files in the middle."""
    work = tmp_path_factory.mktemp("batch")
    people = make_face_variants(work / "faces", n_variants=7)
    home = work / "home"
    with FaceDB(home=home, workers=1) as db:
        for name, paths in people.items():
            assert db.enroll(name, [paths[0]]).enrolled == 1
    probes = [p for paths in people.values() for p in paths[1:]] + [people["person1"][0]]
    (work / "notes.txt").write_text("not an image")
    probes[5:5] = [work / "notes.txt", work / "missing.jpg"]
    assert len(probes) >= MIN_POOL_ITEMS
    return home, probes


def _answers(home: Path, probes: list[Path], workers: int) -> list[tuple]:
    with FaceDB(home=home, workers=workers) as db:
        rep = db.search([str(p) for p in probes], k=2)
    return [(r.image, r.reason, [(f.identity, [(m.subject, m.face_id, m.distance) for m in f.matches])
                                 for f in r.faces]) for r in rep.results]


def test_pooled_batch_search_matches_one_process(gallery: tuple[Path, list[Path]]) -> None:
    home, probes = gallery
    pooled = _answers(home, probes, workers=2)
    serial = _answers(home, probes, workers=1)
    assert [a[0] for a in pooled] == [str(p) for p in probes]  # input order kept
    assert [(a[0], a[1]) for a in pooled] == [(a[0], a[1]) for a in serial]
    for (img, _, faces_p), (_, _, faces_s) in zip(pooled, serial):
        assert len(faces_p) == len(faces_s), img
        for (ident_p, m_p), (ident_s, m_s) in zip(faces_p, faces_s):
            assert ident_p == ident_s, img
            assert [m[:2] for m in m_p] == [m[:2] for m in m_s], img
            assert all(abs(a[2] - b[2]) < 1e-4 for a, b in zip(m_p, m_s)), img


def test_batch_search_names_every_variant_and_fails_bad_files_alone(gallery: tuple[Path, list[Path]]) -> None:
    home, probes = gallery
    with FaceDB(home=home, workers=2) as db:
        rep = db.search([str(p) for p in probes], k=1)
    by_image = {r.image: r for r in rep.results}
    assert by_image[str(probes[5])].reason == "not_an_image"
    assert by_image[str(probes[6])].reason == "not_found"
    named = 0
    for p in probes:
        r = by_image[str(p)]
        if r.reason:
            continue
        person = p.name.split("_")[0]
        assert r.faces and r.faces[0].identity == person, (p.name, r.faces[0].matches if r.faces else None)
        named += 1
    assert named == len(probes) - 2
