"""Erasure: a deleted subject's (or collection's) embeddings leave SQL and Chroma at once, and
their bytes are physically gone from every file under the home when ``delete`` returns (no
``vacuum`` needed: ``ChromaIndex.erase``), also after a kill in the middle of the erasure, and
from a Chroma server's data folder; ``vacuum`` (or ``delete --vacuum``) still rebuilds everything.

The scan looks for each embedding's first 8 components as float32 *and* float64, at every byte
alignment, with a relative tolerance of 1e-5, so it also finds Chroma's own (re-normalised,
possibly float64) copies. Every "none found" assertion is paired with a positive control: the
same scan finds the vectors before the delete (in the catalog and in Chroma's HNSW
``data_level0.bin``), and finds the surviving subjects' vectors after the vacuum.
"""
from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dbtools import run_json, run_process
from facephotos import make_face_variants

#: Components compared per vector (a 32-byte float32 / 64-byte float64 fingerprint).
PREFIX = 8
#: More than Chroma's HNSW sync_threshold (1000): forces the index to be written to data_level0.bin.
FILLER = 1100
#: A distinctive subject name, so that its bytes can be searched for in the files too.
VICTIM = "Victim Q7ZX-erasure"


# -- real faces ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("faces"))


# -- finding vectors in files ----------------------------------------------------------------------

def _found_in(data: bytes, vectors: np.ndarray, rtol: float = 1e-5) -> set[int]:
    """Indices of ``vectors`` whose unit-normalised first PREFIX components occur in ``data``
    as consecutive float32 or float64 values (any alignment)."""
    units = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    found: set[int] = set()
    with np.errstate(invalid="ignore", over="ignore"):
        for dtype in (np.float32, np.float64):
            size = np.dtype(dtype).itemsize
            for offset in range(size):
                count = (len(data) - offset) // size
                if count < PREFIX:
                    continue
                arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float64)
                for i, u in enumerate(units):
                    if i in found:
                        continue
                    tol = np.abs(u[:PREFIX]) * rtol + 1e-7
                    cand = np.flatnonzero(np.abs(arr[:count - PREFIX + 1] - u[0]) <= tol[0])
                    for c in cand:
                        if np.all(np.abs(arr[c:c + PREFIX] - u[:PREFIX]) <= tol):
                            found.add(i)
                            break
    return found


def scan_home(home: Path, vectors: np.ndarray) -> dict[str, list[int]]:
    """{file relative to home: indices of the vectors found in it} over every file under home."""
    out: dict[str, list[int]] = {}
    for f in sorted(home.rglob("*")):
        if f.is_file() and not f.is_symlink():
            hit = _found_in(f.read_bytes(), vectors)
            if hit:
                out[str(f.relative_to(home))] = sorted(hit)
    return out


def files_containing(home: Path, needle: bytes) -> list[str]:
    return sorted(str(f.relative_to(home)) for f in home.rglob("*")
                  if f.is_file() and not f.is_symlink() and needle in f.read_bytes())


def _is_hnsw(rel: str) -> bool:
    return rel.startswith("chroma/") and rel.endswith("/data_level0.bin")


