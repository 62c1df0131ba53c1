"""The catalog on PostgreSQL (SQLAlchemy + psycopg 3) behaves like the catalog on SQLite.

Every Alembic migration runs on a real PostgreSQL server (``facedb.evaluation.servers``; the tests skip
where the server binaries are absent, and fail instead under CI). The reflected schema must
equal SQLite's, and the same sequence of ``Catalog`` calls must give the same answers on both.
"""
from __future__ import annotations

import os
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, LargeBinary, String, Text, inspect, select

from facedb.catalog.database import MIGRATIONS_DIR, SCHEMA_HEAD, Catalog
from facedb.catalog.models import Base, Face, Failure, Image, Subject
from facedb.errors import AlreadyExistsError, DatabaseBusyError, NotFoundError, UnavailableError
from facedb.evaluation.servers import PostgresCluster

pytestmark = pytest.mark.slow  # a real PostgreSQL server

TABLES = {"subjects", "images", "faces", "failures", "pending_deletes", "settings", "api_keys", "audit",
          "subject_templates", "counters", "collections", "alembic_version", "discover_runs", "discover_faces"}
_GENERIC = (Boolean, DateTime, LargeBinary, JSON, Float, Integer, Text, String)


def _alembic_cfg(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _type(t: Any) -> tuple[str, int | None]:
    """A reflected column type as (generic kind, length): BYTEA and BLOB are both LargeBinary."""
    for kind in _GENERIC:
        if isinstance(t, kind):
            return kind.__name__, getattr(t, "length", None) if kind is String else None
    raise AssertionError(f"unexpected reflected type {t!r}")


def schema(cat: Catalog) -> dict[str, Any]:
    """The reflected schema in a dialect-neutral form.

    Constraint names are kept where the migrations choose them; SQLite reflects unnamed primary
    keys, foreign keys and unique constraints without a name while PostgreSQL makes one up
    (``subjects_name_key``), so only their columns are compared."""
    insp = inspect(cat.engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        uniques = insp.get_unique_constraints(table)
        constraint_names = {u["name"] for u in uniques}
        out[table] = {
            # (Defaults are not compared: SQLite's INTEGER PRIMARY KEY is its rowid and reflects none.)
            "columns": [(c["name"], _type(c["type"]), bool(c["nullable"])) for c in insp.get_columns(table)],
            "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted((tuple(fk["constrained_columns"]), fk["referred_table"],
                                    tuple(fk["referred_columns"]), fk["options"].get("ondelete"))
                                   for fk in insp.get_foreign_keys(table)),
            # PostgreSQL also lists each unique constraint as an index: keep those in "unique" only.
            "indexes": sorted((ix["name"], tuple(ix["column_names"]), bool(ix["unique"]))
                              for ix in insp.get_indexes(table) if ix["name"] not in constraint_names),
            "unique": sorted((u["name"] if u["name"] and u["name"].startswith("uq_") else None,
                              tuple(u["column_names"])) for u in uniques),
        }
    return out


@pytest.fixture()
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"


# -- migrations -------------------------------------------------------------------------------

def test_every_migration_runs_on_postgres_and_gives_sqlites_schema(pg_url: str, sqlite_url: str) -> None:
    pg, lite = Catalog(pg_url), Catalog(sqlite_url)
    try:
        assert pg.schema_revision() is None
        pg.upgrade()
        lite.upgrade()
        assert pg.schema_revision() == lite.schema_revision() == SCHEMA_HEAD
        assert set(inspect(pg.engine).get_table_names()) == TABLES
        with pg.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree on PostgreSQL: {diff}"
        assert schema(pg) == schema(lite)

        # What PostgreSQL makes of the generic types (the point of checking on a real server).
        cols = {c["name"]: c for c in inspect(pg.engine).get_columns("faces")}
        assert type(cols["embedding"]["type"]).__name__ == "BYTEA"
        assert type(cols["indexed"]["type"]).__name__ == "BOOLEAN"
        assert cols["created_at"]["type"].timezone is True  # timestamptz
        # Generated ids come from sequences (never reused); the journal's face id is always given.
        serial = {(t, c["name"]) for t in TABLES for c in inspect(pg.engine).get_columns(t)
                  if "nextval" in str(c.get("default"))}
        assert serial == {("faces", "id"), ("images", "id"), ("subjects", "id"), ("failures", "id"), ("api_keys", "id"),
                          ("audit", "id"), ("collections", "id"), ("discover_runs", "id"), ("discover_faces", "id")}
        pg.upgrade()  # idempotent
        assert pg.schema_revision() == SCHEMA_HEAD
    finally:
        pg.dispose()
        lite.dispose()


