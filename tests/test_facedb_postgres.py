"""``FaceDB(home=..., db_url=postgresql+psycopg://...)``: the catalog on a real PostgreSQL
server (the index stays embedded Chroma in the home) enrolls, searches, verifies, renames,
deletes, checks, vacuums and reindexes real face photos exactly like the SQLite catalog does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dbtools import run_cli
from PIL import Image, ImageOps
from sqlalchemy import create_engine, text

from facedb import FaceDB
from facedb.errors import UnavailableError
from facedb.evaluation.servers import PostgresCluster

pytestmark = pytest.mark.slow  # a real PostgreSQL server


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, face_photo_paths: list[Path]) -> dict[str, Any]:
    """Enrollment folders (one person per real photo) and a mirrored probe of each person."""
    root = tmp_path_factory.mktemp("pg_photos")
    people = {}
    probes = {}
    for i, src in enumerate(face_photo_paths[:8]):
        # Byte order ("Bob" < "alice") differs from a linguistic one ("alice" < "Bob" < "émile").
        name = ("Bob", "alice", "émile", "Zoë")[i % 4] + f" {i:02d}"
        d = root / "people" / name
        d.mkdir(parents=True)
        with Image.open(src) as im:
            rgb = im.convert("RGB")
            rgb.save(d / "a.png")
            probe = root / "probes" / f"{i:02d}.png"
            probe.parent.mkdir(exist_ok=True)
            ImageOps.mirror(rgb).save(probe)
        people[name] = d
        probes[name] = probe
    return {"root": root / "people", "people": people, "probes": probes}


def _normalise(obj: Any) -> Any:
    """Drop what legitimately differs between two homes: timestamps and the home's own path."""
    if isinstance(obj, dict):
        return {k: _normalise(v) for k, v in obj.items() if k not in ("created_at", "home", "catalog", "disk_bytes")}
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    if isinstance(obj, float):
        return round(obj, 5)
    return obj


def workflow(db: FaceDB, photos: dict[str, Any], no_face: Path) -> dict[str, Any]:
    """Everything a user does with a database, recorded as JSON-able answers."""
    out: dict[str, Any] = {}
    people, probes = photos["people"], photos["probes"]
    names = sorted(people)
    out["import"] = db.import_dir(photos["root"]).to_dict()
    first = names[0]
    out["enroll_again"] = db.enroll(first, [people[first]]).to_dict()  # same bytes: a duplicate
    out["enroll_other"] = db.enroll(names[1], [people[first] / "a.png"]).to_dict()  # enrolled_as_other
    out["enroll_no_face"] = db.enroll(names[1], [no_face]).to_dict()
    out["subjects"] = [s.to_dict() for s in db.subjects()]
    out["search"] = db.search([probes[n] for n in names], k=3, reference=True).to_dict()
    out["search_by_face"] = db.search([probes[names[2]]], k=2, by="face").to_dict()
    out["verify"] = db.verify(probes[names[3]], names[3]).to_dict()
    out["verify_other"] = db.verify(probes[names[3]], names[4]).to_dict()
    db.rename(names[5], "Renamed Ünal")
    out["show"] = db.show("Renamed Ünal").to_dict()
    out["search_renamed"] = db.search([probes[names[5]]], k=1).to_dict()
    out["failures"] = [f.to_dict() for f in db.failures()]
    out["delete"] = db.delete(names[0]).to_dict()
    out["search_deleted"] = db.search([probes[names[0]]], k=3).to_dict()
    out["check"] = db.check().to_dict()
    out["stats"] = db.stats().to_dict()
    out["vacuum_ran"] = sorted(db.vacuum().to_dict())
    out["after_vacuum"] = db.search([probes[n] for n in names[1:]], k=1).to_dict()
    out["reindex"] = db.reindex().to_dict()
    out["after_reindex"] = db.search([probes[n] for n in names[1:]], k=1).to_dict()
    out["check_end"] = db.check().to_dict()
    out["packs"] = [m.to_dict() for m in db.packs()]
    return out


