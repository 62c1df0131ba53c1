#!/usr/bin/env python
"""Search at scale: Chroma (facedb's index) vs numpy exact search vs the reference mode.

For each data set (face-like synthetic embeddings at 128-d and 512-d, and the real LFW
embeddings when ``--lfw-cache`` holds them) this script

1. writes the vectors to a scratch folder;
2. in a child process: exact numpy top-k (ground truth, single-query latency, batch
   throughput) and facedb's reference mode (``facedb.index.reference.ReferenceIndex`` =
   scikit-learn ``NearestNeighbors(metric="cosine", algorithm="brute")``);
3. in a child process: loads the vectors through facedb's bulk path,
   ``ChromaIndex(path).add(info, ids, vectors, subject_ids, subjects)`` (the code enrollment
   uses; the SQL catalog is not written), timing it chunk by chunk;
4. in a fresh child process per ``ef_search`` value: cold open (import, open, first query),
   single-query p50/p99 through ``ChromaIndex.query`` and through the raw collection, batch
   throughput, and the top-k ids, from which the parent computes recall@k against numpy.

Each data set's measurement runs under the machine-wide benchmark lock
(``/tmp/facedb-bench.lock``). A size whose projected load time (fitted on the previous size
at the same dimension) exceeds ``--max-load-minutes`` is skipped and reported as such.

Usage::

    python scripts/bench/search_scale.py                      # 10k and 100k at 128-d and 512-d
    python scripts/bench/search_scale.py --sizes 10000,100000,300000 --max-load-minutes 45
    python scripts/bench/search_scale.py --quick --out /tmp/s.md --json /tmp/s.json

Writes ``docs/benchmarks/search_scale.md`` (not with ``--quick`` unless ``--out`` is given).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation import bench

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

K = 10
COS_TO_CENTRE = 0.75
TARGET_N = 1_000_000
TARGET_P50_MS = 5.0
TARGET_RECALL = 0.99
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "search_scale.md"
PACK_BY_DIM = {128: "sface", 512: "buffalo_l"}


# --------------------------------------------------------------------------------------
# child processes (run as: search_scale.py --_child KIND ARGS_JSON RESULT_JSON)
# --------------------------------------------------------------------------------------

def _pack_info(a: dict[str, Any]):
    from facedb.analysis.engines.base import PackInfo

    return PackInfo(name=a["pack"], dim=int(a["dim"]), threshold=0.4,
                    fingerprint=f"bench-{a['pack']}-{a['dim']}")


def _open_index(a: dict[str, Any]):
    """``ChromaIndex(url=a["url"])`` (a Chroma server) when the arguments name one, else the
    embedded ``ChromaIndex(a["path"])`` (scripts/bench/shared_stores.py measures both)."""
    from facedb.index.chroma_index import ChromaIndex

    return ChromaIndex(url=a["url"]) if a.get("url") else ChromaIndex(Path(a["path"]))


def _read_rows(path: str, start: int, count: int, dim: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32, count=count * dim, offset=start * dim * 4).reshape(count, dim)


def child_load(a: dict[str, Any]) -> dict[str, Any]:
    from facedb.index import chroma_index as ci

    ci.HNSW.clear()
    ci.HNSW.update(a["hnsw"])  # create-time parameters of the new collection
    info = _pack_info(a)
    n, dim, chunk = int(a["n"]), int(a["dim"]), int(a["chunk"])
    sids = np.load(a["sids_file"])
    names = json.loads(Path(a["names_file"]).read_text()) if a.get("names_file") else None
    idx = _open_index(a)
    marks = []  # [vectors so far, seconds for this chunk]
    add_s = 0.0
    cpu0 = time.process_time()
    t_all = time.monotonic()
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        vecs = _read_rows(a["vec_file"], start, m, dim)
        s = sids[start:start + m].tolist()
        subj = [names[x] for x in s] if names else [f"subject-{x}" for x in s]
        ids = list(range(start + 1, start + m + 1))
        t = time.monotonic()
        idx.add(info, ids, vecs, s, subj)
        dt = time.monotonic() - t
        add_s += dt
        marks.append([start + m, dt])
        if a.get("progress"):
            print(f"[load] {a['label']}: {start + m}/{n} in {add_s:.0f}s "
                  f"({m / dt:.0f} vec/s now, {(start + m) / add_s:.0f} avg)", file=sys.stderr, flush=True)
    count = idx.count(info)
    config = idx.configuration(info)
    t = time.monotonic()
    idx.close()
    close_s = time.monotonic() - t
    wall = time.monotonic() - t_all
    cpu = time.process_time() - cpu0
    return {"add_s": add_s, "close_s": close_s, "load_s": add_s + close_s, "count": count,
            "config": config, "marks": marks, "cpu_s": cpu, "cpu_per_wall": cpu / wall if wall else None,
            "peak_rss_mb": bench.peak_rss_mb()}


def child_modify(a: dict[str, Any]) -> dict[str, Any]:
    from facedb.index.chroma_index import ChromaIndex

    info = _pack_info(a)
    idx = ChromaIndex(Path(a["path"]))
    col = idx.collection(info, create=False)
    col.modify(configuration={"hnsw": {"ef_search": int(a["ef_search"])}})
    idx.close()
    idx = ChromaIndex(Path(a["path"]))
    config = idx.configuration(info)
    idx.close()
    return {"config": config}


def child_query(a: dict[str, Any]) -> dict[str, Any]:
    t0 = time.monotonic()
    import chromadb  # noqa: F401

    import facedb.index.chroma_index  # noqa: F401

    t_import = time.monotonic()
    info = _pack_info(a)
    idx = _open_index(a)
    col = idx.collection(info, create=False)
    t_open = time.monotonic()
    q = np.load(a["queries_file"])
    first = idx.query(info, q[:1], K)
    t_first = time.monotonic()
    assert len(first[0]) == min(K, int(a["n"]))
    cold = {"import_s": t_import - t0, "open_s": t_open - t_import, "first_query_s": t_first - t_open,
            "open_and_first_query_s": t_first - t_import, "spawn_to_first_answer_s": t_first - a["t_spawn"]}
    for i in range(min(10, len(q))):  # warm-up
        idx.query(info, q[i:i + 1], K)
    lat, ids = [], []
    for i in range(len(q)):
        t = time.perf_counter()
        res = idx.query(info, q[i:i + 1], K)
        lat.append(time.perf_counter() - t)
        ids.append([nb.face_id for nb in res[0]])
    raw = []
    for i in range(len(q)):
        t = time.perf_counter()
        col.query(query_embeddings=q[i:i + 1], n_results=K, include=["distances"])
        raw.append(time.perf_counter() - t)
    counts = []
    for _i in range(20):
        t = time.perf_counter()
        col.count()
        counts.append(time.perf_counter() - t)
    bsz = int(a["batch"])
    qps = []
    for _rep in range(int(a["batch_reps"])):
        for s in range(0, len(q) - bsz + 1, bsz):
            t = time.perf_counter()
            idx.query(info, q[s:s + bsz], K)
            qps.append(bsz / (time.perf_counter() - t))
    config = idx.configuration(info)
    idx.close()
    np.save(a["ids_out"], np.array([r + [0] * (K - len(r)) for r in ids], dtype=np.int64))
    return {"cold": cold, "facedb_query": bench.summarize_ms(lat), "raw_query": bench.summarize_ms(raw),
            "count": bench.summarize_ms(counts),
            "batch_qps": bench.median(qps), "batch": bsz, "config": config, "peak_rss_mb": bench.peak_rss_mb()}


def _topk_rows(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def child_exact(a: dict[str, Any]) -> dict[str, Any]:
    n, dim = int(a["n"]), int(a["dim"])
    mat = _read_rows(a["vec_file"], 0, n, dim)
    q = np.load(a["queries_file"])
    bsz, cap = int(a["batch"]), float(a["time_cap_s"])
    # ground truth (also the numpy batch measurement)
    truth, qps = [], []
    for s in range(0, len(q), bsz):
        t = time.perf_counter()
        truth.append(_topk_rows(q[s:s + bsz] @ mat.T, K))
        if s + bsz <= len(q):
            qps.append(bsz / (time.perf_counter() - t))
    np.save(a["truth_out"], np.concatenate(truth))

    def single(fn) -> list[float]:
        for i in range(min(3, len(q))):
            fn(q[i:i + 1])
        lat, t_end = [], time.perf_counter() + cap
        for i in range(len(q)):
            t = time.perf_counter()
            fn(q[i:i + 1])
            lat.append(time.perf_counter() - t)
            if time.perf_counter() > t_end and len(lat) >= 10:
                break
        return lat

    from threadpoolctl import threadpool_info, threadpool_limits

    blas_threads = max([i.get("num_threads", 1) for i in threadpool_info()] or [1])
    np_lat = single(lambda x: _topk_rows(x @ mat.T, K))
    with threadpool_limits(1):
        np_lat1 = single(lambda x: _topk_rows(x @ mat.T, K))
    rss_numpy = bench.peak_rss_mb()
    from facedb.index.reference import ReferenceIndex

    ids = np.arange(1, n + 1, dtype=np.int64)
    t = time.perf_counter()
    ref = ReferenceIndex(ids, mat)
    fit_s = time.perf_counter() - t
    ref_lat = single(lambda x: ref.query(x, K))
    with threadpool_limits(1):
        ref_lat1 = single(lambda x: ref.query(x, K))
    ref_qps, t_end = [], time.perf_counter() + cap
    ref_ids = []
    for s in range(0, len(q) - bsz + 1, bsz):
        t = time.perf_counter()
        res = ref.query(q[s:s + bsz], K)
        ref_qps.append(bsz / (time.perf_counter() - t))
        ref_ids += [[nb.face_id - 1 for nb in row] for row in res]
        if time.perf_counter() > t_end:
            break
    gt = np.load(a["truth_out"])
    ref_recall = (float(np.mean([len(set(r) & set(g)) / K for r, g in zip(ref_ids, gt)]))
                  if ref_ids else None)
    return {"blas_threads": blas_threads, "numpy_query": bench.summarize_ms(np_lat),
            "numpy_query_1thread": bench.summarize_ms(np_lat1),
            "reference_query_1thread": bench.summarize_ms(ref_lat1), "numpy_batch_qps": bench.median(qps),
            "numpy_peak_rss_mb": rss_numpy, "matrix_mb": mat.nbytes / 2**20,
            "reference_fit_s": fit_s, "reference_query": bench.summarize_ms(ref_lat),
            "reference_batch_qps": bench.median(ref_qps) if ref_qps else None,
            "reference_recall_vs_numpy": ref_recall, "peak_rss_mb": bench.peak_rss_mb()}


CHILDREN = {"load": child_load, "modify": child_modify, "query": child_query, "exact": child_exact}


def run_child(kind: str, args: dict[str, Any], scratch: Path, timeout: float | None = None) -> dict[str, Any]:
    """Run one measurement child (``timeout``: seconds, then it is killed: ``subprocess.TimeoutExpired``)."""
    fd, out = tempfile.mkstemp(prefix=f"{kind}-", suffix=".json", dir=scratch)
    os.close(fd)
    spec = scratch / f"{kind}-args.json"
    args = dict(args, t_spawn=time.monotonic())
    spec.write_text(json.dumps(args))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", kind, str(spec), out],
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed with exit code {proc.returncode}")
    return json.loads(Path(out).read_text())


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------

def make_synthetic(n: int, dim: int, per_id: int, n_queries: int, seed: int, folder: Path) -> dict[str, Any]:
    """Identity centres (uniform on the sphere) + Gaussian noise sized so cos(sample, centre) ~ 0.75.

    Samples are written subject by subject (as enrollment does). Queries are fresh noisy
    samples of random existing identities, so they are never in the index themselves.
    """
    rng = np.random.default_rng(seed)
    n_ids = math.ceil(n / per_id)
    centres = rng.standard_normal((n_ids, dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = math.sqrt((1 / COS_TO_CENTRE**2 - 1) / dim)
    sids = (np.arange(n) // per_id).astype(np.int64)

    def samples(subj: np.ndarray) -> np.ndarray:
        x = centres[subj] + sigma * rng.standard_normal((len(subj), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    cos_sum = 0.0
    with open(folder / "vectors.f32", "wb") as fh:
        for s in range(0, n, 50_000):
            subj = sids[s:s + 50_000]
            x = samples(subj)
            cos_sum += float(np.einsum("ij,ij->", x, centres[subj]))
            x.tofile(fh)
    q_sids = rng.integers(0, n_ids, size=n_queries)
    np.save(folder / "queries.npy", samples(q_sids))
    np.save(folder / "sids.npy", sids)
    return {"n": n, "dim": dim, "identities": n_ids, "per_identity": per_id,
            "mean_cos_to_centre": cos_sum / n, "names_file": None}


def find_lfw(cache: Path, pack: str = "sface-flip") -> dict[str, Any] | None:
    """The cached LFW embeddings of ``pack`` (``facedb.evaluation.runner.embed``'s cache, as
    scripts/calibrate_threshold.py writes it): ``{"emb", "people", "source", "pack"}``, or None
    when LFW or the cache is absent (nothing is embedded here)."""
    from facedb.evaluation import lfw, runner

    if not cache.is_dir():
        return None
    root = lfw.find_lfw()
    if root is not None:
        ds = runner.lfw_dataset(root)
        for also in (("central",), ()):
            e = runner.load_cached(ds, pack, pick="largest", also=also, cache=cache)
            if e is not None:
                return {"emb": e.vectors.astype(np.float32), "people": list(e.labels), "source": e.cache_file,
                        "pack": pack}
    # a plain embeddings file (the format of earlier calibrate_threshold.py runs, and of the smoke test):
    # <tag>-embeddings.npy (NaN rows: no face) beside <tag>-meta.json {"rel_paths": [...], "pack": ...}
    for f in sorted(cache.glob("*-embeddings.npy")):
        meta_file = f.with_name(f.name.replace("-embeddings.npy", "-meta.json"))
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            return {"emb": np.load(f).astype(np.float32), "people": [lfw.person_of(r) for r in meta["rel_paths"]],
                    "source": str(f), "pack": meta.get("pack")}
    return None


def make_lfw(found: dict[str, Any], n_queries: int, seed: int, folder: Path, limit: int | None) -> dict[str, Any]:
    """Real LFW embeddings (``find_lfw``). Queries: one held-out image of each of ``n_queries``
    random people with >= 2 images; the gallery is every other image."""
    emb = found["emb"]
    people = found["people"]
    ok = np.isfinite(emb).all(axis=1)
    rows = np.flatnonzero(ok)
    if limit:
        rows = rows[:limit]
    names = sorted({people[i] for i in rows})
    pid = {p: j for j, p in enumerate(names)}
    by_person: dict[int, list[int]] = {}
    for i in rows:
        by_person.setdefault(pid[people[i]], []).append(int(i))
    rng = np.random.default_rng(seed)
    multi = [p for p, r in by_person.items() if len(r) >= 2]
    chosen = rng.choice(len(multi), size=min(n_queries, len(multi)), replace=False)
    held = {int(rng.choice(by_person[multi[c]])) for c in chosen}
    gallery = np.array([i for i in rows if int(i) not in held])
    query_rows = np.array(sorted(held))
    vecs = emb[gallery]
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs.tofile(folder / "vectors.f32")
    q = emb[query_rows]
    np.save(folder / "queries.npy", q / np.linalg.norm(q, axis=1, keepdims=True))
    np.save(folder / "sids.npy", np.array([pid[people[i]] for i in gallery], dtype=np.int64))
    (folder / "names.json").write_text(json.dumps(names))
    return {"n": len(gallery), "dim": emb.shape[1], "identities": len({pid[people[i]] for i in gallery}),
            "per_identity": None, "mean_cos_to_centre": None, "names_file": str(folder / "names.json"),
            "source": str(found["source"]), "pack": found["pack"]}


# --------------------------------------------------------------------------------------
# load-time model
# --------------------------------------------------------------------------------------

def fit_load_curve(marks: list[list[float]]) -> dict[str, float] | None:
    """Fit seconds-per-vector = c * n^alpha on the chunks (skipping the first), for projection."""
    pts, prev = [], 0
    for cum, secs in marks:
        m = cum - prev
        if prev > 0 and m > 0 and secs > 0:
            pts.append((math.log((prev + cum) / 2), math.log(secs / m)))
        prev = cum
    if len(pts) < 3:
        return None
    x, y = np.array(pts).T
    alpha, logc = np.polyfit(x, y, 1)
    return {"alpha": float(alpha), "c": float(math.exp(logc)), "n": int(marks[-1][0]),
            "seconds": float(sum(s for _, s in marks))}


def project_load_s(fit: dict[str, float], n_target: int) -> float:
    """Measured time up to fit['n'] plus the integral of the fitted per-vector cost beyond it."""
    a1 = fit["alpha"] + 1
    return fit["seconds"] + fit["c"] / a1 * (n_target**a1 - fit["n"]**a1)


# --------------------------------------------------------------------------------------
# one data set
# --------------------------------------------------------------------------------------

def recall(ids: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    per = np.array([len(set((r - 1).tolist()) & set(t.tolist())) / truth.shape[1] for r, t in zip(ids, truth)])
    top1 = float(np.mean(ids[:, 0] - 1 == truth[:, 0]))
    return {"recall_at_k": float(per.mean()), "recall_min": float(per.min()), "top1_agreement": top1}


def measure(label: str, data: dict[str, Any], folder: Path, a: argparse.Namespace) -> dict[str, Any]:
    n, dim = data["n"], data["dim"]
    pack = data.get("pack") or PACK_BY_DIM.get(dim, f"bench{dim}")
    base = {"pack": pack, "dim": dim, "n": n, "label": label}
    files = {"vec_file": str(folder / "vectors.f32"), "queries_file": str(folder / "queries.npy"),
             "sids_file": str(folder / "sids.npy"), "names_file": data.get("names_file")}
    print(f"[search_scale] {label}: exact numpy + reference mode...", file=sys.stderr, flush=True)
    exact = run_child("exact", {**base, **files, "batch": a.batch, "time_cap_s": a.time_cap,
                                "truth_out": str(folder / "truth.npy")}, folder)
    truth = np.load(folder / "truth.npy")
    chroma_dir = folder / "chroma"
    chunk = max(5000, min(50_000, (n // 20) // 5000 * 5000)) if n > 5000 else n
    print(f"[search_scale] {label}: loading Chroma through ChromaIndex.add...", file=sys.stderr, flush=True)
    load = run_child("load", {**base, **files, "path": str(chroma_dir), "hnsw": a.hnsw, "chunk": chunk,
                              "progress": True}, folder)
    disk_mb = bench.dir_size_mb(chroma_dir)
    runs = []
    efs = [a.hnsw["ef_search"]] + [e for e in a.sweep if e != a.hnsw["ef_search"]]
    for j, ef in enumerate(efs):
        mod = None
        if j:
            mod = run_child("modify", {**base, "path": str(chroma_dir), "ef_search": ef}, folder)
        print(f"[search_scale] {label}: queries at ef_search={ef} (fresh process)...", file=sys.stderr, flush=True)
        q = run_child("query", {**base, **files, "path": str(chroma_dir), "batch": a.batch,
                                "batch_reps": a.batch_reps, "ids_out": str(folder / f"ids-{ef}.npy")}, folder)
        q.update(recall(np.load(folder / f"ids-{ef}.npy"), truth))
        q["ef_search"] = ef
        q["ef_search_recorded"] = (q.get("config") or {}).get("ef_search")
        if mod is not None:
            q["modify_readback"] = mod["config"]
        runs.append(q)
    if not a.keep:
        shutil.rmtree(chroma_dir, ignore_errors=True)
    return {**data, "label": label, "pack": pack, "queries": int(len(truth)), "exact": exact, "load": load,
            "load_fit": fit_load_curve(load["marks"]), "disk_mb": disk_mb,
            "bytes_per_vector_disk": disk_mb * 2**20 / n, "runs": runs, "hnsw": dict(a.hnsw)}


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------

_f = bench.fmt_number


def _params(r: dict[str, Any]) -> str:
    h = r.get("hnsw") or {}
    return f"M={h.get('max_neighbors')}, efC={h.get('ef_construction')}"


def _best_ef(r: dict[str, Any]) -> str:
    ok = sorted((m for m in r["runs"] if m["recall_at_k"] >= TARGET_RECALL), key=lambda m: m["ef_search"])
    if not ok:
        best = max(r["runs"], key=lambda m: m["recall_at_k"])
        return f"none (best {best['recall_at_k']:.4f} at {best['ef_search']})"
    m = ok[0]
    return (f"{m['ef_search']}: recall {m['recall_at_k']:.4f}, {m['facedb_query']['p50_ms']:.2f} / "
            f"{m['raw_query']['p50_ms']:.2f} ms")


def _main_run(r: dict[str, Any]) -> dict[str, Any]:
    return r["runs"][0]


def render(report: dict[str, Any]) -> str:
    res = report["results"]
    hn = report["hnsw"]
    out = [f"# Search at scale (k={K})", "",
           f"Generated by `scripts/bench/search_scale.py` on {report['started']} "
           f"(total runtime {report['runtime_min']:.1f} min).", "",
           bench.environment_md(report["command"], report["versions"], report["machine"]), *[
               f"- Also included (rows marked with their parameters): results of `{inc['command']}`, started "
               f"{inc['started']}, {inc['runtime_min']:.1f} min, same machine and library versions"
               for inc in report.get("included", [])], "",
           f"- HNSW at create time in this command: `{json.dumps(hn)}` (facedb `chroma_index.HNSW`"
           + (" overridden by the command line" if report["hnsw_overridden"] else "") + "); the *HNSW* column "
           "gives each row's max_neighbors (M) and ef_construction.",
           f"- Queries per data set: {report['n_queries']} single queries (after 10 warm-up queries), batch size "
           f"{report['batch']} (× {report['batch_reps']} passes); latencies are per call, medians/percentiles over "
           "those samples; ratios are taken within the same run.", "",
           "## What is measured", "",
           "- **Load**: facedb's bulk path `ChromaIndex(path).add(info, ids, vectors, subject_ids, subjects)` "
           "(upserts in batches of ≤ 5000 with subject metadata, as enrollment does), called in chunks so the "
           "rate can be followed; time includes the final `close()`. The SQL catalog is **not** written "
           "(a full `FaceDB` enroll adds its own SQL cost on top; see the enroll benchmark).",
           "- **Disk**: allocated bytes of the Chroma directory after close. **RSS**: peak (VmHWM) of the loading "
           "process and of a fresh search process (cold open + all measured queries).",
           "- **Cold open**: a fresh subprocess: `import chromadb` + facedb index module, then `ChromaIndex(path)` "
           "+ collection + the first query. The OS page cache is warm (files were just written): this is a "
           "process cold start, not a disk cold start.",
           "- **Chroma p50/p99**: single query through `ChromaIndex.query` (facedb's path; it also calls "
           "`count()` first); *raw* = `collection.query` alone; *count()* = `collection.count()` alone. **Batch** = queries/s for one call with a batch.",
           "- **numpy exact**: `argpartition` on the matrix product (unit vectors, cosine), the ground truth for "
           "recall@10. **Reference mode**: facedb's `ReferenceIndex` (scikit-learn `NearestNeighbors(metric="
           "'cosine', algorithm='brute')`); the real reference mode also reads every embedding from SQL and fits "
           "on each search, not included here (fit time listed separately).",
           "- **recall@10**: mean |Chroma top-10 ∩ exact top-10| / 10 over the queries; *top-1* = share of "
           "queries whose nearest face is the exact one.",
           "- **Synthetic data**: identity centres uniform on the sphere, "
           f"{report['per_identity']} samples per identity written subject by subject, Gaussian noise sized so "
           f"cos(sample, centre) ≈ {COS_TO_CENTRE} (measured value in the data table); queries are fresh noisy "
           "samples of random existing identities (held out, never in the index). Isotropic centres are easier "
           "for HNSW than real embeddings, which is why the real LFW row matters.", ""]
    lfw_note = report.get("lfw_note")
    if lfw_note:
        out += [f"- LFW: {lfw_note}", ""]

    out += ["## Data sets", "", bench.md_table(
        ["data", "d", "N", "identities", "mean cos(sample, centre)", "queries"],
        [[r["kind"], r["dim"], _f(r["n"]), _f(r["identities"]), _f(r["mean_cos_to_centre"], 3), r["queries"]]
         for r in res]), ""]

    out += ["## Load, footprint, cold open", "", bench.md_table(
        ["data", "d", "N", "HNSW", "load s", "vec/s", "CPU/wall", "disk MB", "disk B/vector", "peak RSS load MB",
         "peak RSS search MB", "import s", "open+1st query s", "spawn→1st answer s"],
        [[r["kind"], r["dim"], _f(r["n"]), _params(r), _f(r["load"]["load_s"]), _f(r["n"] / r["load"]["load_s"], 0),
          _f(r["load"]["cpu_per_wall"], 2), _f(r["disk_mb"]), _f(r["bytes_per_vector_disk"], 0),
          _f(r["load"]["peak_rss_mb"], 0), _f(_main_run(r)["peak_rss_mb"], 0),
          _f(_main_run(r)["cold"]["import_s"], 2), _f(_main_run(r)["cold"]["open_and_first_query_s"], 2),
          _f(_main_run(r)["cold"]["spawn_to_first_answer_s"], 2)] for r in res]), ""]

    out += [f"## Search, k={K} (Chroma at the create-time ef_search)", "", bench.md_table(
        ["data", "d", "N", "HNSW", "ef_search", "Chroma p50 ms", "Chroma p99 ms", "raw p50 ms", "count() p50 ms", "Chroma batch q/s",
         "recall@10", "top-1", "numpy p50 ms", "numpy p99 ms", "numpy p50 ms (1 BLAS thread)", "numpy batch q/s",
         "reference p50 ms", "reference p99 ms", "reference p50 ms (1 BLAS thread)", "reference batch q/s",
         "reference/Chroma p50", "numpy/Chroma p50"],
        [[r["kind"], r["dim"], _f(r["n"]), _params(r), m["ef_search"], _f(m["facedb_query"]["p50_ms"], 2),
          _f(m["facedb_query"]["p99_ms"], 2), _f(m["raw_query"]["p50_ms"], 2),
          _f((m.get("count") or {}).get("p50_ms"), 2), _f(m["batch_qps"], 0),
          _f(m["recall_at_k"], 4), _f(m["top1_agreement"], 3),
          _f(r["exact"]["numpy_query"]["p50_ms"], 2), _f(r["exact"]["numpy_query"]["p99_ms"], 2),
          _f(r["exact"]["numpy_query_1thread"]["p50_ms"], 2), _f(r["exact"]["numpy_batch_qps"], 0),
          _f(r["exact"]["reference_query"]["p50_ms"], 1), _f(r["exact"]["reference_query"]["p99_ms"], 1),
          _f(r["exact"]["reference_query_1thread"]["p50_ms"], 1), _f(r["exact"]["reference_batch_qps"], 0),
          f"{r['exact']['reference_query']['p50_ms'] / m['facedb_query']['p50_ms']:.1f}x",
          f"{r['exact']['numpy_query']['p50_ms'] / m['facedb_query']['p50_ms']:.1f}x"]
         for r in res for m in [_main_run(r)]]), "",
        "Reference-mode and numpy single-query samples are capped at "
        f"~{report['time_cap_s']:.0f} s per variant and data set (n per row in the JSON); numpy/reference "
        "memory: see `exact` in the JSON. numpy and the reference mode use OpenBLAS with "
        f"{max((r['exact']['blas_threads'] for r in res), default='?')} threads by default; the *1 BLAS thread* "
        "columns are the same code under `threadpoolctl.threadpool_limits(1)`. On this shared, busy machine a "
        "multi-threaded BLAS call for one query vector can wait for a free core, which is why the default can be "
        "far slower than one thread.", ""]

    out += ["## ef_search sweep (each value in a fresh process after `collection.modify`)", "", bench.md_table(
        ["data", "d", "N", "HNSW", "ef_search", "recorded in collection", "p50 ms", "p99 ms", "batch q/s", "recall@10",
         "worst query recall", "top-1"],
        [[r["kind"], r["dim"], _f(r["n"]), _params(r), m["ef_search"], m["ef_search_recorded"],
          _f(m["facedb_query"]["p50_ms"], 2), _f(m["facedb_query"]["p99_ms"], 2), _f(m["batch_qps"], 0),
          _f(m["recall_at_k"], 4), _f(m["recall_min"], 1), _f(m["top1_agreement"], 3)]
         for r in res for m in sorted(r["runs"], key=lambda x: x["ef_search"])]), ""]

    out += ["## Targets (defined at 1M: Chroma p50 ≤ 5 ms, recall@10 ≥ 0.99)", ""]
    rows = []
    for r in res:
        m = _main_run(r)
        ok_p = m["facedb_query"]["p50_ms"] <= TARGET_P50_MS
        ok_r = m["recall_at_k"] >= TARGET_RECALL
        rows.append([r["kind"], r["dim"], _f(r["n"]), _params(r), m["ef_search"],
                     f"{m['facedb_query']['p50_ms']:.2f} ms " + ("met" if ok_p else "MISSED")
                     + f" (raw {m['raw_query']['p50_ms']:.2f} ms "
                     + ("met)" if m["raw_query"]["p50_ms"] <= TARGET_P50_MS else "MISSED)"),
                     f"{m['recall_at_k']:.4f} " + ("met" if ok_r else "MISSED"),
                     f"{r['exact']['reference_query']['p50_ms'] / m['facedb_query']['p50_ms']:.1f}x",
                     _best_ef(r)])
    out += [bench.md_table(["data", "d", "N", "HNSW", "ef_search", "p50 ≤ 5 ms: facedb path (raw query)", "recall@10 ≥ 0.99",
                             "reference-mode p50 / Chroma p50",
                             "lowest swept ef_search with recall@10 ≥ 0.99: p50 facedb / raw"],
                            rows), ""]
    ran_1m = any(r["n"] >= TARGET_N for r in res if r["kind"] == "synthetic")
    out += ["## Sizes not run, and load-time projection", ""]
    if report["skipped"]:
        out += [f"- **{s['kind']} d={s['dim']} N={s['n']:,} was not run**: {s['reason']}" for s in report["skipped"]]
    if not ran_1m:
        out += ["- **1M was not run in this run.**"]
    proj = []
    for r in res:
        fit = r.get("load_fit")
        if r["kind"] != "synthetic" or not fit:
            continue
        proj.append([r["dim"], _f(r["n"]), _params(r), f"{fit['alpha']:.2f}", f"{project_load_s(fit, TARGET_N) / 60:.0f} min",
                     f"{TARGET_N / project_load_s(fit, TARGET_N):.0f}"])
    if proj:
        out += ["", "Projection of the 1M load from each measured size (per-vector add cost fitted as "
                "c·n^alpha over the load chunks, integrated from the measured size to 1M; the rate falls with N, "
                "so projections from small sizes are optimistic):", "",
                bench.md_table(["d", "fitted on N", "HNSW", "alpha", "projected 1M load", "projected avg vec/s"], proj)]
    out += ["", "## Notes", ""] + [f"- {x}" for x in report.get("notes", [])] + [""]
    return "\n".join(out)


def summary_table(report: dict[str, Any]) -> str:
    rows = []
    for r in report["results"]:
        m = _main_run(r)
        rows.append([r["kind"], r["dim"], _f(r["n"]), _params(r), _f(r["load"]["load_s"]),
                     _f(r["n"] / r["load"]["load_s"], 0),
                     _f(r["disk_mb"]), _f(m["peak_rss_mb"], 0), _f(m["cold"]["open_and_first_query_s"], 2),
                     m["ef_search"], _f(m["facedb_query"]["p50_ms"], 2), _f(m["facedb_query"]["p99_ms"], 2),
                     _f(m["batch_qps"], 0), _f(m["recall_at_k"], 4), _f(r["exact"]["numpy_query"]["p50_ms"], 2),
                     _f(r["exact"]["reference_query"]["p50_ms"], 1),
                     f"{r['exact']['reference_query']['p50_ms'] / m['facedb_query']['p50_ms']:.1f}x"])
    return bench.md_table(["data", "d", "N", "HNSW", "load s", "vec/s", "disk MB", "RSS search MB", "cold open s", "ef",
                            "p50 ms", "p99 ms", "batch q/s", "recall@10", "numpy p50 ms", "reference p50 ms",
                            "reference/Chroma"], rows)


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------

def _ints(s: str) -> list[int]:
    return [int(float(x)) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=_ints, default=None, help="gallery sizes (default 10000,100000)")
    ap.add_argument("--dims", type=_ints, default=[128, 512], help="synthetic dimensions (default 128,512)")
    ap.add_argument("--pairs", type=lambda s: [tuple(_ints(p.replace(":", ","))) for p in s.split(",") if p],
                    default=None, help="explicit DIM:N list run in this order, instead of --sizes x --dims "
                    "(e.g. 512:300000,128:1000000)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, few queries (smoke test); no lock")
    ap.add_argument("--queries", type=int, default=None, help="single queries per data set (default 200)")
    ap.add_argument("--batch", type=int, default=None, help="batch size for throughput (default 100)")
    ap.add_argument("--batch-reps", type=int, default=None, help="passes over the queries in batches (default 3)")
    ap.add_argument("--per-identity", type=int, default=10, help="synthetic samples per identity")
    ap.add_argument("--sweep", type=_ints, default=None, help="ef_search values to try (default 50,100,200)")
    ap.add_argument("--max-neighbors", type=int, default=None, help="override HNSW max_neighbors (M)")
    ap.add_argument("--ef-construction", type=int, default=None, help="override HNSW ef_construction")
    ap.add_argument("--ef-search", type=int, default=None, help="override the create-time ef_search")
    ap.add_argument("--hnsw-extra", type=json.loads, default={},
                    help='extra create-time HNSW keys as JSON, e.g. \'{"num_threads": 2}\'')
    ap.add_argument("--lfw-cache", type=Path, default=None,
                    help="embedding cache of scripts/calibrate_threshold.py (facedb.evaluation.runner.embed) "
                         "[default: runner.DEFAULT_CACHE]; the LFW row is skipped when it holds no LFW pass")
    ap.add_argument("--lfw-pack", default="sface-flip", help="pack of the cached LFW embeddings [%(default)s]")
    ap.add_argument("--lfw-limit", type=int, default=None, help="use only the first N LFW images")
    ap.add_argument("--no-lfw", action="store_true")
    ap.add_argument("--max-load-minutes", type=float, default=None,
                    help="skip a size whose projected load time exceeds this (fitted on the previous size)")
    ap.add_argument("--time-cap", type=float, default=None, help="seconds per single-query baseline (default 20)")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the Chroma directories")
    ap.add_argument("--lock", dest="lock", action="store_true", default=None)
    ap.add_argument("--no-lock", dest="lock", action="store_false", help="do not take the benchmark lock")
    ap.add_argument("--out", type=Path, default=None, help=f"markdown report (default {DEFAULT_OUT})")
    ap.add_argument("--json", type=Path, default=None, help="also write all numbers as JSON")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--include-json", type=Path, action="append", default=[],
                    help="also report the results of an earlier run of this script (its --json file)")
    ap.add_argument("--note", action="append", default=[], help="free text added to the report's notes")
    a = ap.parse_args(argv)
    q = a.quick
    a.sizes = a.sizes or ([1000] if q else [10_000, 100_000])
    a.queries = a.queries or (20 if q else 200)
    a.batch = min(a.batch or (10 if q else 100), a.queries)
    a.batch_reps = a.batch_reps or (1 if q else 3)
    a.sweep = a.sweep if a.sweep is not None else ([50] if q else [50, 100, 200])
    a.time_cap = a.time_cap or (2.0 if q else 15.0)
    a.lfw_limit = a.lfw_limit or (1500 if q else None)
    if a.lfw_cache is None:
        from facedb.evaluation import runner

        a.lfw_cache = runner.DEFAULT_CACHE
    a.lock = (not q) if a.lock is None else a.lock
    if a.out is None and not q:
        a.out = DEFAULT_OUT
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from facedb.index.chroma_index import HNSW

    hnsw = dict(HNSW)
    overrides = {"max_neighbors": a.max_neighbors, "ef_construction": a.ef_construction, "ef_search": a.ef_search}
    hnsw.update({k: v for k, v in overrides.items() if v is not None})
    hnsw.update(a.hnsw_extra)
    a.hnsw = hnsw
    t_start = time.monotonic()
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M %Z"), "command": bench.command_line(),
        "machine": bench.machine_info(),
        "versions": bench.library_versions("chromadb", "numpy", "scikit-learn", "facedb"),
        "hnsw": hnsw, "hnsw_overridden": hnsw != dict(HNSW), "k": K, "n_queries": a.queries, "batch": a.batch,
        "batch_reps": a.batch_reps, "per_identity": a.per_identity, "time_cap_s": a.time_cap,
        "sweep": a.sweep, "results": [], "skipped": [], "notes": [],
        "sql_catalog_written": False,
    }
    report["notes"] += a.note
    report["notes"].append("Loads go through ChromaIndex.add only; FaceDB's SQL catalog is not written in this "
                           "benchmark (not needed to measure the index).")
    own_tmp = a.workdir is None
    work = Path(tempfile.mkdtemp(prefix="facedb-search-scale-")) if own_tmp else a.workdir
    work.mkdir(parents=True, exist_ok=True)
    results = report["results"]
    try:
        # real LFW first (small), then synthetic by dimension and size
        if not a.no_lfw:
            emb = find_lfw(a.lfw_cache, a.lfw_pack)
            if emb is None:
                report["lfw_note"] = (f"no cached LFW embeddings of {a.lfw_pack} in {a.lfw_cache}: the real LFW "
                                      "row was skipped (run scripts/calibrate_threshold.py to create the cache).")
            else:
                folder = work / "lfw"
                folder.mkdir(exist_ok=True)
                with bench.bench_lock("search_scale lfw", enabled=a.lock):
                    data = make_lfw(emb, a.queries, a.seed, folder, a.lfw_limit)
                    label = f"lfw d={data['dim']} N={data['n']}"
                    r = measure(label, {**data, "kind": "real LFW"}, folder, a)
                results.append(r)
                report["lfw_note"] = (f"real LFW embeddings from {Path(emb['source']).name} (pack {data.get('pack')}): gallery = "
                                      f"{data['n']} detected faces, {data['identities']} people; queries = one "
                                      "held-out image of random people with ≥ 2 images.")
                shutil.rmtree(folder, ignore_errors=True)
        else:
            report["lfw_note"] = "skipped (--no-lfw)."
        # load-time fits per dimension, seeded from included runs with the same HNSW build parameters
        fits: dict[int, dict[str, float]] = {}
        for f in a.include_json:
            for r in sorted(json.loads(f.read_text())["results"], key=lambda r: r["n"]):
                h = r.get("hnsw") or {}
                if (r["kind"] == "synthetic" and r.get("load_fit") and h.get("max_neighbors") == a.hnsw["max_neighbors"]
                        and h.get("ef_construction") == a.hnsw["ef_construction"]):
                    fits[r["dim"]] = r["load_fit"]
        plan = a.pairs or [(dim, n) for dim in a.dims for n in sorted(a.sizes)]
        for dim, n in plan:
            fit = fits.get(dim)
            if fit and a.max_load_minutes:
                proj = project_load_s(fit, n) / 60
                if proj > a.max_load_minutes:
                    report["skipped"].append({"kind": "synthetic", "dim": dim, "n": n, "reason": (
                        f"projected load {proj:.0f} min (fitted on N={fit['n']:,}, alpha {fit['alpha']:.2f}) "
                        f"> budget {a.max_load_minutes:.0f} min")})
                    print(f"[search_scale] skip d={dim} N={n}: {report['skipped'][-1]['reason']}",
                          file=sys.stderr, flush=True)
                    continue
            folder = work / f"syn-{dim}-{n}"
            folder.mkdir(exist_ok=True)
            with bench.bench_lock(f"search_scale d={dim} N={n}", enabled=a.lock):
                t = time.monotonic()
                data = make_synthetic(n, dim, a.per_identity, a.queries, a.seed + dim + n, folder)
                print(f"[search_scale] synthetic d={dim} N={n}: data in {time.monotonic() - t:.0f}s",
                      file=sys.stderr, flush=True)
                r = measure(f"synthetic d={dim} N={n}", {**data, "kind": "synthetic"}, folder, a)
            results.append(r)
            fits[dim] = r["load_fit"] or fit
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    report["runtime_min"] = (time.monotonic() - t_start) / 60
    for r in results:
        r.setdefault("command", report["command"])
    report["included"] = []
    for f in a.include_json:
        prev = json.loads(f.read_text())
        for r in prev["results"]:
            r.setdefault("command", prev["command"])
            r.setdefault("hnsw", prev["hnsw"])
            results.append(r)
        report["skipped"] += prev.get("skipped", [])
        report["notes"] += [x for x in prev.get("notes", []) if x not in report["notes"]]
        if "real LFW" in {r["kind"] for r in prev["results"]} and "real LFW" not in {
                r["kind"] for r in results if r["command"] == report["command"]}:
            report["lfw_note"] = prev.get("lfw_note")
        report["included"].append({"file": str(f), "command": prev["command"], "started": prev["started"],
                                   "runtime_min": prev["runtime_min"]})
        report["included"] += [inc for inc in prev.get("included", []) if inc not in report["included"]]
    results.sort(key=lambda r: (r["kind"] != "real LFW", r["dim"], r["n"], _params(r)))
    report["machine"]["load_avg_1_5_15_end"] = bench.machine_info()["load_avg_1_5_15"]
    text = render(report)
    print(summary_table(report))
    if a.out:
        bench.write_text(a.out, text)
        print(f"[search_scale] wrote {a.out}", file=sys.stderr)
    if a.json:
        bench.write_text(a.json, json.dumps(report, indent=1, default=float))
        print(f"[search_scale] wrote {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--_child":
        _kind, _spec, _out = sys.argv[2:]
        _res = CHILDREN[_kind](json.loads(Path(_spec).read_text()))
        Path(_out).write_text(json.dumps(_res, default=float))
        sys.exit(0)
    sys.exit(main())