def test_each_migration_downgrades_and_upgrades_on_postgres(pg_url: str) -> None:
    """Walk every revision down to base and up again, one step at a time."""
    script = ScriptDirectory.from_config(_alembic_cfg(pg_url))
    revisions = [r.revision for r in script.walk_revisions("base", "heads")][::-1]  # oldest first
    assert revisions[-1] == SCHEMA_HEAD
    cat = Catalog(pg_url)
    try:
        for step in range(2):
            with cat.engine.begin() as conn:
                cfg = _alembic_cfg(pg_url)
                cfg.attributes["connection"] = conn
                for rev in revisions:
                    command.upgrade(cfg, rev)
                    assert MigrationContext.configure(conn).get_current_revision() == rev
                for _rev in reversed(revisions):
                    command.downgrade(cfg, "-1")
                assert MigrationContext.configure(conn).get_current_revision() is None
            assert set(inspect(cat.engine).get_table_names()) <= {"alembic_version"}, step
        cat.upgrade()
        assert cat.schema_revision() == SCHEMA_HEAD
    finally:
        cat.dispose()


# -- the same calls, the same answers ------------------------------------------------------------

def _vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


def _add_image(s: Any, cat: Catalog, subject: str, n: int, model: str = "sface", info: dict | None = None
               ) -> list[int]:
    sub = cat.subjects_by_name(s, [subject], {subject: info} if info else None)[subject]
    img = Image(subject_id=sub.id, path=f"/photos/{subject}/{n}.jpg", sha256=f"{subject}-{n}".ljust(64, "0")[:64],
                size_bytes=1000 + n, width=250, height=250, status="enrolled")
    s.add(img)
    s.flush()
    face = Face(image_id=img.id, subject_id=sub.id, model=model, x1=1.5, y1=2.25, x2=100.125, y2=120.0,
                score=0.9375, landmarks=[[1.0, 2.0], [3.5, 4.25]], dim=8,
                embedding=_vec(zlib.crc32(f"{subject}/{n}".encode())).tobytes(), indexed=False)
    s.add(face)
    s.flush()
    return [face.id]


