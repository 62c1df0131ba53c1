"""Subjects scored by their template, the quality floor, and the sface-flip pack, on real faces.

A subject's template is the normalised mean of its faces' unit embeddings; search by subject
ranks every template exactly (brute force), and the catalog keeps the templates in step with the
faces in the same transactions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dbtools import run_cli, run_json
from facephotos import make_face_variants
from PIL import Image, ImageFilter


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("people"), n_variants=4)


@pytest.fixture
def db(tmp_path: Path, people: dict[str, list[Path]]) -> Any:
    from facedb import FaceDB

    db = FaceDB(home=tmp_path / "home", workers=1)
    for name in ("person1", "person2", "person3"):
        assert db.enroll(name, people[name][:3]).enrolled == 3
    yield db
    db.close()


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_template_distance_is_to_the_mean_of_all_faces(db: Any, people: dict[str, list[Path]]) -> None:
    probe = people["person2"][3]  # not enrolled
    rep = db.search([probe], k=3, reference=True)
    assert rep.scoring == "template"
    face = rep.results[0].faces[0]
    assert face.identity == "person2" and face.reference_agrees is True
    # Independently: the subject's faces from the catalog, the probe's embedding from the engine.
    sid = db.catalog.subject_id("person2")
    ids, mat = db.catalog.embeddings(db.pack_name, subject_id=sid)
    v = db.detect(probe)[0].embedding
    expected = 1.0 - float(_unit(mat.astype(np.float64).sum(axis=0)) @ v)
    best = face.matches[0]
    assert best.subject == "person2" and best.distance == pytest.approx(expected, abs=2e-6)
    closest = 1.0 - mat @ v
    assert best.face_id == int(ids[int(np.argmin(closest))])
    assert best.face_distance == pytest.approx(float(closest.min()), abs=2e-6)
    assert [m.subject for m in face.matches] == sorted((m.subject for m in face.matches),
                                                      key=lambda s: [m.distance for m in face.matches
                                                                     if m.subject == s][0])
    assert face.quality is not None and {"det_score", "eye_px", "blur", "raw_norm"} <= set(face.quality)
    # The closest-face view is still there, through the face index.
    by_best = db.search([probe], k=3, scoring="best", reference=True).results[0].faces[0]
    assert by_best.identity == "person2" and by_best.reference_agrees is True
    assert by_best.matches[0].distance == pytest.approx(float(closest.min()), abs=2e-6)


def test_templates_follow_every_write(db: Any, people: dict[str, list[Path]]) -> None:
    """Enroll, delete, rename, reindex: the stored templates stay the sums of the indexed faces."""
    assert db.catalog.stale_templates(db.pack_name) == []
    db.enroll("person1", people["person1"][3:])
    db.rename("person3", "Person Three")
    db.delete("person2")
    assert db.catalog.stale_templates(db.pack_name) == []
    assert db.search([people["person2"][3]]).results[0].faces[0].identity is None
    assert db.search([people["person3"][3]]).results[0].faces[0].identity == "Person Three"
    rep = db.reindex()
    assert rep.reindexed == 7 and not rep.failed
    assert db.catalog.stale_templates(db.pack_name) == []
    assert db.check().clean


def test_a_search_sees_what_another_process_wrote(tmp_path: Path, db: Any, people: dict[str, list[Path]]) -> None:
    """The template cache reads the catalog's changes at each search (here a second FaceDB on
    the same home stands for another process)."""
    from facedb import FaceDB

    assert db.search([people["person4"][3]]).results[0].faces[0].identity is None
    other = FaceDB(home=db.settings.home, workers=1)
    try:
        other.enroll("person4", people["person4"][:3])
        assert db.search([people["person4"][3]]).results[0].faces[0].identity == "person4"
        other.delete("person4")
    finally:
        other.close()
    assert db.search([people["person4"][3]]).results[0].faces[0].identity is None


def test_check_finds_a_stale_template_and_repair_recomputes_it(db: Any, people: dict[str, list[Path]]) -> None:
    from facedb.catalog.models import SubjectTemplate

    sid = db.catalog.subject_id("person1")
    with db.catalog.session() as s:
        row = s.get(SubjectTemplate, (sid, db.pack_name))
        row.vector = np.zeros(128, np.float32).tobytes()  # damaged behind facedb's back
    report = db.check()
    assert report.stale_templates == [sid] and not report.clean
    fixed = db.check(repair=True)
    assert fixed.repaired and any("recomputed 1 template" in r for r in fixed.repairs)
    assert db.check().clean
    assert db.search([people["person1"][3]]).results[0].faces[0].identity == "person1"


def test_a_database_from_before_templates_gets_them(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    """Migration 0003 computes the templates of faces enrolled before it."""
    from alembic import command
    from alembic.config import Config

    from facedb import FaceDB
    from facedb.catalog.database import MIGRATIONS_DIR, SCHEMA_HEAD

    home = tmp_path / "home"
    with FaceDB(home=home, workers=1) as db:
        db.enroll("person1", people["person1"][:3])
        url = db.settings.db_url
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url)
    command.downgrade(cfg, "0002")  # as an older facedb left it: no templates
    with FaceDB(home=home, workers=1) as db:
        assert db.catalog.schema_revision() == SCHEMA_HEAD
        assert db.catalog.stale_templates(db.pack_name) == []
        assert db.search([people["person1"][3]]).results[0].faces[0].identity == "person1"
        assert db.check().clean


def test_the_quality_floor_refuses_a_badly_blurred_face(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    blurred = tmp_path / "blurred.jpg"
    with Image.open(people["person5"][0]) as im:
        im.filter(ImageFilter.GaussianBlur(6)).save(blurred, quality=95)
    code, out, err = run_cli(home, "enroll", "person5", str(blurred), "--json")
    rep = json.loads(out)["subjects"][0]
    if rep["enrolled"] == 0 and not rep["failed"]:
        pytest.skip("the blurred photo's face is not detected at all")
    assert code == 3 and [f["reason"] for f in rep["failed"]] == ["low_quality"], (out, err)
    assert "blur" in rep["failed"][0]["message"]
    assert run_json(home, "failures", "--reason", "low_quality")[0]["reason"] == "low_quality"
    kept = run_json(home, "enroll", "person5", str(blurred), "--min-quality", "off")
    assert kept["enrolled"] == 1
    strict = run_cli(home, "enroll", "person6", str(people["person6"][0]), "--min-quality", "eye_px=1000", "--json")
    assert strict[0] == 3 and json.loads(strict[1])["subjects"][0]["failed"][0]["reason"] == "low_quality"
    bad = run_cli(home, "enroll", "person6", str(people["person6"][0]), "--min-quality", "eye_px")
    assert bad[0] == 2 and "name=value" in bad[2]  # a usage error, naming the option


def test_new_databases_use_sface_flip_and_old_ones_keep_sface(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    from facedb import FaceDB
    from facedb.analysis.engines import load_engine

    plain, flip = load_engine("sface"), load_engine("sface-flip")
    assert plain.info.fingerprint != flip.info.fingerprint and plain.info.dim == flip.info.dim
    from facedb.analysis import imaging

    pixels = imaging.load(people["person1"][0]).pixels
    a, b = plain.analyze(pixels, max_faces=1)[0].embedding, flip.analyze(pixels, max_faces=1)[0].embedding
    assert 0.9 < float(a @ b) < 0.9999, "the flip embedding is a different vector of the same face"
    with FaceDB(home=tmp_path / "new", workers=1) as db:
        assert db.pack_name == "sface-flip"
    with FaceDB(home=tmp_path / "old", pack="sface", workers=1) as db:
        db.enroll("person1", people["person1"][:1])
    with FaceDB(home=tmp_path / "old", workers=1) as db:  # no --pack: the pack it was made with
        assert db.pack_name == "sface"
        assert db.search([people["person1"][1]]).results[0].faces[0].identity == "person1"


class _Changes:
    """The one catalog call the cache makes, over a list of (subject, sum or None, seq) rows."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, np.ndarray | None, int]] = []

    def template_changes(self, model: str, after_seq: int) -> list[tuple[int, np.ndarray | None, int]]:
        latest: dict[int, tuple[int, np.ndarray | None, int]] = {}
        for row in self.rows:
            latest[row[0]] = row
        return sorted((r for r in latest.values() if r[2] > after_seq), key=lambda r: r[2])


