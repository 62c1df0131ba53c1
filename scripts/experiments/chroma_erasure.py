#!/usr/bin/env python
"""What Chroma 1.5 keeps of a deleted vector, and what a bounded-time erasure would cost.

Prepares the "data lifecycle at a million faces" issue: ``delete`` hides a face at once, but its
vector stays in Chroma's files until ``vacuum`` rebuilds the whole collection, which at 1M faces
costs 15-30 minutes per erasure request. This script runs on chromadb directly (no facedb code
path; only facedb's HNSW settings are imported, so the collections match the product's): an
embedded ``PersistentClient`` and a ``chroma run`` server on 127.0.0.1 (``facedb.evaluation.servers``'
``ChromaServer``, on a free port, stopped at the end).

For each size in ``--sizes`` it builds one collection (cosine, ``max_neighbors``/``ef_*`` from
``facedb.index.chroma_index.HNSW``, 128-d float32 face-like unit vectors written by ``upsert`` in
batches of 5,000 with ``subject_id``/``subject`` metadata, as facedb writes them), copies the
folder for each scenario, and byte-scans every file of the persist directory for the deleted
vectors:

* ``win16``: an exact 16-byte window (components 0-3, or 64-67) of the float32 vector, at any
  byte alignment;
* ``whole``: the whole 512-byte float32 vector, exactly;
* ``approx``: the first 8 components within a relative 1e-5, as float32 or float64, at any
  alignment (what ``tests/test_erasure.py`` does: it also finds a copy Chroma re-normalised);
* ``name``: the deleted subjects' (distinctive) names, as UTF-8.

Scenarios (each on its own copy of the built folder; a victim set = whole subjects, some from
the middle of the gallery and one from the last upsert batch):

* ``delete``: plain ``delete(ids)``; scanned with the client open, after 1,100 other writes
  (more than ``sync_threshold`` 1,000, so the HNSW index is persisted), after the client is
  closed, after ``chroma vacuum --path DIR --force``, after ``PRAGMA secure_delete=ON; VACUUM``
  of chroma.sqlite3 (client closed).
* ``overwrite1`` / ``overwrite`` / ``overwrite_absent``: ``update`` the victims with fresh random
  unit vectors, then ``delete`` them. Chroma writes the HNSW index to disk only after
  ``sync_threshold`` (1,000) log records, so: a single update (``overwrite1``); updates repeated
  until 1,000 update records (``overwrite``); a single update followed by ``delete`` of 1,000 ids
  that do not exist (``overwrite_absent``: cheap writes that still count). Scanned open, after a
  sqlite VACUUM *while the client or server is still open* (then that client must still count,
  find and write), closed, and after a sqlite VACUUM with everything closed.
* ``shards``: the gallery split into K collections (K = ``--shards``); the erasure = rebuild one
  shard without the victims (new collection + upsert of its survivors, then ``delete_collection``
  of the old one); timed, and the folder scanned. Search = query every shard (k=10) and merge:
  single-query p50 and recall@10 against exact numpy top-10.

Usage::

    .venv/bin/python scripts/experiments/chroma_erasure.py                  # 5k, 20k; ~5 min
    .venv/bin/python scripts/experiments/chroma_erasure.py --sizes 100000 --no-server --json /tmp/e.json
    .venv/bin/python scripts/experiments/chroma_erasure.py --no-server --shards 1,4

Needs facedb installed (it imports ``facedb.evaluation.servers``).
Everything is written under a temporary folder (0700), removed at the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation.servers import ChromaServer, find_chroma
from facedb.index.chroma_index import HNSW

REPO = Path(__file__).resolve().parents[2]

DIM = 128
BATCH = 5000
SAMPLES = 5  # faces per identity
PREFIX = 8  # components compared by the approximate scan
RTOL = 1e-5
NAME = "faces_erasure"


# -- data --------------------------------------------------------------------------------------

def face_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors as identities x SAMPLES, cos to the identity centre ~0.75."""
    rng = np.random.default_rng(seed)
    ident = np.arange(n) // SAMPLES
    centres = rng.standard_normal((int(ident[-1]) + 1, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, DIM))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    v = 0.75 * centres[ident] + 0.66 * noise
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32), ident