def scenario(cat: Catalog) -> dict[str, Any]:
    """Call every public ``Catalog`` method; return what each answered (dialect-neutral)."""
    out: dict[str, Any] = {}
    assert cat.schema_revision() is None
    cat.upgrade()
    out["revision"] = cat.schema_revision()

    # settings
    out["setting_missing"] = cat.get_setting("default_pack")
    cat.set_setting("default_pack", "sface")
    cat.set_setting("pack:sface", '{"dim": 8}')
    cat.set_setting("pack:sface", '{"dim": 8, "fingerprint": "abc"}')  # overwrite (merge)
    cat.set_setting("k" * 600, "long key")  # String(600): the longest key the schema allows
    out["settings"] = [cat.get_setting("default_pack"), cat.get_setting("pack:sface"), cat.get_setting("k" * 600)]

    # subjects, images, faces; names chosen so that byte order differs from a linguistic one
    names = ["Bob", "alice", "Zoë", "émile", "Ängel", "carol", "ß", "Ünal", "dave", "a" * 256]
    ids: dict[str, list[int]] = {}
    before = datetime.now(timezone.utc)
    with cat.session() as s:
        for i, name in enumerate(names):
            ids[name] = _add_image(s, cat, name, 1, info={"rank": i, "tags": ["x", "ü"], "nested": {"f": 0.1}})
        ids["alice"] += _add_image(s, cat, "alice", 2)
        ids["alice"] += _add_image(s, cat, "alice", 3, model="buffalo_l")
        # subjects_by_name: one existing, one new, metadata merged into the existing one
        got = cat.subjects_by_name(s, ["alice", "frank", "alice"], {"alice": {"extra": True}, "frank": {"new": 1}})
        out["subjects_by_name"] = sorted((n, sorted((got[n].info or {}).items(), key=str)) for n in got)
        ids["frank"] = []
        # failures of several kinds
        s.add_all([Failure(path=f"/bad/{i}.jpg", sha256=None, subject_name=n, model="sface", reason=r, detail=f"d{i}")
                   for i, (n, r) in enumerate([("alice", "no_face"), ("alice", "corrupt_image"),
                                               ("Bob", "no_face"), (None, "no_subject"), ("frank", "too_small")])])
    after = datetime.now(timezone.utc)
    face_ids = sorted(f for v in ids.values() for f in v)
    out["face_ids"] = face_ids

    out["unindexed"] = [(f.face_id, f.embedding.tolist(), f.subject_id, f.subject)
                        for f in cat.unindexed_faces("sface")]
    out["unindexed_other"] = [f.face_id for f in cat.unindexed_faces("buffalo_l")]
    out["face_ids_before_mark"] = sorted(cat.face_ids("sface"))
    out["mark_gone"] = cat.mark_indexed([f for f in face_ids if f != ids["dave"][0]] + [88_888])
    out["unindexed_after_mark"] = [f.face_id for f in cat.unindexed_faces("sface")]
    out["count_indexed"] = cat.count_indexed("sface")
    out["for_index_some"] = [f.face_id for f in cat.faces_for_index("sface", face_ids[:3])]
    out["face_ids_sface"] = sorted(cat.face_ids("sface"))
    out["models_in_use"] = cat.models_in_use()

    hits = cat.hits(face_ids + [99_999])
    out["hits"] = sorted((h.face_id, h.subject_id, h.subject, h.image_path, h.image_id, h.indexed, h.model)
                         for h in hits.values())
    emb_ids, mat = cat.embeddings("sface")
    out["embeddings"] = (emb_ids.tolist(), mat.dtype.str, mat.shape, mat.tolist())
    all_ids, _ = cat.embeddings("sface", indexed_only=False)
    out["embeddings_all"] = all_ids.tolist()
    with cat.session() as s:
        alice = cat.subject(s, "alice")
        alice_id = alice.id
        out["subject_info"] = alice.info
        with pytest.raises(NotFoundError):
            cat.subject(s, "nobody")
        with pytest.raises(NotFoundError):
            cat.subject(s, "ALICE")  # names are case-sensitive on both
    sub_ids, sub_mat = cat.embeddings("sface", subject_id=alice_id)
    out["embeddings_alice"] = (sub_ids.tolist(), sub_mat.shape)
    out["embeddings_none"] = [a.shape for a in cat.embeddings("nope")]

    digests = [f"{n}-1".ljust(64, "0")[:64] for n in ("Bob", "émile")] + ["f" * 64]
    out["known_sha256"] = cat.known_sha256(digests)
    out["known_sha256_many"] = len(cat.known_sha256([f"{i:064x}" for i in range(1200)] + digests))

    rows = cat.subject_rows()
    out["subject_rows"] = [(r["name"], r["images"], r["faces"], r["metadata"]) for r in rows]
    stamps = [datetime.fromisoformat(r["created_at"]) for r in rows]
    out["created_at_aware_utc"] = [(t.tzinfo is not None and t.utcoffset() == timedelta(0)) for t in stamps]
    out["created_at_in_run"] = all(before - timedelta(seconds=5) <= t <= after + timedelta(seconds=5) for t in stamps)

    # failures and the (path, subject) tuple IN of forget_failures
    out["failures_all"] = [(f["path"], f["subject"], f["reason"], f["message"], f["pack"]) for f in cat.failures()]
    out["failures_alice"] = [f["path"] for f in cat.failures(subject="alice")]
    out["failures_no_face"] = [f["path"] for f in cat.failures(reason="no_face")]
    out["failures_alice_no_face"] = [f["path"] for f in cat.failures(subject="alice", reason="no_face")]
    out["counts_before"] = cat.counts()
    detail = cat.subject_detail("alice")
    out["detail"] = ([(i["path"], [(f["pack"], f["bbox"], f["indexed"]) for f in i["faces"]]) for i in detail["images"]],
                     [f["reason"] for f in detail["failures"]])
    src = cat.face_source(ids["alice"][0])
    out["face_source"] = (src["path"], src["source"], src["bbox"], src["subject"]) if src else None
    out["face_source_missing"] = cat.face_source(99_999)
    with cat.session() as s:
        cat.forget_failures(s, [("/bad/0.jpg", "alice"), ("/bad/2.jpg", "alice"), ("/bad/3.jpg", None),
                                ("/bad/4.jpg", "frank")] + [(f"/x/{i}", "y") for i in range(900)])
    out["failures_after_forget"] = [f["path"] for f in cat.failures()]
    failure_time = datetime.fromisoformat(cat.failures()[0]["created_at"])
    out["failure_created_at_aware_utc"] = failure_time.tzinfo is not None and failure_time.utcoffset() == timedelta(0)

    # rename, keys, audit (a deleted subject's name leaves the trail)
    cat.add_audit("k1", "enroll", "Bob", 1, 1, "ok", "first")
    cat.add_audit("k1", "search", None, 2, 3, "partial")
    out["rename"] = cat.rename_subject("Bob", "Robert")[1]
    with pytest.raises(AlreadyExistsError):
        cat.rename_subject("Robert", "carol")
    cat.create_key("k1", "read", "h" * 64)
    with pytest.raises(AlreadyExistsError):
        cat.create_key("k1", "admin", "i" * 64)
    out["active_key"] = cat.active_key("h" * 64)
    out["revoked"] = cat.revoke_key("k1")["active"]
    out["active_after_revoke"] = cat.active_key("h" * 64)
    out["keys"] = [(k["name"], k["scope"], k["active"]) for k in cat.keys()]
    cat.add_audit("local", "delete", "Robert", 0, 0, "ok")
    for gone in cat.delete_subject("Robert")[2].values():
        cat.clear_pending_deletes(gone)
    out["audit"] = [(a["actor"], a["action"], a["subject"], a["images"], a["faces"], a["outcome"], a["detail"])
                    for a in cat.audit()]
    out["audit_since_future"] = cat.audit(since=datetime.now(timezone.utc) + timedelta(hours=1))
    out["audit_limit"] = [a["action"] for a in cat.audit(limit=1)]
    out["generation"] = cat.index_generation()
    cat.bump_generation()
    out["generation_after"] = cat.index_generation()
    cat.set_flag("rebuilding", "sface", True)
    with pytest.raises(DatabaseBusyError):
        cat.index_generation()
    cat.set_flag("rebuilding", "sface", False)

    # delete: rows gone, face ids journalled per model, then cleared
    _, out["delete_alice_images"], by_model = cat.delete_subject("alice")
    out["delete_alice"] = {m: sorted(v) for m, v in by_model.items()}
    out["delete_frank"] = cat.delete_subject("frank")[1:]
    with pytest.raises(NotFoundError):
        cat.delete_subject("alice")
    out["pending"] = {m: sorted(v) for m, v in cat.pending_deletes().items()}
    cat.clear_pending_deletes(out["delete_alice"]["sface"])
    out["pending_after_clear"] = {m: sorted(v) for m, v in cat.pending_deletes().items()}
    cat.clear_pending_deletes(out["delete_alice"]["buffalo_l"])
    out["pending_empty"] = cat.pending_deletes()
    out["failures_after_delete"] = [f["path"] for f in cat.failures()]
    with cat.session() as s:
        out["counts"] = [len(s.scalars(select(t)).all()) for t in (Subject, Image, Face, Failure)]
    out["subject_rows_after"] = [(r["name"], r["images"], r["faces"]) for r in cat.subject_rows()]

    # a new face after deletes gets a new, larger id
    with cat.session() as s:
        new = _add_image(s, cat, "gina", 1)
    out["new_face_id_is_fresh"] = new[0] > max(face_ids)
    out["models_in_use_after"] = cat.models_in_use()
    cat.compact()
    out["after_compact"] = (sorted(cat.face_ids("sface")), cat.models_in_use(), cat.get_setting("default_pack"))
    cat.dispose()
    return out


