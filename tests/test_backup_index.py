"""Snapshots that ship the embedded index (``facedb.index.shipping``), on real faces.

The source home holds two real people, a subject deleted before the backup (the victim), and
more filler faces than Chroma's ``sync_threshold``, so that its HNSW segment is written to
``data_level0.bin`` and the snapshot carries real segment files, not only Chroma's log. The
snapshot is byte-scanned for the victim (her vectors as Chroma stores them, and her name), with a
positive control (the keeper's vectors and name are found by the same scan). Restores take the
shipped index, or fall back to rebuilding it from the catalog: the index files missing,
unreadable, from another Chroma version, a format 1 snapshot, a Chroma server as the target.
"""
from __future__ import annotations

import json
import signal
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from dbtools import run_cli, run_process
from facephotos import make_face_variants
from test_erasure import _found_in, add_filler_faces, subject_vectors

from facedb.api import FaceDB
from facedb.catalog.core import REBUILDING

FILLER = 1100  # more than Chroma's sync_threshold (1000): the HNSW segment is on disk
VICTIM = "Victim Q7ZX-backup"
KEEPER = "Keeper B4K-backup"


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rewrite(src: Path, dst: Path, edit: Callable[[str, bytes], bytes | None]) -> Path:
    """A copy of snapshot ``src`` with its members passed through ``edit`` (None: left out)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def _manifest_edit(change: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
    def edit(name: str, data: bytes) -> bytes:
        if name != "manifest.json":
            return data
        manifest = json.loads(data)
        change(manifest)
        return json.dumps(manifest).encode()
    return edit


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("ship")
    people = make_face_variants(root / "faces")
    home = root / "src"
    with FaceDB(home=home, workers=1) as db:
        assert db.enroll(VICTIM, people["person1"]).enrolled == 3
        assert db.enroll(KEEPER, people["person2"]).enrolled == 3
    add_filler_faces(home, FILLER)
    victim, keeper = subject_vectors(home, VICTIM), subject_vectors(home, KEEPER)
    with FaceDB(home=home, workers=1) as db:
        db.delete(VICTIM)
        answer = db.search([people["person2"][0]], k=1).results[0].faces[0].identity
        snap = root / "snap.zip"
        report = db.backup(snap)
    assert answer == KEEPER
    yield {"root": root, "home": home, "snap": snap, "report": report, "victim": victim, "keeper": keeper,
           "probe": people["person2"][0], "n_faces": 3 + FILLER,
           "other": people["person3"][0]}


def _restore(source: dict[str, Any], snap: Path, name: str) -> tuple[Any, str | None]:
    with FaceDB(home=source["root"] / name, workers=1) as db:
        rep = db.restore(snap)
        who = db.search([source["probe"]], k=1).results[0].faces[0].identity
    return rep, who


def test_the_snapshot_ships_the_index_and_nothing_of_a_deleted_subject(source: dict[str, Any]) -> None:
    rep, members = source["report"], _members(source["snap"])
    manifest = json.loads(members["manifest.json"])
    assert rep.index_shipped and rep.index_note is None and manifest["format_version"] == 2
    assert manifest["index"]["faces"] == {"default/sface-flip": source["n_faces"]}
    index = {n: d for n, d in members.items() if n.startswith("index/")}
    data = [n for n in index if n.endswith("/data_level0.bin")]
    assert "index/chroma.sqlite3" in index and len(data) == 1, sorted(index)
    # Only the used HNSW slots travel (the rest of the allocation is written back as zeros).
    (entry,) = [f for f in manifest["index"]["files"] if f["name"].endswith("/data_level0.bin")]
    assert entry["stored"] == len(index[data[0]]) <= entry["size"]
    # Positive control: the same scan finds the keeper's vectors in the shipped HNSW file and
    # her name in the catalog's rows (Chroma holds subject ids, no name)...
    assert _found_in(index[data[0]], source["keeper"]) == {0, 1, 2}
    assert KEEPER.encode() in members["tables/subjects.jsonl"]
    assert KEEPER.encode() not in index["index/chroma.sqlite3"]
    # ...and nothing of the victim anywhere: not in a member, not in the file as written.
    for blob in [*members.values(), source["snap"].read_bytes()]:
        assert VICTIM.encode() not in blob
        assert _found_in(blob, source["victim"]) == set()


def test_restore_copies_the_shipped_index(source: dict[str, Any]) -> None:
    rep, who = _restore(source, source["snap"], "restored")
    assert rep.index_path == "shipped" and rep.index_note is None, rep.to_dict()
    assert rep.clean and rep.indexed_faces == source["n_faces"] and who == KEEPER
    chroma = source["root"] / "restored" / "chroma"
    manifest = json.loads(_members(source["snap"])["manifest.json"])
    for f in manifest["index"]["files"]:  # each file at its size, unused slots as zeros
        path = chroma / f["name"]
        assert path.stat().st_size == f["size"] and (path.stat().st_mode & 0o777) == 0o600
    assert all((p.stat().st_mode & 0o777) == 0o700 for p in chroma.rglob("*") if p.is_dir())
    with FaceDB(home=source["root"] / "restored", workers=1) as db:
        assert db.check().clean
        assert db.enroll("Third", [source["other"]]).enrolled == 1  # the copied index takes writes
        rep = db.check()
        assert rep.clean and rep.index_faces == source["n_faces"] + 1


def test_cli_says_which_path_the_restore_took(source: dict[str, Any], tmp_path: Path) -> None:
    code, out, err = run_cli(tmp_path / "cli", "restore", str(source["snap"]))
    assert code == 0, err
    assert "index: shipped" in out and "check: clean" in out
    code, out, err = run_cli(tmp_path / "cli", "backup", str(tmp_path / "again.zip"))
    assert code == 0 and "index: shipped" in out, out + err


@pytest.mark.parametrize(("case", "note"), [
    ("missing", "lacks the index file"),
    ("unreadable", "failed its check"),
    ("other chromadb", "written by chromadb 0.0.1"),
    ("format 1", "holds no index"),
    ("other count", "failed its check"),
])
def test_restore_rebuilds_when_the_shipped_index_cannot_be_used(source: dict[str, Any], tmp_path: Path,
                                                               case: str, note: str) -> None:
    def edit(name: str, data: bytes) -> bytes | None:
        if case == "missing" and name.endswith("/data_level0.bin"):
            return None
        if case == "unreadable" and name == "index/chroma.sqlite3":
            return b"not a database" * 100
        if case == "format 1" and name.startswith("index/"):
            return None
        return data

    def change(manifest: dict[str, Any]) -> None:
        if case == "other chromadb":
            manifest["index"]["chromadb"] = "0.0.1"
        if case == "format 1":
            manifest["format_version"] = 1
            del manifest["index"]
        if case == "other count":
            manifest["index"]["faces"]["default/sface-flip"] += 1

    snap = _rewrite(source["snap"], tmp_path / "edited.zip", lambda n, d: edit(n, _manifest_edit(change)(n, d)))
    rep, who = _restore(source, snap, f"fallback-{case.replace(' ', '-')}")
    assert rep.index_path == "rebuilt" and note in (rep.index_note or ""), rep.to_dict()
    assert rep.clean and rep.indexed_faces == source["n_faces"] and who == KEEPER


def test_a_snapshot_without_the_index_leaves_no_stray_copy(source: dict[str, Any], tmp_path: Path) -> None:
    """The capture holds Chroma's files in memory only: nothing is left beside the home."""
    home = source["home"]
    before = sorted(p.name for p in home.iterdir())
    with FaceDB(home=home, workers=1) as db:
        db.backup(tmp_path / "b.zip")
    assert sorted(p.name for p in home.iterdir()) == before