def test_facedb_with_the_catalog_on_postgres_matches_sqlite(tmp_path: Path, pg_url: str, photos: dict[str, Any],
                                                            no_face_photo: Path) -> None:
    with FaceDB(home=tmp_path / "lite", workers=1) as db:
        lite = workflow(db, photos, no_face_photo)
    with FaceDB(home=tmp_path / "pg", db_url=pg_url, workers=1) as db:
        assert db.catalog.engine.dialect.name == "postgresql"
        pg = workflow(db, photos, no_face_photo)

    # The catalog really is on the server: no SQLite file in the PostgreSQL home, rows on the server.
    assert not (tmp_path / "pg" / "facedb.sqlite3").exists()
    assert (tmp_path / "lite" / "facedb.sqlite3").exists()
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        n_faces = conn.execute(text("SELECT count(*) FROM faces")).scalar()
        n_subjects = conn.execute(text("SELECT count(*) FROM subjects")).scalar()
    engine.dispose()
    n = len(photos["people"])
    assert (n_faces, n_subjects) == (n - 1, n - 1)

    lite_n, pg_n = _normalise(lite), _normalise(pg)
    for key in lite_n:
        assert pg_n[key] == lite_n[key], f"{key}:\nPostgreSQL {json.dumps(pg_n[key])}\nSQLite     {json.dumps(lite_n[key])}"

    # ...and they are the right answers.
    names = sorted(photos["people"])
    assert lite["import"]["enrolled"] == n and lite["import"]["n_failed"] == 0
    assert lite["enroll_again"]["duplicates"] == 1
    assert [f["reason"] for f in lite["enroll_other"]["failed"]] == ["enrolled_as_other"]
    assert [f["reason"] for f in lite["enroll_no_face"]["failed"]] == ["no_face"]
    assert [s["name"] for s in lite["subjects"]] == names
    identities = [r["faces"][0]["identity"] for r in lite["search"]["results"]]
    assert identities == names
    assert all(r["faces"][0]["reference_agrees"] for r in lite["search"]["results"])
    assert lite["verify"]["match"] and not lite["verify_other"]["match"]
    assert lite["search_renamed"]["results"][0]["faces"][0]["identity"] == "Renamed Ünal"
    assert lite["delete"] == {"subject": names[0], "images": 1, "faces": 1}
    assert all(m["subject"] != names[0] for m in lite["search_deleted"]["results"][0]["faces"][0]["matches"])
    assert lite["search_deleted"]["results"][0]["faces"][0]["identity"] is None
    for key in ("check", "check_end"):
        assert lite[key]["clean"] and pg[key]["clean"], (lite[key], pg[key])
        assert pg[key]["catalog_faces"] == pg[key]["index_faces"] == pg[key]["reach_checked"] == n - 1
    assert lite["reindex"]["reindexed"] == n - 1 and not lite["reindex"]["failed"]
    expected = ["Renamed Ünal" if nm == names[5] else nm for nm in names[1:]]
    for key in ("after_vacuum", "after_reindex"):
        assert [r["faces"][0]["identity"] for r in pg[key]["results"]] == expected
    # timestamps: aware UTC on both
    assert lite["subjects"][0]["created_at"].endswith("+00:00")
    assert pg["subjects"][0]["created_at"].endswith("+00:00")


def test_cli_with_db_url_on_postgres(tmp_path: Path, pg_url: str, photos: dict[str, Any]) -> None:
    home = tmp_path / "home"
    name = sorted(photos["people"])[0]
    code, out, err = run_cli(home, "--db-url", pg_url, "enroll", name, str(photos["people"][name]), "--json")
    assert code == 0, err
    assert json.loads(out)["enrolled"] == 1
    code, out, err = run_cli(home, "--db-url", pg_url, "search", str(photos["probes"][name]), "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0]["faces"][0]["identity"] == name
    code, out, err = run_cli(home, "--db-url", pg_url, "stats", "--json")
    assert code == 0, err
    stats = json.loads(out)
    assert stats["catalog"].startswith("postgresql+psycopg://") and stats["subjects"] == 1
    code, out, err = run_cli(home, "--db-url", pg_url, "check", "--json")
    assert code == 0 and json.loads(out)["clean"], out + err


def test_facedb_survives_a_postgres_outage(tmp_path: Path, pg_url: str, pg_cluster: PostgresCluster,
                                           photos: dict[str, Any]) -> None:
    """PostgreSQL killed: calls fail with UnavailableError naming the catalog (503 on the server,
    exit 8 on the CLI); once it is back the same FaceDB object works without being recreated."""
    name = sorted(photos["people"])[1]
    with FaceDB(home=tmp_path / "home", db_url=pg_url, workers=1) as db:
        db.enroll(name, [photos["people"][name]])
        try:
            pg_cluster.kill()
            with pytest.raises(UnavailableError, match="catalog database .* cannot be reached"):
                db.subjects()
            with pytest.raises(UnavailableError):
                db.search([photos["probes"][name]])
            code, _, err = run_cli(tmp_path / "home", "--db-url", pg_url, "subjects")
            assert code == 8 and "cannot be reached" in err and len(err.strip().splitlines()) == 1
        finally:
            pg_cluster.start()
        assert [s.name for s in db.subjects()] == [name]
        assert db.search([photos["probes"][name]]).results[0].faces[0].identity == name
        assert db.check().clean