def test_every_catalog_method_answers_the_same_on_postgres_and_sqlite(pg_url: str, sqlite_url: str) -> None:
    lite = scenario(Catalog(sqlite_url))
    pg = scenario(Catalog(pg_url))
    for key in lite:
        assert pg[key] == lite[key], f"{key}: PostgreSQL {pg[key]!r} != SQLite {lite[key]!r}"
    assert pg.keys() == lite.keys()
    # and the answers are the right ones, not just equal
    assert lite["revision"] == SCHEMA_HEAD
    assert [r[0] for r in lite["subject_rows"]] == sorted(r[0] for r in lite["subject_rows"])  # code-point order
    assert all(lite["created_at_aware_utc"]) and lite["created_at_in_run"] and lite["failure_created_at_aware_utc"]
    # only exact (path, subject) pairs go: /bad/2.jpg is Bob's, and a NULL subject never matches
    assert lite["failures_after_forget"] == ["/bad/1.jpg", "/bad/2.jpg", "/bad/3.jpg"]
    assert lite["pending_empty"] == {} and lite["new_face_id_is_fresh"]


def test_string_lengths_are_enforced_on_postgres_only(pg_url: str, sqlite_url: str) -> None:
    """VARCHAR(n) is a real limit on PostgreSQL (SQLite ignores it): a subject name longer than
    the 256 characters facedb's validation allows cannot be stored there."""
    from sqlalchemy.exc import DataError

    lite, pg = Catalog(sqlite_url), Catalog(pg_url)
    try:
        for cat in (lite, pg):
            cat.upgrade()
        with lite.session() as s:
            s.add(Subject(name="x" * 257))
        with pytest.raises(DataError):
            with pg.session() as s:
                s.add(Subject(name="x" * 257))
        with pg.session() as s:  # 256 characters, multi-byte ones included, fit
            s.add(Subject(name="é" * 256))
    finally:
        lite.dispose()
        pg.dispose()


