"""Erasure at scale: the measurement behind ``scripts/bench/erasure.py``.

Builds a real facedb home of N synthetic face-like vectors (``scale.make_synthetic``: identities
x ``per_id`` faces, cos to the identity centre ~0.75) quickly — the catalog's rows by bulk SQL
inserts, the index through ``ChromaIndex.add`` (enrollment's own index path), the templates by
``rebuild_templates`` — then, in one process that keeps the home open (as ``facedb serve`` does):

1. face-search latency (``ChromaIndex.query``, k=10, one probe a call) before the deletes;
2. ``FaceDB.delete`` of several whole subjects, one at a time, timed end to end (SQL delete +
   journal + ``ChromaIndex.erase`` + compaction of ``chroma.sqlite3``), with facedb's trace spans
   splitting the time into overwrite (update + padding), erase and compact;
3. the same latency after, every victim's absence from the index, and survivors finding
   themselves at rank 1;
4. with the home closed, a byte scan of every file of the home for every victim's vector (exact
   16-byte float32 windows, and the first 8 components within 1e-5 as float32 or float64 at any
   alignment) and name.

Nothing identifying is involved: the vectors are random, the names synthetic.
"""
from __future__ import annotations

import hashlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from .scale import make_synthetic, read_rows

#: Components compared by the approximate scan (as in tests/test_erasure.py).
PREFIX = 8
#: Bytes read per step when scanning a file (overlapping by one vector prefix).
SCAN_CHUNK = 16 << 20


def subject_name(i: int) -> str:
    return f"Synthetic-Q7ZX-{i:07d}"


# -- building -----------------------------------------------------------------------------------

def build_home(home: Path, scratch: Path, n: int, per_id: int = 5, seed: int = 0,
               log: Any = print) -> dict[str, Any]:
    """A facedb home holding ``n`` synthetic faces (``per_id`` a subject), indexed; the vectors
    stay in ``scratch/vectors.f32`` (row i = face id i+1) for the scans."""
    from sqlalchemy import insert

    from .. import FaceDB
    from ..catalog.models import Face, Image, Subject

    scratch.mkdir(parents=True, exist_ok=True)
    data = make_synthetic(n, 128, per_id, 300, seed, scratch)
    sids = np.load(scratch / "sids.npy")
    t0 = time.perf_counter()
    db = FaceDB(home=home, workers=1)
    try:
        info = db.pack.contract(register=True)
        if info.dim != 128:
            raise RuntimeError(f"the pack {info.name} is {info.dim}-d; the synthetic gallery is 128-d")
        cid = db.catalog.cid
        rec = db.catalog.index_pack(info.name)
        assert rec is not None
        chunk = 20_000
        with db.catalog.engine.begin() as conn:
            n_ids = int(sids[-1]) + 1
            for s in range(0, n_ids, chunk):
                conn.execute(insert(Subject), [{"id": i + 1, "collection_id": cid, "name": subject_name(i)}
                                               for i in range(s, min(n_ids, s + chunk))])
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            vecs = read_rows(str(scratch / "vectors.f32"), start, m, 128)
            with db.catalog.engine.begin() as conn:
                conn.execute(insert(Image), [{
                    "id": j + 1, "collection_id": cid, "subject_id": int(sids[j]) + 1,
                    "path": f"/synthetic/{j}.jpg", "sha256": hashlib.sha256(b"%d" % j).hexdigest(),
                    "size_bytes": 0, "width": 1, "height": 1, "status": "enrolled"} for j in range(start, start + m)])
                conn.execute(insert(Face), [{
                    "id": j + 1, "collection_id": cid, "image_id": j + 1, "subject_id": int(sids[j]) + 1,
                    "model": info.name, "x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0, "score": 1.0,
                    "landmarks": [[0.0, 0.0]] * 5, "dim": 128, "embedding": vecs[j - start].tobytes(),
                    "indexed": True} for j in range(start, start + m)])
        t_sql = time.perf_counter() - t0
        log(f"[erasure] {n:,} faces: catalog rows in {t_sql:.1f} s; indexing...")
        with db.store.writing() as index:
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                vecs = read_rows(str(scratch / "vectors.f32"), start, m, 128)
                ids = list(range(start + 1, start + m + 1))
                index.add(rec, ids, vecs, [int(x) + 1 for x in sids[start:start + m]])
                if start and start % 100_000 == 0:
                    log(f"[erasure]   {start:,} indexed ({time.perf_counter() - t0:.0f} s)")
        t_index = time.perf_counter() - t0 - t_sql
        db.catalog.rebuild_templates(info.name)
        t_all = time.perf_counter() - t0
    finally:
        db.close()
    log(f"[erasure] built in {t_all:.0f} s (index {t_index:.0f} s)")
    return {**data, "build_s": round(t_all, 1), "sql_s": round(t_sql, 1), "index_s": round(t_index, 1)}


# -- measuring ----------------------------------------------------------------------------------

def _latency(db: Any, rec: Any, queries: np.ndarray) -> dict[str, float]:
    times = []
    with db.store.reading() as index:
        index.query(rec, queries[:1], 10)  # warm
        for q in queries:
            t = time.perf_counter()
            index.query(rec, q[None, :], 10)
            times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3)}


