"""The measurement behind ``scripts/bench/scale.py``: a gallery of N synthetic faces served by
``facedb serve``, measured end to end (issue 18's scale benchmark).

1. **Build** a home of N face-like vectors (``scale.make_synthetic``: identities x ``per_id``
   faces, cos to the identity's centre ~0.75), through the restore path: the catalog's rows by
   the restore's bulk insert (``catalog.snapshot.insert_rows``), the subjects' templates from
   those rows, the index by the restore's own build (``operations.backup._build_index``), on
   embedded Chroma or on a Chroma server.
2. **Serve** it: ``facedb serve`` as a child process; its start time (to the first ``/healthz``)
   and its resident memory (the server and its children) after the searches.
3. **Search** without embedding: ``GET /v1/faces/{id}/search?by=face&k=10``, the stored embedding
   of an enrolled face as the probe (the face itself is left out of the answer, as the route
   documents), from 1 and from 8 clients (threads on keep-alive connections); p50 and p99 of the
   wall time per request as the client sees it; recall@10 of the returned face ids against an
   exact numpy search over every vector (the probe left out too).
4. **Delete + erase**: ``DELETE /v1/subjects/{name}`` of a few whole subjects through the server
   (it erases: see ``ChromaIndex.erase``), timed by the client; then, with the server stopped, a
   byte scan of every file of the home (and of the Chroma server's data folder) for the deleted
   vectors and names (``evaluation.erasure.scan_tree``).
5. **Backup and restore**: ``facedb backup FILE`` while the server owns the home (the CLI goes
   through the server), then ``facedb restore FILE`` into a new home, each its own process, timed
   from outside; the restore's own ``check`` must come back clean.

Nothing identifying is involved: the vectors are random, the names synthetic.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from . import bench
from .erasure import scan_tree, subject_name
from .scale import make_synthetic, read_rows

K = 10
#: Rows per insert chunk while building.
CHUNK = 20_000


# -- building -----------------------------------------------------------------------------------

def build(home: Path, scratch: Path, n: int, dim: int, per_id: int = 5, seed: int = 0,
          log: Any = bench.log) -> dict[str, Any]:
    """A facedb home of ``n`` synthetic faces, built through the restore path (module docstring);
    the vectors stay in ``scratch/vectors.f32`` (row i = face id i+1). The environment decides
    the index (``FACEDB_CHROMA_URL``)."""
    from .. import FaceDB
    from ..catalog import snapshot
    from ..catalog.models import Base
    from ..operations.backup import _build_index

    scratch.mkdir(parents=True, exist_ok=True)
    data = make_synthetic(n, dim, per_id, 10, seed, scratch)
    sids = np.load(scratch / "sids.npy")
    n_ids = int(sids[-1]) + 1
    vec_file = str(scratch / "vectors.f32")
    t0 = time.perf_counter()
    db = FaceDB(home=home, workers=1)
    try:
        info = db.pack.contract(register=True)
        if info.dim != dim:
            raise RuntimeError(f"the pack {info.name} is {info.dim}-d; this gallery is {dim}-d (choose the pack "
                               "with --pack / FACEDB_PACK)")
        catalog = db.catalog
        cid = catalog.cid
        tables = Base.metadata.tables

        def subjects() -> Any:
            for s in range(0, n_ids, CHUNK):
                yield [{"id": i + 1, "collection_id": cid, "name": subject_name(i)}
                       for i in range(s, min(n_ids, s + CHUNK))]

        def images() -> Any:
            for s in range(0, n, CHUNK):
                yield [{"id": j + 1, "collection_id": cid, "subject_id": int(sids[j]) + 1,
                        "path": f"/synthetic/{j}.jpg", "sha256": hashlib.sha256(b"%d" % j).hexdigest(),
                        "size_bytes": 0, "width": 1, "height": 1, "status": "enrolled"}
                       for j in range(s, min(n, s + CHUNK))]

        def faces() -> Any:
            for s in range(0, n, CHUNK):
                m = min(CHUNK, n - s)
                vecs = read_rows(vec_file, s, m, dim)
                yield [{"id": j + 1, "collection_id": cid, "image_id": j + 1, "subject_id": int(sids[j]) + 1,
                        "model": info.name, "x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0, "score": 1.0,
                        "landmarks": [[0.0, 0.0]] * 5, "dim": dim, "embedding": vecs[j - s].tobytes(),
                        "indexed": True} for j in range(s, s + m)]

        def templates() -> Any:
            # the sum of each subject's unit vectors (faces are written subject by subject)
            for s in range(0, n, CHUNK * per_id):
                m = min(CHUNK * per_id, n - s)
                vecs = read_rows(vec_file, s, m, dim).astype(np.float64)
                owner = sids[s:s + m]
                first, counts = np.unique(owner, return_counts=True)
                sums = np.add.reduceat(vecs, np.r_[0, np.cumsum(counts)[:-1]], axis=0).astype(np.float32)
                yield [{"subject_id": int(sid) + 1, "model": info.name, "collection_id": cid,
                        "vector": sums[i].tobytes(), "n_faces": int(counts[i]), "seq": int(sid) + 1}
                       for i, sid in enumerate(first)]

        rows = snapshot.insert_rows(catalog, iter([(tables["subjects"], subjects()), (tables["images"], images()),
                                                   (tables["faces"], faces()),
                                                   (tables["subject_templates"], templates())]))
        with catalog.engine.begin() as conn:  # the template change sequence goes on after the rows
            counters = tables["counters"]
            conn.execute(counters.delete().where(counters.c.name == "templates"))
            conn.execute(counters.insert(), [{"name": "templates", "value": n_ids + 1}])
        t_rows = time.perf_counter() - t0
        log(f"[scale] {n:,} x {dim}-d: catalog rows in {t_rows:.1f} s ({rows}); building the index...")
        rec = catalog.index_pack(info.name)
        assert rec is not None
        with db.store.base.exclusive(recover=False) as index:
            indexed = _build_index(catalog, index, rec)
            db.store.base.mark_recovered()
        t_index = time.perf_counter() - t0 - t_rows
    finally:
        db.close()
    if indexed != n:
        raise RuntimeError(f"the index holds {indexed} faces after the build, not {n}")
    log(f"[scale] built in {time.perf_counter() - t0:.0f} s (index {t_index:.0f} s, {n / t_index:.0f} faces/s)")
    return {**data, "pack": info.name, "rows_s": round(t_rows, 1), "index_s": round(t_index, 1),
            "build_s": round(time.perf_counter() - t0, 1)}


# -- exact search -------------------------------------------------------------------------------

def exact_topk(vec_file: str, n: int, dim: int, probes: np.ndarray, exclude: np.ndarray, k: int = K) -> np.ndarray:
    """Face ids (1-based) of the k nearest stored vectors to each probe by cosine (unit vectors:
    largest dot product), each probe's own face id left out; ties broken by the smaller id."""
    q = probes.astype(np.float32)
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for s in range(0, n, 200_000):
        m = min(200_000, n - s)
        block = read_rows(vec_file, s, m, dim)
        scores = q @ block.T
        ids = np.arange(s + 1, s + m + 1)
        scores[np.equal.outer(exclude, ids)] = -np.inf
        part = np.argpartition(-scores, min(k, m - 1), axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, ids[part]], axis=1)
        order = np.lexsort((cand_i, -cand_s), axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, order, axis=1)
        best_i = np.take_along_axis(cand_i, order, axis=1)
    return best_i