def test_face_ids_are_never_reused_on_postgres(pg_url: str, pg_cluster: PostgresCluster) -> None:
    """A sequence never hands out an id twice: not after deleting the newest face, not after a
    rolled-back insert, not after a server restart."""
    cat = Catalog(pg_url)
    cat.upgrade()
    try:
        with cat.session() as s:
            first = _add_image(s, cat, "a", 1)[0]
            last = _add_image(s, cat, "a", 2)[0]
        with cat.session() as s:
            s.delete(s.get(Face, last))
        with pytest.raises(RuntimeError):
            with cat.session() as s:
                _add_image(s, cat, "a", 3)
                raise RuntimeError("roll back")
        with cat.session() as s:
            after_delete = _add_image(s, cat, "a", 4)[0]
        cat.dispose()
        pg_cluster.restart()
        with cat.session() as s:
            after_restart = _add_image(s, cat, "a", 5)[0]
        assert first < last < after_delete < after_restart
        assert after_delete > last + 1  # the rolled-back id was consumed, not reused
    finally:
        cat.dispose()


def test_compact_on_postgres_rewrites_the_tables_without_deleted_embeddings(pg_url: str,
                                                                           pg_cluster: PostgresCluster) -> None:
    """``compact()`` (``facedb vacuum``) on PostgreSQL: VACUUM FULL writes new table files, so a
    deleted embedding's bytes are no longer in any live table file of the database."""
    cat = Catalog(pg_url)
    cat.upgrade()
    marker = np.frombuffer(b"FACEDB-ERASE-ME" * 40 + b"\0" * 8, dtype=np.float32)  # 608 bytes
    keep = np.frombuffer(b"FACEDB-KEEP-ME!" * 40 + b"\0" * 8, dtype=np.float32)
    try:
        with cat.session() as s:
            for name, vec in (("gone", marker), ("kept", keep)):
                sub = cat.subjects_by_name(s, [name])[name]
                img = Image(subject_id=sub.id, path=f"/{name}", sha256=name.ljust(64, "0"), size_bytes=1, width=1,
                            height=1)
                s.add(img)
                s.flush()
                s.add(Face(image_id=img.id, subject_id=sub.id, model="sface", x1=0, y1=0, x2=1, y2=1, score=1,
                           landmarks=[], dim=len(vec), embedding=vec.tobytes(), indexed=True))
        with pg_cluster.connect() as conn:
            conn.execute("CHECKPOINT")  # the rows reach the table files
        dbname = pg_url.rsplit("/", 1)[1]
        files = _table_files(pg_cluster, dbname)
        assert _files_containing(files, b"FACEDB-ERASE-ME" * 4), "the marker should be on disk before the delete"
        cat.delete_subject("gone")
        cat.clear_pending_deletes(cat.pending_deletes().get("sface", []))
        cat.compact()
        with pg_cluster.connect() as conn:
            conn.execute("CHECKPOINT")
        files = _table_files(pg_cluster, dbname)
        assert not _files_containing(files, b"FACEDB-ERASE-ME" * 4)
        assert _files_containing(files, b"FACEDB-KEEP-ME!" * 4)
        assert cat.embeddings("sface", indexed_only=False)[1].tobytes() == keep.tobytes()
    finally:
        cat.dispose()