def subject_name(identity: int) -> str:
    return f"Person-Q7ZX-{identity:06d}"


def victim_sets(n: int, sets: int, per_set: int, seed: int) -> list[np.ndarray]:
    """``sets`` disjoint sets of whole identities (``per_set`` identities each); the first set also
    holds the gallery's last identity (its vectors were in the last upsert batch)."""
    rng = np.random.default_rng(seed)
    n_ident = n // SAMPLES
    last = n_ident - 1
    pool = rng.permutation(np.arange(n_ident // 10, n_ident - 1))[: sets * per_set]
    out = []
    for s in range(sets):
        ids = list(pool[s * per_set:(s + 1) * per_set])
        if s == 0:
            ids[-1] = last
        out.append(np.concatenate([np.arange(i * SAMPLES, (i + 1) * SAMPLES) for i in sorted(ids)]))
    return out


# -- byte scan ---------------------------------------------------------------------------------

class Scanner:
    """Finds deleted vectors (and subject names) in a file's bytes, fast enough for 100 MB files."""

    def __init__(self, vectors: np.ndarray, names: list[str]) -> None:
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.rows = [v.tobytes() for v in self.vectors]
        self.names = [n.encode() for n in names]
        windows = {}
        for i, row in enumerate(self.rows):
            for start in (0, 256):  # components 0-3 and 64-67
                windows[row[start:start + 16]] = i
        self.windows = windows
        self.first_words = np.unique(np.frombuffer(b"".join(w[:4] for w in windows), dtype=np.uint32))
        units = self.vectors.astype(np.float64)
        units /= np.linalg.norm(units, axis=1, keepdims=True)
        order = np.argsort(units[:, 0])
        self.units = units[order]
        tol = np.abs(self.units[:, 0]) * RTOL + 1e-7
        self.lo, self.hi = self.units[:, 0] - tol, self.units[:, 0] + tol
        self.order = order

    def scan(self, data: bytes) -> dict[str, set[int]]:
        hits: dict[str, set[int]] = {"win16": set(), "whole": set(), "approx": set(), "name": set()}
        for align in range(4):
            count = (len(data) - align) // 4
            if count < 4:
                continue
            words = np.frombuffer(data, dtype=np.uint32, count=count, offset=align)
            pos = np.searchsorted(self.first_words, words)
            pos[pos == len(self.first_words)] = 0
            for p in np.flatnonzero(self.first_words[pos] == words):
                off = align + 4 * int(p)
                i = self.windows.get(data[off:off + 16])
                if i is not None:
                    hits["win16"].add(i)
        for i in hits["win16"]:
            if self.rows[i] in data:
                hits["whole"].add(i)
        with np.errstate(invalid="ignore", over="ignore"):
            for dtype in (np.float32, np.float64):
                size = np.dtype(dtype).itemsize
                for align in range(size):
                    count = (len(data) - align) // size
                    if count < PREFIX:
                        continue
                    arr = np.frombuffer(data, dtype=dtype, count=count, offset=align)
                    j = np.searchsorted(self.lo, arr, side="right") - 1
                    ok = j >= 0
                    cand = np.flatnonzero(ok & (arr <= self.hi[np.where(ok, j, 0)]))
                    for c in cand:
                        if c + PREFIX > count:
                            continue
                        u = self.units[j[c]]
                        seg = arr[c:c + PREFIX].astype(np.float64)
                        if np.all(np.abs(seg - u[:PREFIX]) <= np.abs(u[:PREFIX]) * RTOL + 1e-7):
                            hits["approx"].add(int(self.order[j[c]]))
        for i, name in enumerate(self.names):
            if name in data:
                hits["name"].add(i)
        return hits

    def scan_dir(self, root: Path) -> dict[str, dict[str, int]]:
        """{file (relative, segment UUIDs shortened): {kind: count found}} for every file."""
        out: dict[str, dict[str, int]] = {}
        for f in sorted(root.rglob("*")):
            if f.is_file() and not f.is_symlink():
                hits = self.scan(f.read_bytes())
                out[short(f.relative_to(root))] = {k: len(v) for k, v in hits.items()} | {"bytes": f.stat().st_size}
        return out


def short(rel: Path) -> str:
    parts = rel.parts
    if len(parts) > 1 and len(parts[0]) == 36:  # a segment folder (UUID)
        return f"{parts[0][:8]}/{'/'.join(parts[1:])}"
    return str(rel)


def total(scan: dict[str, dict[str, int]], kind: str) -> int:
    return sum(v[kind] for v in scan.values())


# -- Chroma -------------------------------------------------------------------------------------

class Target:
    """An embedded PersistentClient on ``path``, or a ``chroma run`` server serving it."""

    def __init__(self, mode: str, path: Path) -> None:
        self.mode, self.path = mode, path
        self.server: ChromaServer | None = None
        self.client: Any = None

    def open(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        if self.mode == "server":
            self.server = ChromaServer(self.path)
            self.server.start()
            self.client = self.server.client()
        else:
            self.client = chromadb.PersistentClient(path=str(self.path),
                                                    settings=Settings(anonymized_telemetry=False))
        return self.client

    def close(self) -> None:
        from chromadb.api.shared_system_client import SharedSystemClient

        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None
            SharedSystemClient.clear_system_cache()
        if self.server is not None:
            self.server.stop()  # the data folder is the experiment's: kept until the end
            self.server = None

    @contextmanager
    def opened(self) -> Iterator[Any]:
        self.open()
        try:
            yield self.client
        finally:
            self.close()


def create(client: Any, name: str = NAME) -> Any:
    return client.create_collection(name, embedding_function=None, configuration={"hnsw": dict(HNSW)},
                                    metadata={"pack": "erasure-study", "dim": DIM})


def upsert(col: Any, ids: np.ndarray, vecs: np.ndarray) -> None:
    for i in range(0, len(ids), BATCH):
        sl = slice(i, i + BATCH)
        col.upsert(ids=[str(int(x)) for x in ids[sl]], embeddings=vecs[sl],
                   metadatas=[{"subject_id": int(x) // SAMPLES, "subject": subject_name(int(x) // SAMPLES)}
                              for x in ids[sl]])


def sqlite_vacuum(path: Path) -> float:
    """``PRAGMA secure_delete=ON`` + ``VACUUM`` of chroma.sqlite3, with every client closed."""
    t = time.perf_counter()
    db = sqlite3.connect(path / "chroma.sqlite3")
    try:
        db.execute("PRAGMA secure_delete=ON")
        db.execute("VACUUM")
    finally:
        db.close()
    return time.perf_counter() - t


def chroma_vacuum(path: Path) -> tuple[float, str]:
    exe = find_chroma()
    t = time.perf_counter()
    r = subprocess.run([str(exe), "vacuum", "--path", str(path), "--force"], capture_output=True, text=True,
                       timeout=600)
    lines = (r.stdout + r.stderr).strip().splitlines()
    return time.perf_counter() - t, f"exit {r.returncode}" + (f": {lines[-1][:160]}" if lines else "")


def remove_orphan_segments(path: Path) -> list[str]:
    """Remove segment folders chroma.sqlite3 no longer lists (``delete_collection`` leaves them:
    facedb's ``vacuum`` does the same in ``_remove_orphan_segments``); client closed."""
    db = sqlite3.connect(f"file:{path / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        live = {row[0] for row in db.execute("SELECT id FROM segments")}
    finally:
        db.close()
    gone = [d for d in path.iterdir() if d.is_dir() and d.name not in live]
    for d in gone:
        shutil.rmtree(d)
    return sorted(d.name[:8] for d in gone)


def self_search(col: Any, vecs: np.ndarray, exclude: np.ndarray, n: int, seed: int) -> float:
    """Share of ``n`` random surviving vectors that find themselves at rank 1 (upstream
    chroma-core/chroma#7758: updates with deletes can leave records unreachable by query)."""
    rng = np.random.default_rng(seed)
    alive = np.setdiff1d(np.arange(len(vecs)), exclude)
    pick = rng.choice(alive, min(n, len(alive)), replace=False)
    r = col.query(query_embeddings=vecs[pick], n_results=1, include=["distances"])
    return float(np.mean([ids[0] == str(int(p)) if ids else False for ids, p in zip(r["ids"], pick)]))


def queue_rows(path: Path) -> dict[str, int]:
    """Rows of Chroma's write log (embeddings_queue) by operation, read with every client closed."""
    db = sqlite3.connect(f"file:{path / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        ops = {0: "add", 1: "update", 2: "upsert", 3: "delete"}
        rows = db.execute("SELECT operation, count(*) FROM embeddings_queue GROUP BY operation").fetchall()
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
        return {ops.get(op, str(op)): n for op, n in rows} | {"free_pages": free}
    finally:
        db.close()


# -- scenarios ----------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build(mode: str, path: Path, vecs: np.ndarray) -> float:
    target = Target(mode, path)
    with target.opened() as client:
        col = create(client)
        t = time.perf_counter()
        upsert(col, np.arange(len(vecs)), vecs)
        return time.perf_counter() - t


def scenario_delete(mode: str, base: Path, work: Path, vecs: np.ndarray, victims: list[np.ndarray],
                    scanner: Scanner, filler: np.ndarray) -> dict[str, Any]:
    path = work / "data"
    shutil.copytree(base, path)
    out: dict[str, Any] = {"stages": {}, "times": {}}
    out["stages"]["0 built (before delete)"] = scanner.scan_dir(path)
    target = Target(mode, path)
    client = target.open()
    col = client.get_collection(NAME)
    times = []
    for ids in victims:
        t = time.perf_counter()
        col.delete(ids=[str(int(x)) for x in ids])
        times.append(time.perf_counter() - t)
    out["times"]["delete"] = times
    out["stages"]["1 after delete, client open"] = scanner.scan_dir(path)
    fill_ids = 10_000_000 + np.arange(len(filler))
    upsert(col, fill_ids, filler)
    out["stages"]["2 after 1,100 more writes (HNSW persisted), open"] = scanner.scan_dir(path)
    hidden = col.get(ids=[str(int(x)) for x in np.concatenate(victims)])["ids"]
    out["victims_still_returned_by_get"] = len(hidden)
    out["survivor_self_top1"] = self_search(col, vecs, np.concatenate(victims), 300, 5)
    target.close()
    out["queue_after_close"] = queue_rows(path)
    out["stages"]["3 client closed"] = scanner.scan_dir(path)
    t, msg = chroma_vacuum(path)
    out["times"]["chroma_vacuum"] = t
    out["chroma_vacuum"] = msg
    out["stages"]["4 chroma vacuum --force"] = scanner.scan_dir(path)
    out["queue_after_vacuum"] = queue_rows(path)
    out["times"]["sqlite_vacuum"] = sqlite_vacuum(path)
    out["stages"]["5 sqlite secure_delete+VACUUM"] = scanner.scan_dir(path)
    return out


def scenario_overwrite(mode: str, base: Path, work: Path, vecs: np.ndarray, victims: list[np.ndarray],
                       scanner: Scanner, records: int, seed: int, pad: str = "updates") -> dict[str, Any]:
    """Overwrite the victims with random unit vectors (``update``), then ``delete`` them.

    Chroma writes its HNSW index to disk once ``sync_threshold`` log records have accumulated, so
    the overwritten vectors only reach ``data_level0.bin`` after that many writes. ``pad`` chooses
    how to get there: ``"updates"`` repeats the update of the victims until at least ``records``
    update records were written (``records=1``: a single update); ``"absent"`` updates once, then
    deletes ``records`` ids that do not exist (cheap writes, if Chroma counts them).

    After the deletes: ``PRAGMA secure_delete=ON; VACUUM`` of chroma.sqlite3 *while the client (or
    the server) is still open*, then a health check through that same client, then again with
    everything closed."""
    path = work / "data"
    shutil.copytree(base, path)
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {"stages": {}, "times": {"update": [], "pad": [], "delete": [], "total": []}, "pad": pad}
    target = Target(mode, path)
    client = target.open()
    col = client.get_collection(NAME)
    for n_set, ids in enumerate(victims):
        keys = [str(int(x)) for x in ids]
        rounds = max(1, -(-records // len(keys))) if pad == "updates" else 1
        t0 = time.perf_counter()
        for _ in range(rounds):
            junk = rng.standard_normal((len(keys), DIM)).astype(np.float32)
            junk /= np.linalg.norm(junk, axis=1, keepdims=True)
            col.update(ids=keys, embeddings=junk)
        t1 = time.perf_counter()
        if pad == "absent":
            absent = [f"absent-{n_set}-{i}" for i in range(records)]
            for i in range(0, len(absent), BATCH):
                col.delete(ids=absent[i:i + BATCH])
        t2 = time.perf_counter()
        col.delete(ids=keys)
        t3 = time.perf_counter()
        out["times"]["update"].append(t1 - t0)
        out["times"]["pad"].append(t2 - t1)
        out["times"]["delete"].append(t3 - t2)
        out["times"]["total"].append(t3 - t0)
        out["update_records_per_set"] = rounds * len(keys)
    out["stages"]["1 after overwrite+delete, open"] = scanner.scan_dir(path)
    try:
        out["times"]["sqlite_vacuum_live"] = sqlite_vacuum(path)
        out["vacuum_live"] = "ok"
    except sqlite3.Error as exc:
        out["vacuum_live"] = f"failed: {exc}"
    out["stages"]["2 sqlite VACUUM while open"] = scanner.scan_dir(path)
    try:  # the client that was open during the VACUUM still works
        out["live_count_after_vacuum"] = col.count()
        out["live_self_top1_after_vacuum"] = self_search(col, vecs, np.concatenate(victims), 100, 6)
        fresh, _ = face_like(50, seed + 99)
        col.upsert(ids=[f"after-vacuum-{i}" for i in range(50)], embeddings=fresh)
        col.delete(ids=[f"after-vacuum-{i}" for i in range(50)])
        out["live_write_after_vacuum"] = "ok"
    except Exception as exc:
        out["live_write_after_vacuum"] = f"failed: {type(exc).__name__}: {exc}"[:300]
    target.close()
    out["queue_after_close"] = queue_rows(path)
    out["stages"]["3 closed"] = scanner.scan_dir(path)
    out["times"]["sqlite_vacuum"] = sqlite_vacuum(path)
    out["stages"]["4 sqlite VACUUM, closed"] = scanner.scan_dir(path)
    out["sqlite_bytes"] = (path / "chroma.sqlite3").stat().st_size
    # the surviving gallery still answers: every victim gone, a sample of survivors finds itself
    with target.opened() as client:
        col = client.get_collection(NAME)
        out["victims_still_returned_by_get"] = len(col.get(ids=[str(int(x)) for x in np.concatenate(victims)])["ids"])
        out["count_after"] = col.count()
        out["survivor_self_top1"] = self_search(col, vecs, np.concatenate(victims), 300, 5)
        if pad == "absent":
            # Grow the gallery by a quarter in the same process that held the victims: hnswlib
            # resizes (reallocates) the index and writes the new capacity to data_level0.bin.
            grow, _ = face_like(max(len(vecs) // 4, 1100), seed + 7)
            before = (next(path.glob("*/data_level0.bin"))).stat().st_size
            upsert(col, 30_000_000 + np.arange(len(grow)), grow)
            out["grown_by"] = len(grow)
            out["data_level0_bytes_before_growth"] = before
    out["stages"]["5 +25 % vectors (resize), closed"] = scanner.scan_dir(path) if pad == "absent" else {}
    if pad == "absent":
        out["data_level0_bytes_after_growth"] = next(path.glob("*/data_level0.bin")).stat().st_size
    return out


def scenario_shards(mode: str, work: Path, vecs: np.ndarray, victims: np.ndarray, scanner: Scanner,
                    k_values: list[int], queries: int, seed: int, keep: bool = False) -> dict[str, Any]:
    """K collections by ``id % K``; erasure = rebuild the victims' shard; search = query all + merge."""
    rng = np.random.default_rng(seed)
    n = len(vecs)
    qidx = rng.choice(n, queries, replace=False)
    q = vecs[qidx] + 0.3 * rng.standard_normal((queries, DIM)).astype(np.float32) / np.sqrt(DIM)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.argsort(-(q @ vecs.T), axis=1)[:, :10]
    results: dict[str, Any] = {}
    for k in k_values:
        path = work / f"shards{k}"
        target = Target(mode, path)
        client = target.open()
        ids = np.arange(n)
        t = time.perf_counter()
        cols = []
        for s in range(k):
            col = create(client, f"{NAME}_{s}")
            sel = ids[ids % k == s]
            upsert(col, sel, vecs[sel])
            cols.append(col)
        build_s = time.perf_counter() - t
        # search: query every shard, merge the K top-10 lists
        lat, recall = [], []
        for qi in range(queries):
            t = time.perf_counter()
            found: list[tuple[float, int]] = []
            for col in cols:
                r = col.query(query_embeddings=q[qi:qi + 1], n_results=10, include=["distances"])
                found.extend(zip(r["distances"][0], (int(x) for x in r["ids"][0])))
            top = [i for _, i in sorted(found)[:10]]
            lat.append(time.perf_counter() - t)
            recall.append(len(set(top) & set(exact[qi].tolist())) / 10)
        # erasure of the victims = rebuild their shards (the victims are spread over shards by id % k)
        victim_shards = sorted({int(v) % k for v in victims})
        t = time.perf_counter()
        for s in victim_shards:
            sel = ids[(ids % k == s) & ~np.isin(ids, victims)]
            new = create(client, f"{NAME}_{s}_r")
            upsert(new, sel, vecs[sel])
            client.delete_collection(f"{NAME}_{s}")
        rebuild_s = time.perf_counter() - t
        open_scan = scanner.scan_dir(path)
        target.close()
        closed_scan = scanner.scan_dir(path)
        dirs_before = sorted(p.name[:8] for p in path.iterdir() if p.is_dir())
        vac = sqlite_vacuum(path)
        vac_scan = scanner.scan_dir(path)
        orphans = remove_orphan_segments(path)
        orphan_scan = scanner.scan_dir(path)
        results[str(k)] = {
            "shard_size": n // k, "build_s": build_s, "query_p50_ms": 1000 * statistics.median(lat),
            "query_p90_ms": 1000 * float(np.percentile(lat, 90)), "recall_at_10": float(np.mean(recall)),
            "shards_rebuilt": len(victim_shards), "rebuild_s": rebuild_s,
            "rebuild_s_per_shard": rebuild_s / len(victim_shards),
            "found_open": {kd: total(open_scan, kd) for kd in ("win16", "whole", "approx", "name")},
            "found_closed": {kd: total(closed_scan, kd) for kd in ("win16", "whole", "approx", "name")},
            "found_after_sqlite_vacuum": {kd: total(vac_scan, kd) for kd in ("win16", "whole", "approx", "name")},
            "files_with_hits_closed": sorted(f for f, v in closed_scan.items() if v["win16"] or v["approx"]),
            "found_after_orphans_removed": {kd: total(orphan_scan, kd) for kd in ("win16", "whole", "approx", "name")},
            "files_with_hits_after_vacuum": {f: v for f, v in vac_scan.items() if v["win16"] or v["approx"]},
            "files_with_hits_after_orphans_removed": {f: v for f, v in orphan_scan.items()
                                                      if v["win16"] or v["approx"] or v["name"]},
            "sqlite_vacuum_s": vac, "dirs_before": dirs_before, "orphans_removed": orphans,
        }
        log(f"  shards K={k}: {results[str(k)]['query_p50_ms']:.1f} ms p50, recall {results[str(k)]['recall_at_10']:.3f}, "
            f"rebuild {results[str(k)]['rebuild_s_per_shard']:.2f} s/shard, "
            f"left {results[str(k)]['found_after_sqlite_vacuum']}, after orphans removed "
            f"{results[str(k)]['found_after_orphans_removed']}")
        if not keep:
            shutil.rmtree(path)
    return results


# -- report -------------------------------------------------------------------------------------

def stage_table(stages: dict[str, dict[str, dict[str, int]]], n_victims: int) -> str:
    files = sorted({f for s in stages.values() for f in s})
    lines = [f"| file | {' | '.join(stages)} |", "|---" * (len(stages) + 1) + "|"]
    for f in files:
        cells = []
        for s in stages.values():
            v = s.get(f)
            cells.append("—" if v is None else f"{v['win16']}/{v['whole']}/{v['approx']}/{v['name']}")
        lines.append(f"| {f} | {' | '.join(cells)} |")
    return "\n".join(lines) + f"\n\n(cells: deleted vectors found, of {n_victims}: win16/whole/approx/name)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,20000", help="gallery sizes, comma-separated")
    ap.add_argument("--shards", default="1,4,16,64", help="shard counts K for the shard route")
    ap.add_argument("--shard-sizes", default="", help="sizes at which to run the shard route (default: the largest)")
    ap.add_argument("--server-sizes", default="", help="sizes at which to repeat delete/overwrite through "
                                                      "`chroma run` (default: the smallest)")
    ap.add_argument("--no-server", action="store_true")
    ap.add_argument("--sets", type=int, default=3, help="victim sets (timed runs) per scenario")
    ap.add_argument("--per-set", type=int, default=4, help="identities (x5 faces) per victim set")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    import chromadb

    sizes = [int(s) for s in args.sizes.split(",")]
    k_values = [int(k) for k in args.shards.split(",") if k]
    shard_sizes = [int(s) for s in args.shard_sizes.split(",") if s] or [max(sizes)]
    server_sizes = [] if args.no_server else ([int(s) for s in args.server_sizes.split(",") if s] or [min(sizes)])
    root = Path(tempfile.mkdtemp(prefix="chroma-erasure-"))
    report: dict[str, Any] = {"chromadb": chromadb.__version__, "hnsw": HNSW, "sizes": {}, "argv": sys.argv[1:]}
    log(f"chromadb {chromadb.__version__}, HNSW {HNSW}, folder {root}")
    try:
        for n in sizes:
            vecs, _ = face_like(n, args.seed)
            sets = victim_sets(n, args.sets, args.per_set, args.seed + 1)
            all_victims = np.concatenate(sets)
            names = [subject_name(int(i)) for i in sorted({int(x) // SAMPLES for x in all_victims})]
            scanner = Scanner(vecs[all_victims], names)
            filler, _ = face_like(1100, args.seed + 2)
            entry: dict[str, Any] = {"victims": len(all_victims), "victim_sets": len(sets)}
            modes = ["embedded"] + (["server"] if n in server_sizes else [])
            for mode in modes:
                base = root / f"{mode}-{n}" / "base"
                log(f"N={n} {mode}: building")
                entry[f"{mode}_build_s"] = build(mode, base, vecs)
                log(f"  built in {entry[f'{mode}_build_s']:.1f} s")
                t = time.perf_counter()
                entry[f"{mode}_scan_s"] = (scanner.scan_dir(base), time.perf_counter() - t)[1]
                log(f"N={n} {mode}: plain delete")
                entry[f"{mode}_delete"] = scenario_delete(mode, base, root / f"{mode}-{n}" / "delete", vecs,
                                                          sets, scanner, filler)
                log(f"N={n} {mode}: overwrite once, then delete")
                entry[f"{mode}_overwrite1"] = scenario_overwrite(
                    mode, base, root / f"{mode}-{n}" / "overwrite1", vecs, sets, scanner, 1, args.seed + 3)
                log(f"N={n} {mode}: overwrite up to sync_threshold records, then delete")
                entry[f"{mode}_overwrite"] = scenario_overwrite(
                    mode, base, root / f"{mode}-{n}" / "overwrite", vecs, sets, scanner,
                    chroma_sync_threshold(), args.seed + 3)
                log(f"N={n} {mode}: overwrite once + sync_threshold deletes of absent ids, then delete")
                entry[f"{mode}_overwrite_absent"] = scenario_overwrite(
                    mode, base, root / f"{mode}-{n}" / "overwrite_absent", vecs, sets, scanner,
                    chroma_sync_threshold(), args.seed + 3, pad="absent")
                shutil.rmtree(root / f"{mode}-{n}")
            if n in shard_sizes:
                log(f"N={n}: shards {k_values}")
                entry["shards"] = scenario_shards("embedded", root / f"shards-{n}", vecs, all_victims, scanner,
                                                  k_values, args.queries, args.seed + 4, args.keep)
            report["sizes"][str(n)] = entry
            print_size(n, entry)
            if args.json:
                args.json.write_text(json.dumps(report, indent=1, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


def chroma_sync_threshold() -> int:
    return int(HNSW.get("sync_threshold", 1000))


def print_size(n: int, entry: dict[str, Any]) -> None:
    med = statistics.median
    for mode in ("embedded", "server"):
        if f"{mode}_delete" not in entry:
            continue
        d = entry[f"{mode}_delete"]
        print(f"\n### N={n}, {mode}: build {entry[f'{mode}_build_s']:.1f} s, scan {entry[f'{mode}_scan_s']:.1f} s\n")
        print("plain delete:\n" + stage_table(d["stages"], entry["victims"]))
        print(f"delete {med(d['times']['delete']) * 1000:.1f} ms (median of {len(d['times']['delete'])}); "
              f"survivors self top-1 {d['survivor_self_top1']:.3f}; "
              f"sqlite VACUUM {d['times']['sqlite_vacuum']:.2f} s; chroma vacuum {d['times']['chroma_vacuum']:.2f} s "
              f"({d['chroma_vacuum']}); log after close {d['queue_after_close']}, after vacuum {d['queue_after_vacuum']}\n")
        for key in ("overwrite1", "overwrite", "overwrite_absent"):
            o = entry[f"{mode}_{key}"]
            print(f"{key}: update, then delete:\n" + stage_table(o["stages"], entry["victims"]))
            print(f"update {o['update_records_per_set']} records {med(o['times']['update']):.2f} s, pad "
                  f"({o['pad']}) {med(o['times']['pad']):.2f} s, delete "
                  f"{med(o['times']['delete']) * 1000:.1f} ms, total {med(o['times']['total']):.2f} s (median of "
                  f"{len(o['times']['total'])}); sqlite VACUUM {o['times']['sqlite_vacuum']:.2f} s; log after close "
                  f"{o['queue_after_close']}; victims still in get: {o['victims_still_returned_by_get']}; "
                  f"survivors self top-1 {o['survivor_self_top1']:.3f}; VACUUM while open: {o['vacuum_live']} "
                  f"({o['times'].get('sqlite_vacuum_live', 0):.2f} s), then count {o.get('live_count_after_vacuum')}, "
                  f"self top-1 {o.get('live_self_top1_after_vacuum')}, write {o['live_write_after_vacuum']}\n")
    if "shards" in entry:
        print(f"\nshards at N={n}:\n| K | shard size | query p50 ms | p90 ms | recall@10 | rebuild s/shard | "
              "left after rebuild+close (win16/whole/approx/name) | after sqlite VACUUM | after orphan folders "
              "removed |\n|---|---|---|---|---|---|---|---|---|")
        for k, r in entry["shards"].items():
            fc, fv, fo = r["found_closed"], r["found_after_sqlite_vacuum"], r["found_after_orphans_removed"]
            print(f"| {k} | {r['shard_size']} | {r['query_p50_ms']:.1f} | {r['query_p90_ms']:.1f} | "
                  f"{r['recall_at_10']:.3f} | {r['rebuild_s_per_shard']:.2f} | "
                  f"{fc['win16']}/{fc['whole']}/{fc['approx']}/{fc['name']} {r['files_with_hits_closed']} | "
                  f"{fv['win16']}/{fv['whole']}/{fv['approx']}/{fv['name']} {sorted(r['files_with_hits_after_vacuum'])} | "
                  f"{fo['win16']}/{fo['whole']}/{fo['approx']}/{fo['name']} |")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