def measure(home: Path, scratch: Path, n: int, per_id: int, deletes: int = 5, seed: int = 1) -> dict[str, Any]:
    """Delete ``deletes`` whole subjects (the first written, the last written, the rest spread
    between) from the home ``build_home`` made, timing each; then latency, reach and the scan."""
    from .. import FaceDB, trace

    sids = np.load(scratch / "sids.npy")
    queries = np.load(scratch / "queries.npy")
    n_ids = int(sids[-1]) + 1
    picks = sorted({0, n_ids - 1, *np.linspace(0, n_ids - 1, deletes).astype(int)[1:-1]})[:deletes]
    victim_rows = {s: np.flatnonzero(sids == s) for s in picks}
    spans: list[tuple[str, float]] = []
    out: dict[str, Any] = {"n": n, "per_identity": per_id, "victim_subjects": len(picks),
                           "victim_faces": int(sum(len(r) for r in victim_rows.values())),
                           "load_before": list(os.getloadavg())}
    db = FaceDB(home=home, workers=1)
    try:
        rec = db.catalog.index_pack(db.pack_name)
        assert rec is not None
        with db.hold():  # the home stays locked and the index open, as in a server
            out["search_before"] = _latency(db, rec, queries)
            per: list[dict[str, float]] = []
            previous = trace.install(lambda name, t0, t1, _a: spans.append((name, t1 - t0)))
            try:
                for s in picks:
                    spans.clear()
                    t = time.perf_counter()
                    rep = db.delete(subject_name(s))
                    total = time.perf_counter() - t
                    assert rep.faces == len(victim_rows[s]), rep
                    got = {k: sum(d for name, d in spans if name == k)
                           for k in ("chroma.overwrite", "chroma.erase", "chroma.compact")}
                    per.append({"total_s": total, "overwrite_s": got["chroma.overwrite"],
                                "erase_s": got["chroma.erase"], "compact_s": got["chroma.compact"],
                                "faces": float(rep.faces)})
            finally:
                trace.install(previous)
            out["deletes"] = [{k: round(v, 4) for k, v in d.items()} for d in per]
            out["median"] = {k: round(statistics.median(d[k] for d in per), 4)
                             for k in ("total_s", "overwrite_s", "erase_s", "compact_s")}
            out["search_after"] = _latency(db, rec, queries)
            out["load_after"] = list(os.getloadavg())
            all_rows = np.concatenate(list(victim_rows.values()))
            vec_file = str(scratch / "vectors.f32")
            victims = np.stack([read_rows(vec_file, int(r), 1, 128)[0] for r in all_rows])
            with db.store.reading() as index:
                res = index.query(rec, victims, 10)
                out["victims_returned"] = int(sum(nb.face_id - 1 in set(all_rows.tolist()) for row in res for nb in row))
                rng = np.random.default_rng(seed)
                alive = np.setdiff1d(np.arange(n), all_rows)
                sample = np.sort(rng.choice(alive, min(300, len(alive)), replace=False))
                probes = np.stack([read_rows(vec_file, int(r), 1, 128)[0] for r in sample])
                top = index.query(rec, probes, 1)
                out["survivor_self_top1"] = round(float(np.mean([row[0].face_id == r + 1 for row, r in zip(top, sample)])), 4)
    finally:
        db.close()
    t = time.perf_counter()
    # One pass: the victims, then 5 survivors as the positive control (the scan must find them).
    controls = probes[:5]
    scan = scan_tree(home, np.concatenate([victims, controls]), [subject_name(s).encode() for s in picks],
                     split=len(victims))
    out["control_found"] = {f: c.pop("control") for f, c in scan.items() if c.get("control")}
    out["scan"] = {f: c for f, c in scan.items() if any(c.values())}
    out["scan_s"] = round(time.perf_counter() - t, 1)
    out["files_mb"] = {str(p.relative_to(home)): round(p.stat().st_size / 1e6, 2)
                       for p in sorted(home.rglob("*")) if p.is_file() and p.stat().st_size > 100_000}
    return out


# -- scanning -----------------------------------------------------------------------------------

