#!/usr/bin/env python
"""Shared stores benchmark (issue 9): facedb on PostgreSQL + a Chroma server.

Three measurements, each on real servers started here (``facedb.evaluation.servers``: a throw-away
PostgreSQL 15 cluster run by the ``postgres`` user and ``chroma run``, both on free loopback
ports), each under the machine-wide benchmark lock (``facedb.evaluation.bench.bench_lock``):

1. **search**: the Chroma server against embedded Chroma on the same vectors: synthetic
   face-like 128-d unit vectors (``facedb.evaluation.scale.make_synthetic``), loaded through facedb's
   ``ChromaIndex(url=...).add`` and ``ChromaIndex(path).add`` with facedb's collection settings
   (``chroma_index.HNSW``), in child processes (``facedb.evaluation.scale``'s ``load`` and ``query``
   children); single-query p50/p99 through ``ChromaIndex.query`` and the raw collection, batch
   throughput, recall@10 against exact numpy search (``facedb.evaluation.scale``'s ``exact`` child), and load
   throughput. The query children alternate embedded / server for ``--rounds`` rounds. A size is
   skipped when the projected load time of both loads (fitted on the previous size) is over
   ``--max-load-minutes``.
2. **throughput**: ``facedb serve --workers N --analysis-workers 1`` for N in ``--procs`` on the
   shared servers (a fresh database and empty collections each time); the HTTP load generator
   (``loadgen.py``, its own process, ``--clients`` threads) enrolls the same LFW images (one
   subject's images per request) and then searches LFW probes; images/s and ratios to N=1.
3. **migrate**: an embedded home with ``--migrate-faces`` faces (synthetic face-like vectors
   stored through facedb's write path - SQL rows, the index, marked indexed - plus a few real LFW
   faces enrolled normally), then ``facedb --home H migrate --to-db-url ... --to-chroma-url ...``
   timed as a whole command; its report gives the rows copied and the target's check.

    python scripts/bench/shared_stores.py                 # writes docs/benchmarks/shared_stores.md and .json
    python scripts/bench/shared_stores.py --quick --out /tmp/s.md    # smoke test: tiny sizes, no lock
    python scripts/bench/shared_stores.py --phases search --sizes 100000,1000000,300000 --deadline-minutes 120
    # a second throughput variant, reported beside the earlier run's results:
    python scripts/bench/shared_stores.py --phases throughput --cv-threads 1 \
        --include-json docs/benchmarks/shared_stores.json

Each section of the report names the command (and commit) it comes from.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation import bench, scale
from facedb.evaluation.bench import bench_lock, log, median

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

DEFAULT_OUT = REPO / "docs" / "benchmarks" / "shared_stores.md"
FACEDB = bench.facedb_command()
DIM = 128
PACK = "sface"
PHASES = ("throughput", "migrate", "search")


def servers_unavailable() -> str | None:
    """Why PostgreSQL or the Chroma server cannot be started here (None when both can)."""
    from facedb.evaluation.servers import chroma_unavailable, postgres_unavailable

    return postgres_unavailable() or chroma_unavailable()


_f = bench.fmt_number


def wipe_collections(chroma: Any) -> None:
    client = chroma.client()
    for c in client.list_collections():
        client.delete_collection(c.name)


# -- 1. search: Chroma server vs embedded ------------------------------------------------------------

def _load_minutes(fit: dict[str, float] | None, n: int) -> float | None:
    return None if not fit else scale.project_load_s(fit, n) / 60


def phase_search(a: argparse.Namespace, work: Path, res: dict[str, Any], checkpoint: Any) -> None:
    from facedb.evaluation.servers import ChromaServer
    from facedb.index.chroma_index import HNSW

    out = res.setdefault("search", {"command": res["command"], "commit": res["commit"], "started": res["started"],
                                    "hnsw": dict(HNSW), "sizes": [], "skipped": [], "queries": a.queries,
                                    "batch": a.batch, "rounds": a.rounds, "per_identity": a.per_identity})
    fits: dict[str, dict[str, float] | None] = {}
    for n in a.sizes:  # in the order given (e.g. 100k, then 1M, then 300k if time is left)
        proj = {b: _load_minutes(fits.get(b), n) for b in ("embedded", "server")}
        if a.max_load_minutes and all(v is not None for v in proj.values()) and \
                sum(proj.values()) > a.max_load_minutes:  # type: ignore[arg-type]
            reason = (f"projected load time {proj['embedded']:.0f} min embedded + {proj['server']:.0f} min through the "
                      f"server (fitted on N={max(s['n'] for s in out['sizes']):,}) > budget {a.max_load_minutes:.0f} min")
            out["skipped"].append({"n": n, "reason": reason, "projected_load_min": proj})
            log(f"search N={n}: skipped: {reason}")
            continue
        if a.deadline_minutes and all(v is not None for v in proj.values()):
            elapsed = (time.monotonic() - a.t_start) / 60
            # the loads plus ~25 % for the data, the exact search and the query rounds
            need = 1.25 * sum(proj.values())  # type: ignore[arg-type]
            if elapsed + need > a.deadline_minutes:
                reason = (f"projected load time {proj['embedded']:.0f} min embedded + {proj['server']:.0f} min through "
                          f"the server (fitted on N={max(s['n'] for s in out['sizes']):,}; with data, exact search and "
                          f"queries about {need:.0f} min) would end {elapsed + need:.0f} min after the start of this "
                          f"run, past its time limit of {a.deadline_minutes:.0f} min")
                out["skipped"].append({"n": n, "reason": reason, "projected_load_min": proj})
                log(f"search N={n}: skipped: {reason}")
                continue
        folder = work / f"search-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with bench_lock(f"shared_stores search N={n}", enabled=a.lock):
                row = measure_search(n, folder, a, dict(HNSW), ChromaServer)
        except subprocess.TimeoutExpired as exc:
            elapsed = (time.monotonic() - a.t_start) / 60
            reason = (f"started, but its `{Path(exc.cmd[3]).name if len(exc.cmd) > 3 else '?'}` child was stopped at "
                      f"the run's time limit ({a.deadline_minutes:.0f} min after the start; {elapsed:.0f} min had "
                      "passed): no result for this size")
            out["skipped"].append({"n": n, "reason": reason, "stopped_at_deadline": True})
            log(f"search N={n}: {reason}")
            shutil.rmtree(folder, ignore_errors=True)
            break
        for b in ("embedded", "server"):
            fits[b] = row[b]["load_fit"] or fits.get(b)
        out["sizes"].append(row)
        shutil.rmtree(folder, ignore_errors=True)
        checkpoint()


def _left_s(a: argparse.Namespace) -> float | None:
    """Seconds left before the run's deadline (None without one)."""
    if not a.deadline_minutes:
        return None
    return max(1.0, a.deadline_minutes * 60 - (time.monotonic() - a.t_start))