# -- the served measurements --------------------------------------------------------------------

def _get(conn: Any, path: str, headers: dict[str, str], host: str, port: int) -> tuple[int, bytes]:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    raw = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode()
    return conn.exchange(raw)  # type: ignore[no-any-return]


def search_load(port: int, key: str, face_ids: list[int], clients: int, warmup: int = 20
                ) -> tuple[list[float], dict[int, list[int]], dict[int, int]]:
    """``GET /v1/faces/{id}/search?by=face&k=10`` for every face id, spread over ``clients``
    threads (one keep-alive connection each); (latencies s, {face id: returned face ids},
    {status: count})."""
    from .loadgen import Connection
    from .servers import HOST

    headers = {"Authorization": f"Bearer {key}"}
    lock = threading.Lock()
    nxt = [0]
    lat: list[float] = []
    got: dict[int, list[int]] = {}
    statuses: dict[int, int] = {}
    barrier = threading.Barrier(clients)
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            run(w)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            barrier.abort()

    def run(w: int) -> None:
        conn = Connection(HOST, port, 60.0)
        try:
            for i in range(warmup):
                _get(conn, f"/v1/faces/{face_ids[(w * warmup + i) % len(face_ids)]}/search?by=face&k={K}",
                     headers, HOST, port)
            barrier.wait()
            while True:
                with lock:
                    i = nxt[0]
                    nxt[0] += 1
                if i >= len(face_ids):
                    return
                fid = face_ids[i]
                t = time.perf_counter()
                status, body = _get(conn, f"/v1/faces/{fid}/search?by=face&k={K}", headers, HOST, port)
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        got[fid] = [int(m["face_id"]) for m in json.loads(body)["matches"]]
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"a search client failed: {errors[0]!r}") from errors[0]
    return lat, got, statuses