def scan_tree(root: Path, vectors: np.ndarray, names: list[bytes],
              split: int | None = None) -> dict[str, dict[str, int]]:
    """{file: {"win16": n, "approx": n, "name": n}} for every file under ``root`` holding any of
    the vectors (exact float32 bytes of components 0-3 or 64-67; or the first PREFIX components,
    unit-normalised, within 1e-5 as float32 or float64 at any alignment) or names. With
    ``split``, only vectors and names before that index are counted; those from it on (the
    positive controls, scanned in the same pass) are counted as "control"."""
    cut = len(vectors) if split is None else split
    units = vectors.astype(np.float64) / np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
    windows = [(v.astype(np.float32)[0:4].tobytes(), v.astype(np.float32)[64:68].tobytes()) for v in vectors]
    found: dict[str, dict[str, int]] = {}
    for f in sorted(root.rglob("*")):
        if not f.is_file() or f.is_symlink():
            continue
        win: set[int] = set()
        approx: set[int] = set()
        named: set[int] = set()
        step = PREFIX * 8
        with open(f, "rb") as fh:
            offset = 0
            tail = b""
            while True:
                block = fh.read(SCAN_CHUNK)
                if not block:
                    break
                data = tail + block
                win |= {i for i, (a, b) in enumerate(windows) if a in data or b in data}
                named |= {i for i, name in enumerate(names) if name in data}
                approx |= _approx(data, units)
                tail = data[-(step + 256):]
                offset += len(block)
        counts = {"win16": len({i for i in win if i < cut}), "approx": len({i for i in approx if i < cut}),
                  "name": len({i for i in named if i < cut})}
        if split is not None:
            counts["control"] = len({i for i in win | approx if i >= cut})
        if any(counts.values()):
            found[str(f.relative_to(root))] = counts
    return found


def _approx(data: bytes, units: np.ndarray, rtol: float = 1e-5) -> set[int]:
    """Indices of ``units`` whose first PREFIX components occur in ``data`` (float32/float64, any
    alignment): candidates by the first component (sorted search), then the prefix compared."""
    order = np.argsort(units[:, 0])
    firsts = units[order, 0]
    tol = np.abs(units[:, :PREFIX]) * rtol + 1e-7
    hit: set[int] = set()
    with np.errstate(invalid="ignore", over="ignore"):
        for dtype in (np.float32, np.float64):
            size = np.dtype(dtype).itemsize
            for off in range(size):
                count = (len(data) - off) // size
                if count < PREFIX:
                    continue
                arr = np.frombuffer(data, dtype=dtype, count=count, offset=off).astype(np.float64)
                head = arr[:count - PREFIX + 1]
                pos = np.searchsorted(firsts, head)
                for side in (pos - 1, pos):
                    ok = (side >= 0) & (side < len(firsts))
                    cand = np.flatnonzero(ok)
                    if not len(cand):
                        continue
                    which = order[side[cand]]
                    close = np.abs(head[cand] - units[which, 0]) <= tol[which, 0]
                    for c, w in zip(cand[close], which[close]):
                        if w not in hit and np.all(np.abs(arr[c:c + PREFIX] - units[w, :PREFIX]) <= tol[w]):
                            hit.add(int(w))
    return hit


# -- the report -----------------------------------------------------------------------------------

def report_md(runs: list[dict[str, Any]], header: str) -> str:
    """The Markdown report of ``scripts/bench/erasure.py``."""
    lines = [header, "",
             "One facedb home per size (synthetic 128-d face-like vectors, 5 faces a subject, catalog in "
             "SQLite, embedded Chroma), kept open in one process as `facedb serve` keeps it. Each "
             "delete is `FaceDB.delete` of one whole subject: SQL delete (secure_delete) + journal + "
             "`ChromaIndex.erase` (overwrite with random unit vectors, padding deletes that make Chroma "
             "persist the HNSW index, delete) + compact (unused HNSW slots zeroed, `PRAGMA "
             "secure_delete=ON; VACUUM` of `chroma.sqlite3`). The column *overwrite+pad* includes the "
             "persist the padding forces (it rewrites the whole HNSW file). Search: `ChromaIndex.query`, k=10, one probe a call, 300 probes. The scan "
             "reads every file of the home after the process closed it.", "",
             "| faces | build s | deletes | delete+erase s (median) | of which overwrite+pad s | "
             "erase s | compact s | max delete s | search p50 before ms | after ms | victims left in files "
             "| victims returned | survivors self top-1 | chroma.sqlite3 MB | load before / after |",
             "|" + "---|" * 15]
    for r in runs:
        m = r["median"]
        left = sum(v["win16"] + v["approx"] + v["name"] for v in r["scan"].values())
        control = ", ".join(f"{f}: {c}/5" for f, c in r["control_found"].items()) or "NOT FOUND"
        lines.append(
            f"| {r['n']:,} | {r.get('build', {}).get('build_s', '-')} | {len(r['deletes'])} subjects "
            f"({r['victim_faces']} faces) | {m['total_s']:.3f} | {m['overwrite_s']:.3f} | {m['erase_s']:.3f} | "
            f"{m['compact_s']:.3f} | {max(d['total_s'] for d in r['deletes']):.3f} | "
            f"{r['search_before']['p50_ms']:.2f} | {r['search_after']['p50_ms']:.2f} | "
            f"{left} {'(clean)' if not left else r['scan']} (control: {control}) | {r['victims_returned']} | {r['survivor_self_top1']:.3f} | "
            f"{r['files_mb'].get('chroma/chroma.sqlite3', 0):.1f} | "
            f"{' '.join(f'{x:.1f}' for x in r['load_before'])} / {' '.join(f'{x:.1f}' for x in r['load_after'])} |")
    lines += ["", "Each delete (seconds): " + "; ".join(
        f"{r['n']:,}: " + ", ".join(f"{d['total_s']:.2f}" for d in r["deletes"]) for r in runs), ""]
    return "\n".join(lines) + "\n"
