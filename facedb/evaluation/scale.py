"""The measurement core of the search-at-scale benchmarks (``scripts/bench/search_scale.py``,
``scripts/bench/shared_stores.py``): face-like synthetic vectors and the real LFW embeddings on
disk, the load / query / exact-search measurements each in a child process of its own (a fresh
interpreter: cold opens are real, and one measurement's memory never inflates the next), the
load-time model that projects a size before it is attempted, and recall against numpy.

A child is ``python -m facedb.evaluation.scale KIND ARGS_JSON RESULT_JSON`` (``run_child``), so
it imports the same facedb as its parent, installed or not, with no ``PYTHONPATH`` set-up.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import bench

if TYPE_CHECKING:
    from ..analysis.engines.base import PackInfo
    from ..index.chroma_index import ChromaIndex

K = 10
COS_TO_CENTRE = 0.75
TARGET_N = 1_000_000
TARGET_P50_MS = 5.0
TARGET_RECALL = 0.99
PACK_BY_DIM = {128: "sface", 512: "buffalo_l"}


# --------------------------------------------------------------------------------------
# child processes (run as: python -m facedb.evaluation.scale KIND ARGS_JSON RESULT_JSON)
# --------------------------------------------------------------------------------------

def _pack_info(a: dict[str, Any]) -> PackInfo:
    from ..analysis.engines.base import PackInfo

    return PackInfo(name=a["pack"], dim=int(a["dim"]), threshold=0.4,
                    fingerprint=f"bench-{a['pack']}-{a['dim']}")


def _open_index(a: dict[str, Any]) -> ChromaIndex:
    """``ChromaIndex(url=a["url"])`` (a Chroma server) when the arguments name one, else the
    embedded ``ChromaIndex(a["path"])`` (scripts/bench/shared_stores.py measures both)."""
    from facedb.index.chroma_index import ChromaIndex

    return ChromaIndex(url=a["url"]) if a.get("url") else ChromaIndex(Path(a["path"]))


def read_rows(path: str, start: int, count: int, dim: int) -> np.ndarray:
    """Rows ``start .. start+count`` of a raw float32 vector file of dimension ``dim``."""
    return np.fromfile(path, dtype=np.float32, count=count * dim, offset=start * dim * 4).reshape(count, dim)


def child_load(a: dict[str, Any]) -> dict[str, Any]:
    from facedb.index import chroma_index as ci

    ci.HNSW.clear()
    ci.HNSW.update(a["hnsw"])  # create-time parameters of the new collection
    info = _pack_info(a)
    n, dim, chunk = int(a["n"]), int(a["dim"]), int(a["chunk"])
    sids = np.load(a["sids_file"])
    idx = _open_index(a)
    marks = []  # [vectors so far, seconds for this chunk]
    add_s = 0.0
    cpu0 = time.process_time()
    t_all = time.monotonic()
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        vecs = read_rows(a["vec_file"], start, m, dim)
        s = sids[start:start + m].tolist()
        ids = list(range(start + 1, start + m + 1))
        t = time.monotonic()
        idx.add(info, ids, vecs, s)
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
    if col is None:
        raise RuntimeError(f"no collection of pack {info.name!r} under {a['path']}")
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
    if col is None:
        raise RuntimeError(f"no collection of pack {info.name!r} in the index")
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
    mat = read_rows(a["vec_file"], 0, n, dim)
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

    def single(fn: Callable[[np.ndarray], object]) -> list[float]:
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

    from threadpoolctl import threadpool_info, threadpool_limits  # type: ignore[import-untyped]

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
    proc = subprocess.run([sys.executable, "-m", "facedb.evaluation.scale", kind, str(spec), out], timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {kind} failed with exit code {proc.returncode}")
    result: dict[str, Any] = json.loads(Path(out).read_text())
    return result


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
        x: np.ndarray = centres[subj] + sigma * rng.standard_normal((len(subj), dim), dtype=np.float32)
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
    pts: list[tuple[float, float]] = []
    prev = 0.0
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
    return float(fit["seconds"] + fit["c"] / a1 * (n_target**a1 - fit["n"]**a1))


# --------------------------------------------------------------------------------------
# one data set
# --------------------------------------------------------------------------------------

def recall(ids: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    per = np.array([len(set((r - 1).tolist()) & set(t.tolist())) / truth.shape[1] for r, t in zip(ids, truth)])
    top1 = float(np.mean(ids[:, 0] - 1 == truth[:, 0]))
    return {"recall_at_k": float(per.mean()), "recall_min": float(per.min()), "top1_agreement": top1}


def _child_main(argv: list[str]) -> int:
    """``KIND ARGS_JSON RESULT_JSON``: run one child measurement, write its result."""
    if len(argv) != 3 or argv[0] not in CHILDREN:
        print(f"usage: python -m facedb.evaluation.scale {{{','.join(CHILDREN)}}} ARGS_JSON RESULT_JSON",
              file=sys.stderr)
        return 2
    kind, spec, out = argv
    res = CHILDREN[kind](json.loads(Path(spec).read_text()))
    Path(out).write_text(json.dumps(res, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