def _ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.array(values) * 1000, q)), 3) if values else float("nan")


def measure(home: Path, scratch: Path, built: dict[str, Any], *, queries: int, clients: list[int],
            deletes: int, env: dict[str, str], chroma_data: Path | None, erased_out: Path | None,
            restore_home: Path | None, restore_env: dict[str, str] | None = None, log: Any = bench.log,
            seed: int = 1) -> dict[str, Any]:
    """Steps 2 to 5 of the module docstring on the home ``build`` made (step 5's restore only
    with a ``restore_home``). Subjects deleted by an earlier run on the same home (listed in
    ``scratch/deleted.json``) are neither probed nor deleted again."""
    from .servers import HOST, FacedbServer, http_json

    n, dim, per_id = int(built["n"]), int(built["dim"]), int(built["per_identity"])
    vec_file = str(scratch / "vectors.f32")
    sids = np.load(scratch / "sids.npy")
    n_ids = int(sids[-1]) + 1
    rng = np.random.default_rng(seed)
    gone_file = scratch / "deleted.json"
    gone = set(json.loads(gone_file.read_text())) if gone_file.exists() else set()
    picks = []
    for s in np.linspace(0, n_ids - 1, deletes).astype(int):
        while int(s) in gone or int(s) in picks:
            s = (s + 7919) % n_ids
        picks.append(int(s))
    victim_rows = np.concatenate([np.flatnonzero(sids == s) for s in picks])
    alive = np.setdiff1d(np.arange(n), np.flatnonzero(np.isin(sids, list(gone | set(picks)))))
    probe_rows = np.sort(rng.choice(alive, min(queries, len(alive)), replace=False))
    probe_ids = [int(r) + 1 for r in probe_rows]
    out: dict[str, Any] = {"faces": n, "dim": dim, "per_identity": per_id, "queries": len(probe_ids),
                           "load_before": bench.loadavg()}
    t = time.perf_counter()
    probes = np.stack([read_rows(vec_file, int(r), 1, dim)[0] for r in probe_rows])
    truth = exact_topk(vec_file, n, dim, probes, np.array(probe_ids))
    out["exact_s"] = round(time.perf_counter() - t, 1)
    keys = {}
    for scope in ("read", "admin"):
        res = bench.run_process([*_facedb(), "--home", str(home), "keys", "create", f"scale-{scope}-{time.time_ns()}", "--scope",
                                 scope, "--json"], env=env)
        if res.returncode:
            raise RuntimeError(f"keys create: {res.stderr[-2000:]}")
        keys[scope] = json.loads(res.stdout)["key"]
    server = FacedbServer(home, env=env, workers=1, log_path=scratch / "serve.log")
    server.env = env  # exactly this environment (the Chroma server's URL and folder included)
    try:
        server.start(timeout=3600)
        out["serve_start_s"] = round(server.start_s, 2)
        log(f"[scale] serve answered /healthz after {server.start_s:.1f} s")
        for c in clients:
            lat, got, statuses = search_load(server.port, keys["read"], probe_ids, c)
            rec = [len(set(got[f]) & set(truth[i].tolist())) / K for i, f in enumerate(probe_ids) if f in got]
            # the probe's own subject's other faces among the answers: what a face search is for
            mates = [[int(m) + 1 for m in np.flatnonzero(sids == sids[f - 1]) if m != f - 1] for f in probe_ids]
            with_mates = [len(set(got[f]) & set(m)) / len(m) for f, m in zip(probe_ids, mates) if f in got and m]
            out[f"search_{c}"] = {"clients": c, "requests": len(lat), "statuses": statuses,
                                  "p50_ms": _ms(lat, 50), "p99_ms": _ms(lat, 99),
                                  "per_s": round(len(lat) / max(1e-9, sum(lat) / c), 1),
                                  "recall_at_10": round(float(np.mean(rec)), 4) if rec else None,
                                  "mates_found": round(float(np.mean(with_mates)), 4) if with_mates else None}
            log(f"[scale] {c} client(s): p50 {out[f'search_{c}']['p50_ms']} ms, p99 {out[f'search_{c}']['p99_ms']} "
                f"ms, recall@10 {out[f'search_{c}']['recall_at_10']}, mates found {out[f'search_{c}']['mates_found']}, "
                f"{statuses}")
        out["rss"] = bench.tree_rss_mb(server.pid)
        per: list[float] = []
        for s in picks:
            t = time.perf_counter()
            status, body = http_json(HOST, server.port, "DELETE", f"/v1/subjects/{quote(subject_name(s), safe='')}",
                                     key=keys["admin"], timeout=3600)
            per.append(time.perf_counter() - t)
            if status != 200 or body.get("faces") != int(np.sum(sids == s)):
                raise RuntimeError(f"delete of subject {s}: {status} {body}")
        gone_file.write_text(json.dumps(sorted(gone | set(picks))))
        out["deletes"] = [round(x, 3) for x in per]
        out["delete_erase_s"] = round(statistics.median(per), 3)
        log(f"[scale] delete+erase of one subject: median {out['delete_erase_s']} s ({out['deletes']})")
        # the victims answer no more (their own vectors as probes, through the index)
        status, body = http_json(HOST, server.port, "GET", f"/v1/faces/{int(victim_rows[0]) + 1}/search?by=face",
                                 key=keys["read"])
        out["victim_face_lookup_status"] = status
        snap = scratch / "scale.facedb-backup"
        r = bench.run_process([*_facedb(), "--home", str(home), "backup", str(snap), "--json"], env=env)
        if r.returncode:
            raise RuntimeError(f"backup: {r.stderr[-2000:]}")
        out["backup_s"] = round(r.wall_s, 1)
        out["backup_mb"] = round(snap.stat().st_size / 2**20, 1)
        rep_b = json.loads(r.stdout)
        out["backup_index_shipped"] = rep_b.get("index_shipped")
        out["backup_index_note"] = rep_b.get("index_note")
        log(f"[scale] backup through the server: {r.wall_s:.1f} s, {out['backup_mb']} MiB")
    finally:
        server.stop(timeout=600)
        server.kill()
    victims = np.stack([read_rows(vec_file, int(r), 1, dim)[0] for r in victim_rows])
    if erased_out is not None:
        np.save(erased_out, victims.astype(np.float32))
    controls = probes[:5]
    t = time.perf_counter()
    roots = [home] + ([chroma_data] if chroma_data is not None else [])
    found: dict[str, Any] = {}
    control: dict[str, int] = {}
    for root in roots:
        scan = scan_tree(root, np.concatenate([victims, controls]), [subject_name(s).encode() for s in picks],
                         split=len(victims))
        for f, counts in scan.items():
            if counts.get("control"):
                control[f"{root.name}/{f}"] = counts.pop("control")
            if any(counts.values()):
                found[f"{root.name}/{f}"] = counts
    out["scan_s"] = round(time.perf_counter() - t, 1)
    out["bytes_found_after"] = sum(c["win16"] + c["approx"] for c in found.values())
    out["names_found_after"] = sum(c["name"] for c in found.values())
    out["scan_found"] = found
    out["scan_control_found"] = control  # the positive control: survivors' vectors must be found
    log(f"[scale] byte scan in {out['scan_s']} s: victims {found or 'nowhere'}; controls found in {len(control)} files")
    if restore_home is None:
        out["load_after"] = bench.loadavg()
        return out
    # restore into a new home (the Chroma server, if any, gets the restored collection anew)
    r = bench.run_process([*_facedb(), "--home", str(restore_home), "restore", str(scratch / "scale.facedb-backup"),
                           "--json"], env=restore_env or env)
    if r.returncode:
        raise RuntimeError(f"restore: {r.stderr[-3000:]}")
    rep = json.loads(r.stdout)
    out["restore_s"] = round(r.wall_s, 1)
    out["restore"] = {k: rep.get(k) for k in ("rows_seconds", "index_seconds", "indexed_faces", "clean", "seconds",
                                              "index_path", "index_note")}
    out["restore_peak_rss_mb"] = round(r.max_rss_mb, 1)
    out["load_after"] = bench.loadavg()
    log(f"[scale] restore: {r.wall_s:.1f} s, clean {rep.get('clean')}")
    return out