def test_scanner_finds_float32_float64_and_renormalised_copies() -> None:
    rng = np.random.default_rng(1)
    v = rng.standard_normal((3, 128)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    blob = (b"x" * 3 + v[0].tobytes() + b"y" * 5 + (v[1].astype(np.float64) * 1.0000001).tobytes()
            + (v[2] * 2.5).astype(np.float32).tobytes())  # unnormalised copy: not a unit vector
    assert _found_in(blob, v) == {0, 1}
    assert _found_in(blob, (v[2] * 2.5)[None, :]) == set()  # the probe is normalised, not the data
    assert _found_in(rng.standard_normal(100_000).astype(np.float32).tobytes(), v) == set()


# -- database helpers -------------------------------------------------------------------------------

def subject_vectors(home: Path, name: str, **open_args: Any) -> np.ndarray:
    """The subject's stored embeddings (float32, one row per face) from the catalog."""
    from facedb import FaceDB

    db = FaceDB(home=home, **open_args)
    try:
        with db.catalog.session() as s:
            sid = db.catalog.subject(s, name).id
        ids, mat = db.catalog.embeddings(db.pack_name, subject_id=sid)
    finally:
        db.close()
    assert len(ids) > 0 and mat.dtype == np.float32
    return mat


def add_filler_faces(home: Path, n: int, seed: int = 7, **open_args: Any) -> None:
    """Store ``n`` synthetic unit vectors as subject "filler" (SQL rows, not yet indexed), then let
    facedb's journal replay index them in one batch: more than Chroma's sync threshold, so the
    HNSW index (with every vector already in it) is written to data_level0.bin. ``open_args``
    go to ``FaceDB`` (``collection``, ``chroma_url``)."""
    from facedb import FaceDB
    from facedb.catalog.models import Face, Subject
    from facedb.catalog.models import Image as ImageRow

    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    db = FaceDB(home=home, **open_args)
    try:
        cid = db.catalog.cid
        with db.catalog.session() as s:
            sub = Subject(name="filler", collection_id=cid)
            s.add(sub)
            s.flush()
            for i, v in enumerate(vecs):
                img = ImageRow(subject_id=sub.id, path=f"/synthetic/filler{i}.jpg", collection_id=cid,
                               sha256=hashlib.sha256(b"filler%d" % i).hexdigest(), size_bytes=0,
                               width=1, height=1, status="enrolled")
                s.add(img)
                s.flush()
                s.add(Face(image_id=img.id, subject_id=sub.id, model=db.pack_name, x1=0.0, y1=0.0, x2=1.0,
                           y2=1.0, score=1.0, landmarks=[[0.0, 0.0]] * 5, dim=128, embedding=v.tobytes(),
                           indexed=False, collection_id=cid))
        with db.hold():  # replays the journal: indexes the unindexed faces
            pass
    finally:
        db.close()


def assert_private(home: Path) -> None:
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for p in home.rglob("*"):
        mode = stat.S_IMODE(p.lstat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p} is {oct(mode)}"


def pickle_files(home: Path) -> list[str]:
    """Every *.pickle under the home. Chroma writes its own ``index_metadata.pickle`` next to a
    persisted HNSW segment (chromadb's format, not facedb's); anything else would be facedb's."""
    found = sorted(str(p.relative_to(home)) for p in home.rglob("*.pickle"))
    foreign = [p for p in found if not re.fullmatch(r"chroma/[0-9a-f-]{36}/index_metadata\.pickle", p)]
    assert not foreign, f"unexpected pickle files (not Chroma's index_metadata): {foreign}"
    return found


def identity_of(home: Path, probe: Path) -> tuple[str | None, list[str], bool | None]:
    data = run_json(home, "search", str(probe), "-k", "5", "--reference")
    face = data["results"][0]["faces"][0]
    return face["identity"], [m["subject"] for m in face["matches"]], face.get("reference_agrees")


# -- tests ---------------------------------------------------------------------------------------------

def test_delete_then_vacuum_erases_every_byte(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    victim_imgs, keeper_imgs = people["person1"], people["person2"]
    assert run_json(home, "enroll", VICTIM, *map(str, victim_imgs), "-q")["enrolled"] == 3
    assert run_json(home, "enroll", "keeper", *map(str, keeper_imgs), "-q")["enrolled"] == 3
    add_filler_faces(home, FILLER)
    assert run_json(home, "check")["clean"] is True
    victim = subject_vectors(home, VICTIM)
    keeper = subject_vectors(home, "keeper")
    name, path = VICTIM.encode(), str(victim_imgs[0].absolute()).encode()
    # The name is in the catalog only (Chroma keeps subject ids); the image path in the catalog.
    assert set(files_containing(home, name)) == {"facedb.sqlite3"}
    assert "facedb.sqlite3" in files_containing(home, path)

    # Positive control: the scan finds every victim vector in the catalog and in Chroma's HNSW file.
    before = scan_home(home, victim)
    assert before.get("facedb.sqlite3") == [0, 1, 2], before
    hnsw = [f for f in before if _is_hnsw(f)]
    assert hnsw and before[hnsw[0]] == [0, 1, 2], f"victim vectors not in data_level0.bin: {before}"

    rep = run_json(home, "delete", VICTIM, "--yes")
    assert rep["faces"] == 3 and rep["images"] == 3
    # At once, with no vacuum: gone from every search, and from every file of the home (the
    # catalog: secure_delete; Chroma: overwritten, persisted, deleted, its SQLite file compacted).
    assert scan_home(home, victim) == {}, "deleted embeddings still on disk after delete"
    assert files_containing(home, name) == [] and files_containing(home, path) == []
    ident, subjects, agrees = identity_of(home, victim_imgs[0])
    assert ident != VICTIM and VICTIM not in subjects and agrees is True
    ident, subjects, agrees = identity_of(home, keeper_imgs[1])
    assert ident == "keeper" and agrees is True
    assert any(_is_hnsw(f) for f in scan_home(home, keeper)), "negative control: survivors in data_level0.bin"

    res = run_json(home, "vacuum")
    assert res["bytes_after"] <= res["bytes_before"], res

    leftover = scan_home(home, victim)
    assert leftover == {}, f"deleted embeddings still on disk after vacuum: {leftover}"
    # Nor the subject's name (catalog + Chroma metadata) or its image paths.
    assert files_containing(home, name) == []
    assert files_containing(home, path) == []
    # Negative control: the survivors are still there (rebuilt HNSW + catalog) and searchable.
    kept = scan_home(home, keeper)
    assert kept.get("facedb.sqlite3") == [0, 1, 2], kept
    assert any(_is_hnsw(f) and ids == [0, 1, 2] for f, ids in kept.items()), kept
    ident, subjects, agrees = identity_of(home, keeper_imgs[1])
    assert ident == "keeper" and agrees is True
    report = run_json(home, "check")
    assert report["clean"] is True and report["catalog_faces"] == report["index_faces"] == 3 + FILLER
    assert {s["name"]: s["faces"] for s in run_json(home, "subjects")} == {"keeper": 3, "filler": FILLER}

    assert_private(home)
    pickles = pickle_files(home)
    print(f"\nChroma's own pickle files (not facedb's): {pickles}")


def test_delete_with_vacuum_option(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    victim_imgs, keeper_imgs = people["person3"], people["person4"]
    assert run_json(home, "enroll", "victim", *map(str, victim_imgs), "-q")["enrolled"] == 3
    assert run_json(home, "enroll", "keeper", *map(str, keeper_imgs), "-q")["enrolled"] == 3
    victim = subject_vectors(home, "victim")
    keeper = subject_vectors(home, "keeper")
    before = scan_home(home, victim)
    # Small collection: Chroma still holds the vectors in its SQLite write-ahead queue.
    assert before.get("facedb.sqlite3") == [0, 1, 2], before
    assert any(f.startswith("chroma/") and ids == [0, 1, 2] for f, ids in before.items()), before

    proc = run_process(home, "delete", "victim", "--yes", "--vacuum", "--json")  # the real console script
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["faces"] == 3 and set(out["vacuum"]) == {"bytes_before", "bytes_after"}

    assert scan_home(home, victim) == {}
    kept = scan_home(home, keeper)
    assert kept.get("facedb.sqlite3") == [0, 1, 2]
    assert any(f.startswith("chroma/") and ids == [0, 1, 2] for f, ids in kept.items()), kept
    ident, subjects, agrees = identity_of(home, keeper_imgs[2])
    assert ident == "keeper" and agrees is True
    ident, subjects, agrees = identity_of(home, victim_imgs[0])
    assert ident is None and subjects == ["keeper"]
    assert run_json(home, "check")["clean"] is True
    assert_private(home)
    pickle_files(home)


@pytest.mark.parametrize("filler", [0, FILLER], ids=["queue", "hnsw"])
def test_vacuum_after_deleting_the_last_subject(tmp_path: Path, people: dict[str, list[Path]], filler: int) -> None:
    home = tmp_path / "home"
    imgs = people["person5"]
    assert run_json(home, "enroll", "only", *map(str, imgs), "-q")["enrolled"] == 3
    if filler:
        add_filler_faces(home, filler)  # the HNSW index (with "only" in it) is persisted
        run_json(home, "delete", "filler", "--yes")
    vectors = subject_vectors(home, "only")
    before = scan_home(home, vectors)  # positive control
    if filler:
        assert any(_is_hnsw(f) and ids == [0, 1, 2] for f, ids in before.items()), before
    else:
        assert before.get("chroma/chroma.sqlite3") == [0, 1, 2], before
    out = run_json(home, "delete", "only", "--yes", "--vacuum")
    assert out["faces"] == 3
    assert run_json(home, "check")["clean"] is True
    assert run_json(home, "subjects") == []
    leftover = scan_home(home, vectors)
    assert leftover == {}, f"deleted embeddings still on disk after vacuum: {leftover}"


def test_facedb_never_uses_pickle() -> None:
    """facedb stores nothing with pickle (Chroma's own index_metadata.pickle is chromadb's business)."""
    import facedb

    root = Path(facedb.__file__).resolve().parent
    offenders = []
    pattern = re.compile(r"^\s*(import\s+(c?pickle|dill|cloudpickle)\b|from\s+(c?pickle|dill|cloudpickle)\s+import)"
                         r"|pickle\.(loads?|dumps?|Unpickler|Pickler)\b", re.M)
    for py in sorted(root.rglob("*.py")):
        text = py.read_text(encoding="utf-8")
        for m in pattern.finditer(text):
            offenders.append(f"{py.relative_to(root.parent)}: {m.group(0).strip()}")
    assert not offenders, offenders


# -- erasure without vacuum: collections, kills, a Chroma server -----------------------------------

def filler_vectors(n: int, sample: int = 24, seed: int = 7) -> np.ndarray:
    """A sample of the vectors ``add_filler_faces(home, n, seed)`` stores (the same generator)."""
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs[np.linspace(0, n - 1, sample).astype(int)]


def survivors_found(home: Path, keeper_probe: Path, faces: int, *cli: str) -> None:
    """The survivors are all there: ``check`` finds the stores in line and every indexed face
    reachable with its own vector; a search names the keeper, and the reference mode agrees."""
    report = run_json(home, *cli, "check")
    assert report["clean"] is True and report["catalog_faces"] == report["index_faces"] == faces, report
    assert report["unreachable_in_index"] == [] and report["reach_checked"] == faces, report
    data = run_json(home, *cli, "search", str(keeper_probe), "-k", "5", "--reference")
    face = data["results"][0]["faces"][0]
    assert face["identity"] == "keeper" and face.get("reference_agrees") is True, face


def test_collection_delete_erases_every_byte(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    victim_imgs, keeper_imgs = people["person1"], people["person2"]
    assert run_json(home, "enroll", "keeper", *map(str, keeper_imgs), "-q")["enrolled"] == 3
    run_json(home, "collections", "create", "doomed")
    assert run_json(home, "--collection", "doomed", "enroll", VICTIM, *map(str, victim_imgs), "-q")["enrolled"] == 3
    victim = subject_vectors(home, VICTIM, collection="doomed")
    add_filler_faces(home, FILLER, collection="doomed")  # the collection's HNSW files are written
    gone = np.concatenate([victim, filler_vectors(FILLER)])
    before = scan_home(home, gone)  # positive control: in the catalog and in the HNSW file
    assert len(before.get("facedb.sqlite3", [])) == len(gone), before
    assert any(_is_hnsw(f) and len(ids) == len(gone) for f, ids in before.items()), before
    folders_before = {p.name for p in (home / "chroma").iterdir() if p.is_dir()}

    out = run_json(home, "collections", "delete", "doomed", "--yes")
    assert out["faces"] == 3 + FILLER

    leftover = scan_home(home, gone)
    assert leftover == {}, f"a deleted collection's embeddings still on disk: {leftover}"
    assert files_containing(home, VICTIM.encode()) == []
    # The dropped collection's segment folder went with it (Chroma itself leaves it).
    assert {p.name for p in (home / "chroma").iterdir() if p.is_dir()} < folders_before
    survivors_found(home, keeper_imgs[1], 3)
    assert_private(home)


@pytest.fixture(scope="module")
def built_home(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Path:
    """A home with VICTIM, keeper and FILLER synthetic faces (its HNSW files written), and a
    collection "doomed" with one subject: copied by each kill test."""
    home = tmp_path_factory.mktemp("built") / "home"
    assert run_json(home, "enroll", VICTIM, *map(str, people["person1"]), "-q")["enrolled"] == 3
    assert run_json(home, "enroll", "keeper", *map(str, people["person2"]), "-q")["enrolled"] == 3
    add_filler_faces(home, FILLER)
    run_json(home, "collections", "create", "doomed")
    assert run_json(home, "--collection", "doomed", "enroll", "Doomed Q7ZX", *map(str, people["person3"]),
                    "-q")["enrolled"] == 3
    return home


KILLS = [("delete", p) for p in ("delete.after_sql", "erase.after_overwrite", "erase.before_delete",
                                 "erase.before_compact", "delete.after_chroma")] \
    + [("collections-delete", p) for p in ("delete_collection.after_sql", "erase.before_compact")]


@pytest.mark.parametrize(("command", "point"), KILLS, ids=[f"{c}@{p}" for c, p in KILLS])
def test_erasure_finished_after_a_kill(tmp_path: Path, built_home: Path, people: dict[str, list[Path]],
                                       command: str, point: str) -> None:
    """SIGKILL at each step of an erasure; the next facedb process (any command: ``check``
    here) replays the journal and the deleted vectors are then in no file of the home."""
    import shutil

    home = tmp_path / "home"
    shutil.copytree(built_home, home)
    if command == "delete":
        victim, args, name = subject_vectors(home, VICTIM), ("delete", VICTIM, "--yes"), VICTIM
    else:
        victim = subject_vectors(home, "Doomed Q7ZX", collection="doomed")
        args, name = ("collections", "delete", "doomed", "--yes"), "Doomed Q7ZX"
    assert scan_home(home, victim), "positive control"
    proc = run_process(home, *args, env={"FACEDB_CRASH_AT": f"{point}:1"})
    assert proc.returncode == -9, f"not killed at {point}: rc {proc.returncode} {proc.stderr.decode()[-500:]}"

    # The next process to open the index (a search of faces) replays the journal, which finishes
    # the erasure before it answers.
    data = run_json(home, "search", str(people["person1"][0]), "--by", "face", "-k", "3", "--reference")
    face = data["results"][0]["faces"][0]
    assert face["identity"] == (None if command == "delete" else VICTIM), face
    assert face.get("reference_agrees") is True, face
    survivors_found(home, people["person2"][1], 3 + FILLER if command == "delete" else 6 + FILLER)
    leftover = scan_home(home, victim)
    assert leftover == {}, f"killed at {point}: deleted embeddings still on disk after the replay: {leftover}"
    assert files_containing(home, name.encode()) == []


def test_erasure_on_a_chroma_server(tmp_path: Path, people: dict[str, list[Path]],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With the index on a ``chroma run --path DIR`` server: a delete overwrites, persists and
    deletes through the HTTP API, so no HNSW file of the server keeps the victim; the server's
    ``chroma.sqlite3`` is compacted too when facedb is given DIR (``FACEDB_CHROMA_DATA``), and
    then no file of the server's folder (nor of the home) holds a deleted vector or name."""
    from facedb.evaluation.servers import ChromaServer, chroma_unavailable

    reason = chroma_unavailable()
    if reason:
        pytest.skip(reason)
    server = ChromaServer(tmp_path / "chroma" / "data").start()
    try:
        monkeypatch.setenv("FACEDB_CHROMA_URL", server.url)
        monkeypatch.delenv("FACEDB_CHROMA_DATA", raising=False)
        home, data = tmp_path / "home", server.path
        for name, person in ((VICTIM, "person1"), ("Second Q7ZX", "person3"), ("keeper", "person2")):
            assert run_json(home, "enroll", name, *map(str, people[person]), "-q")["enrolled"] == 3
        add_filler_faces(home, FILLER, chroma_url=server.url)  # the server writes its HNSW files
        victim = subject_vectors(home, VICTIM, chroma_url=server.url)
        second = subject_vectors(home, "Second Q7ZX", chroma_url=server.url)
        before = scan_home(data, np.concatenate([victim, second]))
        assert any(f.endswith("data_level0.bin") and ids == list(range(6)) for f, ids in before.items()), before

        # Without the folder: the HNSW files are clean at once; the SQLite file may keep rows in
        # its free pages until the operator compacts it (measured and printed, not promised).
        run_json(home, "delete", "Second Q7ZX", "--yes")
        kept = scan_home(data, second)
        assert not any(f.endswith("data_level0.bin") for f in kept), kept
        print(f"\nthe Chroma server's folder after a delete without FACEDB_CHROMA_DATA: {kept}; name in "
              f"{files_containing(data, b'Second Q7ZX')}")

        monkeypatch.setenv("FACEDB_CHROMA_DATA", str(data))
        run_json(home, "delete", VICTIM, "--yes")
        gone = np.concatenate([victim, second])
        assert scan_home(data, gone) == {}, "deleted embeddings still in the Chroma server's folder"
        assert scan_home(home, gone) == {}, "deleted embeddings still in the home"
        for name in (VICTIM, "Second Q7ZX"):
            assert files_containing(data, name.encode()) == [] and files_containing(home, name.encode()) == []
        assert server.heartbeat(), "the server kept running through the VACUUM of its file"
        survivors_found(home, people["person2"][1], 3 + FILLER)

        # A collection delete on the server: its segment folder goes too (Chroma leaves it).
        run_json(home, "collections", "create", "doomed")
        assert run_json(home, "--collection", "doomed", "enroll", "Doomed Q7ZX", *map(str, people["person4"]),
                        "-q")["enrolled"] == 3
        add_filler_faces(home, FILLER, seed=8, chroma_url=server.url, collection="doomed")
        doomed = np.concatenate([subject_vectors(home, "Doomed Q7ZX", chroma_url=server.url, collection="doomed"),
                                 filler_vectors(FILLER, seed=8)])
        before = scan_home(data, doomed)
        assert any(f.endswith("data_level0.bin") and len(ids) == len(doomed) for f, ids in before.items()), before
        run_json(home, "collections", "delete", "doomed", "--yes")
        assert scan_home(data, doomed) == {}, "a deleted collection's vectors still in the server's folder"
        assert files_containing(data, b"Doomed Q7ZX") == []
        survivors_found(home, people["person2"][1], 3 + FILLER)
        kept_keeper = scan_home(data, subject_vectors(home, "keeper", chroma_url=server.url))
        assert kept_keeper, "negative control: the survivors are still in the server's files"
    finally:
        server.cleanup()


def test_erase_zeroes_stale_heap_in_unused_hnsw_slots(tmp_path: Path) -> None:
    """hnswlib writes a collection's whole allocation, unused slots included, with whatever the
    heap held (the kill tests found another collection's deleted subject there). An erase zeroes
    the unused slots of every HNSW file: planted bytes in them are gone, the live faces stay."""
    from facedb.analysis.engines.base import PackInfo
    from facedb.catalog.core import in_space
    from facedb.index.chroma_index import HEADER, ChromaIndex

    info = PackInfo(name="p", dim=128, threshold=0.5, fingerprint="f" * 64, description="")
    other = in_space(info, "c9")
    rng = np.random.default_rng(3)
    vecs = rng.standard_normal((1200, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = ChromaIndex(tmp_path)
    index.add(info, list(range(1, 1101)), vecs[:1100], [1] * 1100)  # persisted
    index.add(other, [5001, 5002, 5003], vecs[1100:1103], [2] * 3)
    index.close()
    stale = vecs[1150:1153]  # never given to Chroma: stands for another face's freed heap
    planted = 0
    for data in tmp_path.glob("*/data_level0.bin"):
        _, _, _, count, per, *_ = HEADER.unpack((data.parent / "header.bin").read_bytes())
        size = data.stat().st_size
        if size > count * per:
            raw = bytearray(data.read_bytes())
            raw[count * per + 260:count * per + 260 + 512 * 3] = stale.tobytes()[:512 * 3]
            data.write_bytes(bytes(raw))
            planted += 1
    assert planted, "no HNSW file with unused slots to plant into"
    assert scan_home(tmp_path, stale), "positive control: the planted bytes are found"

    index = ChromaIndex(tmp_path)
    try:
        index.erase(info, [7, 8])
        assert scan_home(tmp_path, stale) == {}, "stale bytes left in unused HNSW slots"
        assert scan_home(tmp_path, vecs[6:8]) == {}
        assert [n.face_id for n in index.query(info, vecs[100:101], 1)[0]] == [101]
        assert [n.face_id for n in index.query(other, vecs[1101:1102], 1)[0]] == [5002]
    finally:
        index.close()
