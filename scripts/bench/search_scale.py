#!/usr/bin/env python
"""Search at scale: Chroma (facedb's index) vs numpy exact search vs the reference mode.

For each data set (face-like synthetic embeddings at 128-d and 512-d, and the real LFW
embeddings when ``--lfw-cache`` holds them) this script

1. writes the vectors to a scratch folder;
2. in a child process: exact numpy top-k (ground truth, single-query latency, batch
   throughput) and facedb's reference mode (``facedb.index.reference.ReferenceIndex`` =
   scikit-learn ``NearestNeighbors(metric="cosine", algorithm="brute")``);
3. in a child process: loads the vectors through facedb's bulk path,
   ``ChromaIndex(path).add(info, ids, vectors, subject_ids)`` (the code enrollment
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
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation import bench
from facedb.evaluation.scale import (
    COS_TO_CENTRE,
    PACK_BY_DIM,
    TARGET_N,
    TARGET_P50_MS,
    TARGET_RECALL,
    K,
    find_lfw,
    fit_load_curve,
    make_lfw,
    make_synthetic,
    project_load_s,
    recall,
    run_child,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "search_scale.md"


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
           "- **Load**: facedb's bulk path `ChromaIndex(path).add(info, ids, vectors, subject_ids)` "
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
    sys.exit(main())