def measure_search(n: int, folder: Path, a: argparse.Namespace, hnsw: dict[str, Any], server_cls: Any) -> dict[str, Any]:
    t = time.monotonic()
    data = scale.make_synthetic(n, DIM, a.per_identity, a.queries, a.seed + n, folder)
    log(f"search N={n}: data in {time.monotonic() - t:.0f} s; exact numpy search (ground truth)")
    base = {"pack": PACK, "dim": DIM, "n": n}
    files = {"vec_file": str(folder / "vectors.f32"), "queries_file": str(folder / "queries.npy"),
             "sids_file": str(folder / "sids.npy"), "names_file": None}
    exact = scale.run_child("exact", {**base, **files, "batch": a.batch, "time_cap_s": a.time_cap,
                                             "truth_out": str(folder / "truth.npy")}, folder, _left_s(a))
    truth = np.load(folder / "truth.npy")
    chunk = max(5000, min(50_000, (n // 20) // 5000 * 5000)) if n > 5000 else n
    row: dict[str, Any] = {"n": n, "dim": DIM, "data": data, "chunk": chunk, "queries": int(len(truth)),
                           "exact": {k: exact[k] for k in ("numpy_query", "numpy_query_1thread", "numpy_batch_qps",
                                                           "blas_threads")},
                           "loadavg_start": bench.loadavg()}
    chroma = server_cls(folder / "chroma-server" / "data")
    chroma.start()
    try:
        targets = {"embedded": {"path": str(folder / "chroma-embedded")}, "server": {"url": chroma.url}}
        for b, where in targets.items():
            log(f"search N={n}: load {b} through ChromaIndex.add")
            cpu0 = bench.tree_cpu_s(chroma.pid) if b == "server" else {}
            t0 = time.monotonic()
            load = scale.run_child("load", {**base, **files, **where, "hnsw": hnsw, "chunk": chunk,
                                                   "label": f"{b} N={n}", "progress": True}, folder, _left_s(a))
            wall = time.monotonic() - t0
            load["process_wall_s"] = wall
            load["vectors_per_s"] = n / load["load_s"]
            if b == "server":
                cpu1 = bench.tree_cpu_s(chroma.pid)
                load["server_cpu_s"] = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items())
                load["server_rss_mb"] = bench.tree_rss_mb(chroma.pid)["total_mb"]
                load["disk_mb"] = bench.dir_size_mb(chroma.path)
            else:
                load["disk_mb"] = bench.dir_size_mb(where["path"])
            row[b] = {"load": load, "load_fit": scale.fit_load_curve(load["marks"]), "queries": []}
            log(f"search N={n}: {b} load {load['load_s']:.0f} s ({load['vectors_per_s']:.0f} vec/s)")
        for r in range(a.rounds):
            order = ("embedded", "server") if r % 2 == 0 else ("server", "embedded")
            for b in order:
                ids_out = folder / f"ids-{b}-{r}.npy"
                cpu0 = bench.tree_cpu_s(chroma.pid) if b == "server" else {}
                q = scale.run_child("query", {**base, **files, **targets[b], "batch": a.batch,
                                                     "batch_reps": a.batch_reps, "ids_out": str(ids_out)}, folder,
                                                    _left_s(a))
                if b == "server":
                    cpu1 = bench.tree_cpu_s(chroma.pid)
                    q["server_cpu_s"] = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items())
                q.update(scale.recall(np.load(ids_out), truth))
                q["round"] = r
                q["loadavg"] = bench.loadavg()
                row[b]["queries"].append(q)
                log(f"search N={n} round {r} {b}: p50 {q['facedb_query']['p50_ms']:.2f} ms, p99 "
                    f"{q['facedb_query']['p99_ms']:.2f} ms, recall@10 {q['recall_at_k']:.4f}")
        row["server_rss_mb_end"] = bench.tree_rss_mb(chroma.pid)["total_mb"]
    finally:
        chroma.cleanup()
    for b in ("embedded", "server"):
        qs = row[b]["queries"]
        row[b]["summary"] = {
            "p50_ms": median(q["facedb_query"]["p50_ms"] for q in qs),
            "p99_ms": median(q["facedb_query"]["p99_ms"] for q in qs),
            "raw_p50_ms": median(q["raw_query"]["p50_ms"] for q in qs),
            "raw_p99_ms": median(q["raw_query"]["p99_ms"] for q in qs),
            "count_p50_ms": median(q["count"]["p50_ms"] for q in qs),
            "batch_qps": median(q["batch_qps"] for q in qs),
            "recall_at_k": median(q["recall_at_k"] for q in qs),
            "recall_min": min(q["recall_min"] for q in qs),
            "top1_agreement": median(q["top1_agreement"] for q in qs),
            "open_and_first_query_s": median(q["cold"]["open_and_first_query_s"] for q in qs),
        }
    e, s = row["embedded"]["summary"], row["server"]["summary"]
    row["ratio_server_embedded"] = {
        "p50": s["p50_ms"] / e["p50_ms"], "p99": s["p99_ms"] / e["p99_ms"],
        "raw_p50": s["raw_p50_ms"] / e["raw_p50_ms"], "batch_qps": s["batch_qps"] / e["batch_qps"],
        "load_vectors_per_s": row["server"]["load"]["vectors_per_s"] / row["embedded"]["load"]["vectors_per_s"]}
    # the same vectors went in both ways, so both indexes should agree with each other as well
    same = [len(set(x.tolist()) & set(y.tolist())) / x.shape[0]
            for x, y in zip(np.load(folder / "ids-embedded-0.npy"), np.load(folder / "ids-server-0.npy"))]
    row["top10_overlap_server_vs_embedded"] = float(np.mean(same))
    row["loadavg_end"] = bench.loadavg()
    return row


# -- 2. throughput with 1, 2, 3 facedb processes -------------------------------------------------

def phase_throughput(a: argparse.Namespace, work: Path, res: dict[str, Any], checkpoint: Any) -> None:
    from facedb.evaluation.servers import ChromaServer

    lfw = bench.lfw_dir()
    assert lfw is not None
    paths = bench.lfw_images(lfw)
    gallery = bench.sample_images(paths[0::2], a.enroll_images)
    probes = bench.sample_images(paths[1::2], a.probes)
    enroll_list, probe_list = work / "enroll.tsv", work / "probes.txt"
    enroll_list.write_text("".join(f"{p.parent.name}\t{p}\n" for p in gallery))
    probe_list.write_text("".join(f"{p}\n" for p in probes))
    out = res.setdefault("throughput", {"command": res["command"], "commit": res["commit"], "started": res["started"],
                                        "cv_threads": a.cv_threads,
                                        "procs": a.procs, "clients": a.clients, "enroll_images": len(gallery),
                                        "enroll_subjects": len({p.parent.name for p in gallery}),
                                        "probes": len(probes), "searches": a.searches, "rounds": a.rounds,
                                        "analysis_workers": 1, "runs": []})
    pg = a.pg
    chroma = ChromaServer()
    try:
        with bench_lock("shared_stores throughput", enabled=a.lock):
            pg.ensure_running()
            chroma.start()
            out["loadavg_start"] = bench.loadavg()
            for r in range(a.rounds):
                for n in (a.procs if r % 2 == 0 else list(reversed(a.procs))):
                    out["runs"].append(throughput_run(n, r, pg, chroma, work, a, enroll_list, probe_list))
                    checkpoint()
            out["loadavg_end"] = bench.loadavg()
    finally:
        chroma.cleanup()
    throughput_summary(out)


def _busy(x: dict[str, Any]) -> float | None:
    if x.get("server_cores_busy") is not None:
        return x["server_cores_busy"]
    return x["server_tree_cpu_s"] / x["wall_s"] if x.get("wall_s") else None


def throughput_summary(out: dict[str, Any]) -> None:
    """Per N: the medians over rounds, and the ratios to the first N (overall and round by round)."""
    procs = out["procs"]
    by = {n: [x for x in out["runs"] if x["processes"] == n] for n in procs}
    base_e = median(x["enroll"]["images_per_s"] for x in by[procs[0]])
    base_s = median(x["search"]["images_per_s"] for x in by[procs[0]])
    out["summary"] = []
    for n in procs:
        xs = by[n]
        e = median(x["enroll"]["images_per_s"] for x in xs)
        s = median(x["search"]["images_per_s"] for x in xs)
        out["summary"].append({
            "processes": n, "enroll_images_per_s": e, "search_images_per_s": s,
            "enroll_ratio": e / base_e, "search_ratio": s / base_s,
            # ratios pair by pair within each round (every round has every N)
            "enroll_ratio_by_round": [x["enroll"]["images_per_s"] / y["enroll"]["images_per_s"] for x in xs
                                      for y in by[procs[0]] if y["round"] == x["round"]],
            "search_ratio_by_round": [x["search"]["images_per_s"] / y["search"]["images_per_s"] for x in xs
                                      for y in by[procs[0]] if y["round"] == x["round"]],
            "search_p50_ms": median(x["search"]["latency"]["p50_ms"] for x in xs),
            "search_p99_ms": median(x["search"]["latency"]["p99_ms"] for x in xs),
            "enroll_cores_busy": median(_busy(x["enroll"]) for x in xs),
            "search_cores_busy": median(_busy(x["search"]) for x in xs),
            "enroll_cpu_ms_per_image": median(x["enroll"]["server_tree_cpu_ms_per_image"] for x in xs),
            "search_cpu_ms_per_image": median(x["search"]["server_tree_cpu_ms_per_image"] for x in xs),
        })


def throughput_run(n: int, rnd: int, pg: Any, chroma: Any, work: Path, a: argparse.Namespace, enroll_list: Path,
                   probe_list: Path) -> dict[str, Any]:
    name = f"bench_n{n}_r{rnd}"
    url = pg.create_database(name)
    wipe_collections(chroma)
    home = work / f"home-n{n}-r{rnd}"
    env = bench.clean_env(FACEDB_DB_URL=url, FACEDB_CHROMA_URL=chroma.url)
    if a.cv_threads:  # OpenCV's own thread count in each facedb process (its default: the cores)
        env["OPENCV_FOR_THREADS_NUM"] = str(a.cv_threads)
    key = _shared(home, url, chroma.url, lambda db: db.create_key("bench", "write").key)
    srv = bench.FacedbServer(home, workers=1, processes=n, env=env, log_path=work / f"serve-n{n}-r{rnd}.log")
    run: dict[str, Any] = {"processes": n, "round": rnd}
    try:
        srv.start()
        run["start_s"] = srv.start_s
        run["processes_seen"] = len(bench.process_tree(srv.pid))
        if not a.quick:  # warm-up on the empty gallery (first requests of each process; connections land on any)
            bench.run_loadgen("search", srv.port, key, probe_list, a.clients, requests=a.clients * 3)
        log(f"throughput N={n} round {rnd}: enroll")
        run["enroll"] = _rates(bench.run_loadgen("enroll", srv.port, key, enroll_list, a.clients, server_pid=srv.pid))
        log(f"throughput N={n} round {rnd}: enroll {run['enroll']['images_per_s']:.1f} img/s; search")
        run["search"] = _rates(bench.run_loadgen("search", srv.port, key, probe_list, a.clients, requests=a.searches,
                                               warmup=1, server_pid=srv.pid))
        log(f"throughput N={n} round {rnd}: search {run['search']['images_per_s']:.1f} img/s, p50 "
            f"{run['search']['latency']['p50_ms']:.0f} ms")
        status, health = bench.http_json("127.0.0.1", srv.port, "GET", "/healthz")
        run["faces_after"] = health.get("faces") if status == 200 else None
        run["exit_code"] = srv.stop()
    finally:
        srv.kill()
    check = _shared(home, url, chroma.url, lambda db: db.check())
    run["check_clean"] = check.clean
    run["check_faces"] = check.index_faces
    pg.drop_database(name)
    shutil.rmtree(home, ignore_errors=True)
    return run


def _shared(home: Path, url: str, chroma_url: str, fn: Any) -> Any:
    """``fn(db)`` on a FaceDB opened here on the shared stores (what ``facedb keys create`` / ``check`` do,
    without a CLI process each time); closed before the database is dropped."""
    from facedb import FaceDB

    with FaceDB(home=home, db_url=url, chroma_url=chroma_url, workers=1) as db:
        return fn(db)


def _rates(out: dict[str, Any]) -> dict[str, Any]:
    lat = out.pop("latencies_s")
    out["latency"] = bench.summarize_ms(lat)
    cpu = out.get("server_cpu_s") or {}
    total = cpu.get("main", 0.0) + cpu.get("workers", 0.0)
    images = out["images_ok"] + (out["sent"] - out["requests"])  # warm-up searches ran on the server too
    out["server_tree_cpu_s"] = total
    out["server_cores_busy"] = total / out["wall_s"] if out["wall_s"] else None
    out["server_tree_cpu_ms_per_image"] = 1000 * total / images if images else None
    return out


# -- 3. migrate ----------------------------------------------------------------------------------

def add_synthetic_faces(db: Any, folder: Path, n: int, per_identity: int, seed: int, batch: int) -> dict[str, Any]:
    """``n`` face-like unit vectors (``facedb.evaluation.scale.make_synthetic``) through facedb's write path:
    the SQL rows, then the index, then the rows marked indexed (as ``tests/test_scaleout.py``)."""
    from facedb.catalog.faces import StoredItem

    folder.mkdir(parents=True, exist_ok=True)
    data = scale.make_synthetic(n, DIM, per_identity, 1, seed, folder)
    sids = np.load(folder / "sids.npy")
    info = db.pack.contract(register=True)
    t0 = time.monotonic()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        vecs = scale.read_rows(str(folder / "vectors.f32"), start, m, DIM)
        items = [StoredItem(subject=f"synthetic{int(sids[start + j])}", label=f"/synthetic/{start + j}.jpg",
                            path=f"/synthetic/{start + j}.jpg", digest=f"{start + j:064x}", source="upload",
                            size_bytes=1, width=1, height=1, face=_Synthetic(embedding=vecs[j]))
                 for j in range(m)]
        with db.store.writing() as index:
            new = db.catalog.store_batch(items, info.name)
            db.store.journal.index_new_faces(index, info, new)
    data["store_s"] = time.monotonic() - t0
    return data


class _Synthetic:
    """What ``store_batch`` reads of a detected face."""

    def __init__(self, embedding: Any) -> None:
        self.bbox = (0.0, 0.0, 1.0, 1.0)
        self.score = 1.0
        self.landmarks = ((0.0, 0.0),) * 5
        self.embedding = embedding


def phase_migrate(a: argparse.Namespace, work: Path, res: dict[str, Any], checkpoint: Any) -> None:
    from facedb import FaceDB
    from facedb.evaluation.servers import ChromaServer

    lfw = bench.lfw_dir()
    assert lfw is not None
    people = sorted((d for d in lfw.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 5),
                    key=lambda d: d.name)[:a.migrate_people]
    home = work / "home-migrate"
    out: dict[str, Any] = {"command": res["command"], "commit": res["commit"], "started": res["started"],
                           "synthetic_faces": a.migrate_faces, "real_people": [d.name for d in people]}
    res["migrate"] = out
    pg = a.pg
    chroma = ChromaServer()
    try:
        with bench_lock("shared_stores migrate", enabled=a.lock):
            log(f"migrate: building the embedded home ({a.migrate_faces} synthetic faces + "
                f"{len(people)} LFW people)")
            t0 = time.monotonic()
            with FaceDB(home=home, workers=1) as db:
                real = []
                for d in people:
                    rep = db.enroll(d.name, sorted(d.glob("*.jpg"))[:4])
                    real.append({"subject": d.name, "enrolled": rep.enrolled})
                syn = add_synthetic_faces(db, work / "migrate-vectors", a.migrate_faces, a.per_identity,
                                          a.seed, a.migrate_batch)
                out["source_faces"] = int(db.catalog.count_indexed(db.pack_name))
            out["real"] = real
            out["real_faces"] = sum(x["enrolled"] for x in real)
            out["synthetic"] = {k: syn[k] for k in ("identities", "per_identity", "mean_cos_to_centre", "store_s")}
            out["build_home_s"] = time.monotonic() - t0
            out["source_home_mb"] = bench.dir_size_mb(home)
            shutil.rmtree(work / "migrate-vectors", ignore_errors=True)
            log(f"migrate: home built in {out['build_home_s']:.0f} s ({out['source_faces']} faces); migrating")
            pg.ensure_running()
            chroma.start()
            url = pg.create_database("bench_migrate")
            out["loadavg_start"] = bench.loadavg()
            cpu0 = bench.tree_cpu_s(chroma.pid)
            r = bench.run_process([*FACEDB, "--home", str(home), "migrate", "--to-db-url", url,
                                      "--to-chroma-url", chroma.url, "--json"], env=bench.clean_env(),
                                     timeout=4 * 3600)
            cpu1 = bench.tree_cpu_s(chroma.pid)
            out["loadavg_end"] = bench.loadavg()
            out["exit_code"] = r.returncode
            if r.returncode != 0:
                out["stderr"] = r.stderr[-3000:]
                raise RuntimeError(f"facedb migrate exited {r.returncode}: {r.stderr[-3000:]}")
            rep = json.loads(r.stdout)
            out["report"] = rep
            out["wall_s"] = r.wall_s
            out["migrate_cpu_s"] = r.cpu_s
            out["chroma_server_cpu_s"] = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items())
            out["faces_per_s"] = rep["rows"].get("faces", 0) / r.wall_s
            out["faces_per_s_internal"] = rep["rows"].get("faces", 0) / rep["seconds"] if rep["seconds"] else None
            log(f"migrate: {r.wall_s:.1f} s, {out['faces_per_s']:.0f} faces/s, check clean: "
                f"{(rep.get('check') or {}).get('clean')}")
            # the migrated database answers a search of a real face with the right person
            probe = sorted(people[0].glob("*.jpg"))[4]
            env = bench.clean_env(FACEDB_DB_URL=url, FACEDB_CHROMA_URL=chroma.url)
            found, _ = bench.facedb_json(work / "home-target", "search", str(probe), env=env)
            faces = found["results"][0]["faces"]
            out["probe"] = {"image": f"{people[0].name}/{probe.name}", "expected": people[0].name,
                            "identity": faces[0]["identity"] if faces else None}
        checkpoint()
    finally:
        chroma.cleanup()
        shutil.rmtree(home, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------

def render(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        "# Shared stores: PostgreSQL + a Chroma server (issue 9)", "",
        f"Generated by `{res['command']}` on {res['started']} (facedb commit {res['commit']}; total runtime "
        f"{res.get('runtime_min', 0):.1f} min).", "",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gb']} GB RAM, "
        f"{m['os']}, Python {m['python']}; load average at start {res['loadavg_start']}, at the end "
        f"{res.get('loadavg_end', '?')}. The machine is shared with other jobs (another session runs CPU jobs): "
        "numbers are medians, ratios come from this run.",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        "- Servers (from `facedb.evaluation.servers`): PostgreSQL " + res.get("postgres_version", "15") + " (a throw-away "
        "cluster on a loopback port, run by the `postgres` user, `fsync=off`, `shared_buffers=32MB`) and "
        "`chroma run` (the chromadb wheel's server) on a loopback port, each with its files in a temporary folder; "
        "everything on this one 2-core machine, so the servers share the cores with facedb and the load generator.",
        *[f"- Also included: the results of `{x['command']}` (started {x['started']}, facedb commit {x['commit']}, "
          f"{(x.get('runtime_min') or 0):.1f} min, load average {x.get('loadavg_start')} at its start, "
          f"{x.get('loadavg_end')} at its end); each section names the command it comes from."
          for x in res.get("included", [])],
        f"- Phases run by this command: {', '.join(res['phases'])}." + (" **Quick mode: smoke-test sizes, the numbers mean nothing.**"
                                                        if res.get("quick") else ""), ""]
    if "search" in res:
        lines += render_search(res["search"])
    if "throughput" in res:
        lines += render_throughput(res["throughput"])
        for t in res.get("throughput_more", []):
            lines += render_throughput(t, more=True)
    if "migrate" in res:
        lines += render_migrate(res["migrate"])
    if res.get("not_run"):
        lines += ["## Not run", ""] + [f"- {x}" for x in res["not_run"]] + [""]
    return "\n".join(lines)


def render_search(s: dict[str, Any]) -> list[str]:
    out = ["## 1. Search through the Chroma server vs embedded Chroma", "",
           f"From `{s.get('command')}` (started {s.get('started')}, commit {s.get('commit')}).", "",
           f"Synthetic face-like unit vectors, d={DIM} (the default pack's dimension): identity centres uniform on the "
           f"sphere, {s['per_identity']} samples per identity, cos(sample, centre) ≈ 0.75 "
           "(`facedb.evaluation.scale.make_synthetic`); the same vectors loaded into both, each through facedb's "
           "`ChromaIndex.add` (embedded: `ChromaIndex(path)`; server: `ChromaIndex(url=...)`), in chunks, in a "
           f"child process, with facedb's collection settings `{json.dumps(s['hnsw'])}`. Queries: {s['queries']} "
           "held-out noisy samples of random identities, one per call after 10 warm-up calls, in a fresh "
           "process per round; *facedb path* = `ChromaIndex.query` (on a server, up to commit 73d746f it asked "
           "`count()` before every query, a second HTTP round trip; from 04ab972 on it asks only when an answer "
           "is short), *raw* = `collection.query` "
           f"alone. {s['rounds']} rounds alternating embedded/server; the table gives the median over rounds of "
           "each round's p50/p99. recall@10 against exact numpy search (`argpartition` on the matrix product).", ""]
    rows = []
    for r in s["sizes"]:
        for b in ("embedded", "server"):
            x, ld = r[b]["summary"], r[b]["load"]
            rows.append([_f(r["n"]), b, _f(x["p50_ms"], 2), _f(x["p99_ms"], 2), _f(x["raw_p50_ms"], 2),
                         _f(x["raw_p99_ms"], 2), _f(x["count_p50_ms"], 2), _f(x["batch_qps"], 0),
                         _f(x["recall_at_k"], 4), _f(x["top1_agreement"], 3), _f(ld["load_s"], 0),
                         _f(ld["vectors_per_s"], 0), _f(ld["disk_mb"], 0)])
    out += [bench.md_table(["N", "index", "p50 ms (facedb path)", "p99 ms", "raw p50 ms", "raw p99 ms",
                               "count() p50 ms", "batch q/s (100 per call)", "recall@10", "top-1 = exact",
                               "load s", "load vec/s", "disk MB"], rows), ""]
    rows = []
    for r in s["sizes"]:
        q = r["ratio_server_embedded"]
        rows.append([_f(r["n"]), f"{q['p50']:.2f}x", f"{q['p99']:.2f}x", f"{q['raw_p50']:.2f}x",
                     f"{q['batch_qps']:.2f}x", f"{q['load_vectors_per_s']:.2f}x",
                     f"{r['top10_overlap_server_vs_embedded']:.4f}",
                     _f(r["exact"]["numpy_query_1thread"]["p50_ms"], 2),
                     _f(r["server"]["load"].get("server_cpu_s"), 0), _f(r["server"]["load"]["cpu_s"], 0),
                     _f(r["server_rss_mb_end"], 0)])
    out += ["Server / embedded, same run, same data:", "",
            bench.md_table(["N", "p50", "p99", "raw p50", "batch q/s", "load vec/s",
                               "top-10 overlap server vs embedded", "numpy exact p50 ms (1 thread)",
                               "Chroma server CPU s during its load", "loading client CPU s",
                               "Chroma server RSS MB after the queries"], rows), ""]
    per_round = []
    for r in s["sizes"]:
        for b in ("embedded", "server"):
            for q in r[b]["queries"]:
                per_round.append([_f(r["n"]), b, q["round"], _f(q["facedb_query"]["p50_ms"], 2),
                                  _f(q["facedb_query"]["p99_ms"], 2), _f(q["recall_at_k"], 4),
                                  _f(q["cold"]["open_and_first_query_s"], 2), q["loadavg"]])
    out += ["Each round (fresh query process):", "", bench.md_table(
        ["N", "index", "round", "p50 ms", "p99 ms", "recall@10", "open + first query s", "load average after"],
        per_round), ""]
    for sk in s["skipped"]:
        out.append(f"- **N={sk['n']:,} was not run**: {sk['reason']}.")
    if s["skipped"]:
        out.append("")
    return out


def _cv(t: dict[str, Any]) -> str:
    n = t.get("cv_threads")
    return (f"`OPENCV_FOR_THREADS_NUM={n}` in each facedb process (OpenCV's inference on {n} thread(s) per process)"
            if n else "OpenCV's default threads (every core) in each facedb process")


def render_throughput(t: dict[str, Any], more: bool = False) -> list[str]:
    title = ("### 2b. The same with " + _cv(t)) if more else \
        "## 2. Enroll and search throughput with 1, 2, 3 facedb processes on the shared servers"
    out = [title, "", f"From `{t.get('command')}` (started {t.get('started')}, commit {t.get('commit')}); {_cv(t)}.", "",
           f"`facedb serve --workers N --analysis-workers 1` on PostgreSQL + the Chroma server (a fresh database "
           "and empty collections for each run), and the HTTP load generator (`scripts/bench/loadgen.py`, its own "
           f"process) with **{t['clients']} client threads** for every N. Enroll: the same {t['enroll_images']} LFW "
           f"images ({t['enroll_subjects']} people, one person's images per request, "
           "`POST /v1/subjects/<name>/images`). Search: "
           f"{t['searches']} requests of one LFW image each (`POST /v1/search`, k=3), cycling over {t['probes']} "
           "probes not in the enrolled sample, against the gallery just enrolled. Before the enroll, "
           f"{t['clients'] * 3} unmeasured searches warm every process up. {t['rounds']} round(s), N in order "
           f"{t['procs']} then reversed; each N's value is the median over rounds, ratios are against N=1 "
           "(also round by round). *server CPU ms / image*: CPU of the supervisor, the server processes and "
           "their analysis workers during the run, per image.", ""]
    rows = []
    for x in t["summary"]:
        rows.append([x["processes"], _f(x["enroll_images_per_s"], 1), f"{x['enroll_ratio']:.2f}x",
                     " / ".join(f"{v:.2f}" for v in x["enroll_ratio_by_round"]),
                     _f(x["search_images_per_s"], 1), f"{x['search_ratio']:.2f}x",
                     " / ".join(f"{v:.2f}" for v in x["search_ratio_by_round"]),
                     _f(x["search_p50_ms"], 0), _f(x["search_p99_ms"], 0),
                     _f(x["enroll_cpu_ms_per_image"], 0), _f(x["search_cpu_ms_per_image"], 0),
                     _f(x.get("enroll_cores_busy"), 2), _f(x.get("search_cores_busy"), 2)])
    out += [bench.md_table(["facedb processes", "enroll img/s", "vs N=1", "per round", "search img/s", "vs N=1",
                               "per round", "search p50 ms", "search p99 ms", "enroll server CPU ms / image",
                               "search server CPU ms / image", "enroll: cores busy in facedb",
                               "search: cores busy in facedb"], rows), ""]
    rows = []
    for x in t["runs"]:
        rows.append([x["round"], x["processes"], _f(x["start_s"], 1), x["enroll"]["requests"],
                     x["enroll"]["images_ok"], _f(x["enroll"]["wall_s"], 1), _f(x["enroll"]["images_per_s"], 1),
                     x["search"]["requests"], _f(x["search"]["wall_s"], 1), _f(x["search"]["images_per_s"], 1),
                     x["faces_after"], x["check_clean"], x["exit_code"],
                     f"{x['enroll']['loadavg']} / {x['search']['loadavg']}"])
    out += ["Every run:", "", bench.md_table(
        ["round", "N", "start s", "enroll requests", "images enrolled", "enroll s", "enroll img/s", "searches",
         "search s", "search img/s", "faces after", "check clean", "exit", "load average before enroll / search"],
        rows), ""]
    return out


def render_migrate(mg: dict[str, Any]) -> list[str]:
    rep = mg.get("report") or {}
    chk = rep.get("check") or {}
    out = ["## 3. `facedb migrate` from an embedded home to PostgreSQL + the Chroma server", "",
           f"From `{mg.get('command')}` (started {mg.get('started')}, commit {mg.get('commit')}).", "",
           f"Source: an embedded home (SQLite + embedded Chroma) with {mg['synthetic_faces']:,} synthetic face-like "
           "128-d unit vectors stored through facedb's write path (SQL rows, the index, rows marked indexed; "
           f"{mg['synthetic']['identities']:,} identities of {mg['synthetic']['per_identity']}) plus "
           f"{mg['real_faces']} real LFW faces enrolled normally ({', '.join(mg['real_people'])}); built in "
           f"{mg['build_home_s']:.0f} s ({mg['synthetic']['store_s']:.0f} s for the synthetic faces), "
           f"{mg['source_home_mb']:.0f} MB on disk. Target: a new PostgreSQL database and an empty Chroma server. "
           "Command: `facedb --home H migrate --to-db-url postgresql+psycopg://... --to-chroma-url http://127.0.0.1:PORT "
           "--json`, timed from outside as a whole process.", ""]
    rows = [["whole command (wall)", _f(mg.get("wall_s"), 1) + " s"],
            ["faces / s (faces copied / wall)", _f(mg.get("faces_per_s"), 0)],
            ["migrate's own `seconds` (copy + index build + check)", _f(rep.get("seconds"), 1) + " s"],
            ["faces indexed on the Chroma server", _f(rep.get("indexed_faces"))],
            ["rows copied", ", ".join(f"{k} {v:,}" for k, v in (rep.get("rows") or {}).items())],
            ["target check", f"clean: {chk.get('clean')}; catalog faces {chk.get('catalog_faces', '?')}, index faces "
                             f"{chk.get('index_faces', '?')}, searched by their own vector {chk.get('reach_checked', '?')}"],
            ["exit code", mg.get("exit_code")],
            ["CPU s: migrate process / Chroma server", f"{_f(mg.get('migrate_cpu_s'), 0)} / "
                                                       f"{_f(mg.get('chroma_server_cpu_s'), 0)}"],
            ["search of a held-out photo on the target", f"{(mg.get('probe') or {}).get('image')} -> "
                                                         f"{(mg.get('probe') or {}).get('identity')} (expected "
                                                         f"{(mg.get('probe') or {}).get('expected')})"],
            ["load average at start / end", f"{mg.get('loadavg_start')} / {mg.get('loadavg_end')}"]]
    out += [bench.md_table(["measurement", "result"], rows), ""]
    return out


def summary_md(res: dict[str, Any], link: str = "benchmarks/shared_stores.md") -> str:
    """The section of docs/benchmarks.md."""
    lines = ["## Shared stores (PostgreSQL + a Chroma server)", "",
             f"[{link}]({link}) (raw numbers in `shared_stores.json`), from `{res['command']}` at commit "
             f"{res['commit']}; load average {res['loadavg_start']} at the start, {res.get('loadavg_end')} at the end "
             "(another session's CPU jobs shared the 2 cores). Servers, facedb and the load generator all on this one "
             "machine.", ""]
    rows = []
    if "search" in res:
        for r in res["search"]["sizes"]:
            e, s, q = r["embedded"]["summary"], r["server"]["summary"], r["ratio_server_embedded"]
            rows.append([f"search {r['n']:,} × 128-d: server vs embedded",
                         f"p50 {s['p50_ms']:.2f} vs {e['p50_ms']:.2f} ms (**{q['p50']:.2f}x**), p99 {s['p99_ms']:.2f} vs "
                         f"{e['p99_ms']:.2f} ms ({q['p99']:.2f}x); raw query p50 {q['raw_p50']:.2f}x; recall@10 "
                         f"{s['recall_at_k']:.4f} vs {e['recall_at_k']:.4f}; load {r['server']['load']['vectors_per_s']:.0f} "
                         f"vs {r['embedded']['load']['vectors_per_s']:.0f} vec/s ({q['load_vectors_per_s']:.2f}x)"])
        for sk in res["search"]["skipped"]:
            rows.append([f"search {sk['n']:,} × 128-d", f"**not run**: {sk['reason']}"])
    if "throughput" in res:
        t = res["throughput"]
        rows.append([f"throughput, facedb processes {' / '.join(str(x['processes']) for x in t['summary'])} "
                     f"({t['clients']} clients)",
                     "enroll " + " / ".join(f"{x['enroll_images_per_s']:.1f}" for x in t["summary"]) + " img/s = "
                     + " / ".join(f"{x['enroll_ratio']:.2f}x" for x in t["summary"]) + "; search "
                     + " / ".join(f"{x['search_images_per_s']:.1f}" for x in t["summary"]) + " img/s = "
                     + " / ".join(f"{x['search_ratio']:.2f}x" for x in t["summary"])])
    for t in res.get("throughput_more", []):
        rows.append([f"throughput with OPENCV_FOR_THREADS_NUM={t.get('cv_threads')}, facedb processes "
                     f"{' / '.join(str(x['processes']) for x in t['summary'])} ({t['clients']} clients)",
                     "enroll " + " / ".join(f"{x['enroll_images_per_s']:.1f}" for x in t["summary"]) + " img/s = "
                     + " / ".join(f"{x['enroll_ratio']:.2f}x" for x in t["summary"]) + "; search "
                     + " / ".join(f"{x['search_images_per_s']:.1f}" for x in t["summary"]) + " img/s = "
                     + " / ".join(f"{x['search_ratio']:.2f}x" for x in t["summary"])])
    if "migrate" in res and res["migrate"].get("report"):
        mg = res["migrate"]
        rep = mg["report"]
        rows.append([f"`facedb migrate` of {rep['rows'].get('faces', 0):,} faces",
                     f"**{mg['wall_s']:.0f} s** whole command = {mg['faces_per_s']:.0f} faces/s; check clean: "
                     f"{(rep.get('check') or {}).get('clean')}"])
    for x in res.get("not_run", []):
        rows.append(["not run", x])
    lines += [bench.md_table(["measurement", "result"], rows), ""]
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------

def _ints(s: str) -> list[int]:
    return [int(float(x)) for x in s.split(",") if x.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phases", default=",".join(PHASES),
                    help=f"comma list of {PHASES} [all]; 'none' renders the --include-json results only")
    ap.add_argument("--sizes", type=_ints, default=None, help="search: gallery sizes [100000,300000,1000000]")
    ap.add_argument("--max-load-minutes", type=float, default=None,
                    help="search: skip a size whose projected load (both indexes) exceeds this [90]")
    ap.add_argument("--deadline-minutes", type=float, default=None,
                    help="search: skip a size whose projected loads would end later than this many minutes after "
                         "the start of the run (a session's time limit)")
    ap.add_argument("--queries", type=int, default=None, help="search: single queries per round [200]")
    ap.add_argument("--batch", type=int, default=None, help="search: batch size for batch q/s [100]")
    ap.add_argument("--batch-reps", type=int, default=None)
    ap.add_argument("--per-identity", type=int, default=10)
    ap.add_argument("--time-cap", type=float, default=None, help="search: seconds per numpy single-query series")
    ap.add_argument("--rounds", type=int, default=None, help="search query rounds and throughput rounds [2]")
    ap.add_argument("--procs", type=_ints, default=None, help="throughput: facedb server processes [1,2,3]")
    ap.add_argument("--clients", type=int, default=None, help="throughput: load-generator threads [6]")
    ap.add_argument("--enroll-images", type=int, default=None, help="throughput: LFW images enrolled per run [300]")
    ap.add_argument("--probes", type=int, default=None, help="throughput: LFW probe images [200]")
    ap.add_argument("--searches", type=int, default=None, help="throughput: search requests per run [300]")
    ap.add_argument("--cv-threads", type=int, default=None,
                    help="throughput: OPENCV_FOR_THREADS_NUM for each facedb process [unset: OpenCV uses every core]")
    ap.add_argument("--migrate-faces", type=int, default=None, help="migrate: synthetic faces in the home [100000]")
    ap.add_argument("--migrate-people", type=int, default=None, help="migrate: real LFW people enrolled [3]")
    ap.add_argument("--migrate-batch", type=int, default=2000, help="migrate: synthetic faces per write")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes; no lock; measures nothing")
    ap.add_argument("--seed", type=int, default=4321)
    ap.add_argument("--lock", dest="lock", action="store_true", default=None)
    ap.add_argument("--no-lock", dest="lock", action="store_false")
    ap.add_argument("--out", type=Path, default=None, help=f"markdown report [{DEFAULT_OUT}; none with --quick]")
    ap.add_argument("--json", type=Path, default=None, help="raw numbers [--out with .json]")
    ap.add_argument("--update-benchmarks-md", action="store_true",
                    help="also put the summary section into docs/benchmarks.md")
    ap.add_argument("--workdir", type=Path, default=None, help="scratch folder [a temporary one, removed]")
    ap.add_argument("--include-json", type=Path, action="append", default=[],
                    help="also report the phases of an earlier run of this script (its JSON); a throughput phase "
                         "of both is shown as a second variant")
    ap.add_argument("--not-run", action="append", default=[],
                    help="text for the report's 'Not run' list (what this command left out, and why)")
    a = ap.parse_args(argv)
    q = a.quick
    a.phases = [p for p in a.phases.split(",") if p and p != "none"]  # none: only render --include-json
    bad = set(a.phases) - set(PHASES)
    if bad:
        ap.error(f"unknown phases {sorted(bad)}")
    a.sizes = a.sizes or ([2000] if q else [100_000, 300_000, 1_000_000])
    a.max_load_minutes = a.max_load_minutes if a.max_load_minutes is not None else (0 if q else 90)
    a.queries = a.queries or (20 if q else 200)
    a.batch = min(a.batch or (10 if q else 100), a.queries)
    a.batch_reps = a.batch_reps or (1 if q else 3)
    a.time_cap = a.time_cap or (1.0 if q else 10.0)
    a.rounds = a.rounds or (1 if q else 2)
    a.procs = a.procs or ([1, 2] if q else [1, 2, 3])
    a.clients = a.clients or (2 if q else 6)
    a.enroll_images = a.enroll_images or (6 if q else 300)
    a.probes = a.probes or (4 if q else 200)
    a.searches = a.searches or (6 if q else 300)
    a.migrate_faces = a.migrate_faces or (600 if q else 100_000)
    a.migrate_people = a.migrate_people or (1 if q else 3)
    a.lock = (not q) if a.lock is None else a.lock
    if a.out is None and not q:
        a.out = DEFAULT_OUT
    if a.json is None and a.out is not None:
        a.json = a.out.with_suffix(".json")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    reason = servers_unavailable()
    if reason:
        print(f"shared_stores: {reason}", file=sys.stderr)
        return 2
    if {"throughput", "migrate"} & set(a.phases) and bench.lfw_dir() is None:
        print("shared_stores: LFW not found (../shared/datasets/lfw or $FACEDB_DATASETS/lfw): the throughput and "
              "migrate phases need it (run --phases search without it)", file=sys.stderr)
        return 2
    earlier = [json.loads(f.read_text()) for f in a.include_json]  # read now: --json may be the same file
    t_start = time.monotonic()
    res: dict[str, Any] = {"command": bench.command_line(), "argv": argv, "started": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "commit": bench.git_rev(), "machine": bench.machine_info(),
                           "loadavg_start": bench.loadavg(), "quick": a.quick, "phases": a.phases,
                           "versions": bench.library_versions("facedb-service", "chromadb", "numpy", "sqlalchemy", "psycopg",
                                                                 "fastapi", "uvicorn", "opencv-python-headless"),
                           "not_run": list(a.not_run)}
    try:
        from facedb.evaluation.servers import find_pg_bin

        res["postgres_version"] = bench.run_process([str(find_pg_bin() / "postgres"), "--version"]).stdout.strip()
    except Exception:  # pragma: no cover
        pass
    own = a.workdir is None
    work = Path(tempfile.mkdtemp(prefix="facedb-bench-shared-")) if own else a.workdir
    work.mkdir(parents=True, exist_ok=True)

    def checkpoint() -> None:
        res["runtime_min"] = (time.monotonic() - t_start) / 60
        if a.json:
            bench.write_text(a.json, json.dumps(res, indent=1, default=str))

    a.pg = None
    if {"throughput", "migrate"} & set(a.phases):
        from facedb.evaluation.servers import PostgresCluster

        a.pg = PostgresCluster()
        a.pg.start()
    a.t_start = t_start
    try:
        for phase in PHASES:
            if phase in a.phases:
                log(f"phase {phase}")
                {"search": phase_search, "throughput": phase_throughput, "migrate": phase_migrate}[phase](
                    a, work, res, checkpoint)
                checkpoint()
    finally:
        if a.pg is not None:
            a.pg.cleanup()
        if own:
            shutil.rmtree(work, ignore_errors=True)
    res["included"] = []
    res.setdefault("throughput_more", [])
    for prev in earlier:
        for key in ("throughput", "migrate", "search"):
            if key not in prev:
                continue
            prev[key].setdefault("command", prev["command"])
            prev[key].setdefault("commit", prev["commit"])
            prev[key].setdefault("started", prev["started"])
            if key not in res:
                res[key] = prev[key]
            elif key == "throughput":
                res["throughput_more"].append(prev[key])
        res["throughput_more"] += prev.get("throughput_more", [])
        res["not_run"] += [x for x in prev.get("not_run", []) if x not in res["not_run"]]
        res["included"].append({"command": prev["command"], "started": prev["started"],
                                "commit": prev["commit"], "runtime_min": prev.get("runtime_min"),
                                "loadavg_start": prev.get("loadavg_start"), "loadavg_end": prev.get("loadavg_end")})
        res["included"] += [x for x in prev.get("included", []) if x not in res["included"]]
    for t in [res.get("throughput"), *res["throughput_more"]]:
        if t:
            throughput_summary(t)
    res["phases_reported"] = [k for k in PHASES if k in res]
    for sk in (res.get("search") or {}).get("skipped", []):
        line = f"search at N={sk['n']:,}: {sk['reason']}"
        if line not in res["not_run"]:
            res["not_run"].append(line)
    res["loadavg_end"] = bench.loadavg()
    checkpoint()
    text = render(res)
    print(text)
    if a.out:
        bench.write_text(a.out, text)
        log(f"wrote {a.out}")
    if a.update_benchmarks_md:
        bench.replace_section(REPO / "docs" / "benchmarks.md", "shared-stores", summary_md(res))
        log("updated docs/benchmarks.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