def test_the_template_cache_is_exact_through_growth_updates_and_removals() -> None:
    from facedb.index.templates import TemplateCache

    rng = np.random.default_rng(11)
    changes = _Changes()
    cache = TemplateCache(changes, "sface-flip")  # type: ignore[arg-type]
    truth: dict[int, np.ndarray] = {}
    seq = 0
    for _step in range(6):  # 6 rounds of new subjects (past the first capacity), updates, removals
        for _ in range(700):
            seq += 1
            sid = int(rng.integers(1, 4000))
            if sid in truth and rng.random() < 0.2:
                truth.pop(sid)
                changes.rows.append((sid, None, seq))
            else:
                v = rng.standard_normal(128).astype(np.float32) * 3
                truth[sid] = v / np.linalg.norm(v)
                changes.rows.append((sid, v, seq))
        cache.refresh()
        assert len(cache) == len(truth)
        probes = rng.standard_normal((5, 128)).astype(np.float32)
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        ids = np.array(sorted(truth))
        mat = np.stack([truth[i] for i in ids])
        for probe, got in zip(probes, cache.query(probes, 10)):
            d = 1.0 - mat @ probe
            want = ids[np.argsort(d, kind="stable")[:10]]
            assert [sid for sid, _ in got] == list(want)
            assert np.allclose([dist for _, dist in got], np.sort(d)[:10], atol=1e-5)