def test_a_restore_killed_after_copying_the_index_is_rebuilt_by_the_next_process(source: dict[str, Any],
                                                                                 tmp_path: Path) -> None:
    """The copied index is journaled as a rebuild until it has checked out: a restore killed
    before then leaves the flags, and the next process rebuilds the index from the catalog."""
    home = tmp_path / "killed"
    res = run_process(home, "restore", str(source["snap"]), env={"FACEDB_CRASH_AT": "restore.after_install"})
    assert res.returncode == -signal.SIGKILL, res.stderr
    with FaceDB(home=home, workers=1) as db:
        assert db.catalog.flag(REBUILDING, db.pack_name)  # left by the killed restore
        assert db.enroll("Third", [source["other"]]).enrolled == 1  # a write opens the index: replay first
        assert not db.catalog.flag(REBUILDING, db.pack_name)
        rep = db.check()
        assert rep.clean and rep.index_faces == source["n_faces"] + 1
        assert db.search([source["probe"]], k=1).results[0].faces[0].identity == KEEPER


def test_an_index_that_disagrees_with_the_catalog_is_not_shipped(source: dict[str, Any], tmp_path: Path) -> None:
    """The backup checks each collection's index against the catalog before shipping it: one
    that lost a face (here deleted from Chroma behind facedb's back) is left out, and the
    restore rebuilds the index from the catalog."""
    home = tmp_path / "drifted"
    with FaceDB(home=home, workers=1) as db:
        assert db.enroll(KEEPER, [source["probe"], source["other"]]).enrolled == 2
        lost = db.show(KEEPER).images[0]["faces"][0]["face_id"]
        with db.store.base.exclusive() as index:
            index.delete(db.catalog.index_pack(db.pack_name), [lost])
        rep = db.backup(tmp_path / "drifted.zip")
    assert not rep.index_shipped and "holds 1 faces" in (rep.index_note or ""), rep.to_dict()
    assert not [n for n in _members(tmp_path / "drifted.zip") if n.startswith("index/")]
    with FaceDB(home=tmp_path / "from-drifted", workers=1) as db:
        back = db.restore(tmp_path / "drifted.zip")
        assert back.index_path == "rebuilt" and back.clean and back.indexed_faces == 2
        assert lost in db.index_face_ids()


@pytest.mark.slow
def test_a_chroma_server_index_is_not_shipped_and_is_rebuilt_there(source: dict[str, Any], chroma_server: Any,
                                                                   tmp_path: Path) -> None:
    chroma_server.ensure_running()
    with FaceDB(home=tmp_path / "onto-server", chroma_url=chroma_server.url, workers=1) as db:
        rep = db.restore(source["snap"])
        assert rep.index_path == "rebuilt" and "Chroma server" in (rep.index_note or "")
        assert rep.clean and rep.indexed_faces == source["n_faces"]
        assert db.search([source["probe"]], k=1).results[0].faces[0].identity == KEEPER
        back = db.backup(tmp_path / "from-server.zip")
    assert not back.index_shipped and "Chroma server" in (back.index_note or "")
    assert not [n for n in _members(tmp_path / "from-server.zip") if n.startswith("index/")]
    with FaceDB(home=tmp_path / "from-server", workers=1) as db:
        rep = db.restore(tmp_path / "from-server.zip")
        assert rep.index_path == "rebuilt" and rep.clean and rep.indexed_faces == source["n_faces"]