def _facedb() -> list[str]:
    from .servers import facedb_command

    return facedb_command()


NAMES = ("FACEDB_CHROMA_URL", "FACEDB_CHROMA_DATA", "FACEDB_PACK", "FACEDB_MODELS_DIR")


def environment(chroma_url: str | None, chroma_data: Path | None, pack: str | None, *, apply: bool = True,
                models_dir: Path | None = None) -> dict[str, str]:
    """The environment of the run's ``facedb`` processes (and, with ``apply``, of this one)."""
    from .servers import clean_env

    extra = {}
    if models_dir is not None:
        extra["FACEDB_MODELS_DIR"] = str(models_dir)
    if chroma_url:
        extra["FACEDB_CHROMA_URL"] = chroma_url
    if chroma_data is not None:
        extra["FACEDB_CHROMA_DATA"] = str(chroma_data)
    if pack:
        extra["FACEDB_PACK"] = pack
    env = clean_env(**extra)
    for name in NAMES:
        if name not in extra:
            env.pop(name, None)
    if apply:
        os.environ.update(extra)  # the in-process build opens the same stores
        for name in NAMES:
            if name not in extra:
                os.environ.pop(name, None)
    return env


# -- the report ----------------------------------------------------------------------------------

COLUMNS = ["faces", "dim", "faces a subject", "index", "build s", "serve start s", "search p50 ms (1)", "p99 ms (1)",
           "p50 ms (8)", "p99 ms (8)", "recall@10", "mates found", "server RSS MiB", "delete+erase s (median)",
           "bytes found after", "backup s", "restore s", "restore index", "restore clean", "load before", "commit"]


def row_of(run: dict[str, Any]) -> list[Any]:
    s1, s8 = run.get("search_1", {}), run.get("search_8", {})
    build = "(kept home)" if run.get("reused_home") else run.get("build", {}).get("build_s")
    return [f"{run['faces']:,}", run["dim"], run.get("per_identity"), run["index"], build, run.get("serve_start_s"),
            s1.get("p50_ms"), s1.get("p99_ms"), s8.get("p50_ms"), s8.get("p99_ms"), run.get("recall_at_10"),
            s1.get("mates_found", "-"), round(run.get("rss", {}).get("total_mb", float("nan")), 0),
            run.get("delete_erase_s"),
            run.get("bytes_found_after"), run.get("backup_s"), run.get("restore_s", "-"),
            run.get("restore", {}).get("index_path", "-"), run.get("restore", {}).get("clean", "-"),
            run.get("load_before"), run.get("commit")]