def _table_files(cluster: PostgresCluster, dbname: str) -> list[Path]:
    with cluster.connect(dbname) as conn:
        oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
    return [p for p in (cluster.data / "base" / str(oid)).iterdir() if p.is_file()]


def _files_containing(files: list[Path], needle: bytes) -> list[Path]:
    return [p for p in files if needle in p.read_bytes()]


# -- outages -------------------------------------------------------------------------------

def test_catalog_recovers_after_postgres_is_killed_and_restarted(pg_url: str, pg_cluster: PostgresCluster) -> None:
    """While the server is down a call fails with UnavailableError (a message naming the catalog,
    503 / exit 8); once it is back the same ``Catalog`` (its pooled connections died with the
    server) answers again at the first call."""
    cat = Catalog(pg_url)
    cat.upgrade()
    try:
        cat.set_setting("k", "before")
        assert cat.get_setting("k") == "before"  # a pooled connection now exists
        pg_cluster.kill()
        with pytest.raises(UnavailableError, match="cannot be reached"):
            cat.get_setting("k")
        pg_cluster.start()
        assert cat.get_setting("k") == "before"  # committed before the kill, so kept
        cat.set_setting("k", "after")
        pg_cluster.restart()  # a clean restart also drops the pooled connections
        assert cat.get_setting("k") == "after"
    finally:
        pg_cluster.ensure_running()
        cat.dispose()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs the postgres OS user")
def test_cluster_files_belong_to_the_postgres_user(pg_cluster: PostgresCluster) -> None:
    import pwd

    assert pg_cluster.base.stat().st_uid == pwd.getpwnam("postgres").pw_uid
    assert pg_cluster.base.stat().st_mode & 0o777 == 0o700
