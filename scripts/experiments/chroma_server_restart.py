#!/usr/bin/env python
"""Chroma's server with facedb's real write pattern: restarts, kills, latency, outages.

Questions (issue 9; upstream chroma-core/chroma#7090 reports an HNSW index that fails to load
after a server restart once a collection holds more than ~1,000 vectors):

1. **Restarts.** Through ``chromadb.HttpClient`` against ``chroma run`` (started by
   ``tests/servers.py``'s ``ChromaServer``), create the collection exactly as
   ``facedb/index/chroma_index.py`` does (cosine, ``max_neighbors`` 32, ``ef_construction``
   200, ``ef_search`` 200, the pack metadata), write face-like 128-d unit vectors (identities x
   samples, cos to the identity centre ~0.75) in upserts of 256 with ``subject_id``/``subject``
   metadata and string face ids that are never reused (what an enroll batch does), delete whole
   subjects (what ``delete`` does), then SIGKILL / SIGTERM the server and restart it on the same
   path and port. After each restart: ``count()``, ``get(ids)`` of every live id, and the
   self-search of ``ChromaIndex.unreachable`` (each live vector queried with k=10 must return its
   own id) plus the self top-1 rate; with the client that was open before the restart and with a
   fresh one. One cycle SIGKILLs the server while a writer thread is in the middle of its upserts;
   the in-flight batch must be all-or-nothing and every acknowledged batch must be intact, then the
   missing ids are written again as facedb's journal replay would (``get`` first, add only what
   is missing).
2. **Latency.** Single-query p50/p99 (k=10, ``include=["distances"]``) through ``HttpClient`` vs
   an embedded ``PersistentClient`` on a copy of the same data directory, in the same run, in
   alternating blocks (so both see the same machine load); plus a 100-query batch.
3. **Outages.** What an ``HttpClient`` call raises, and how long it takes, when the server is
   killed (connection refused) and when it hangs (SIGSTOP: the kernel accepts the connection but
   nothing answers); whether a timeout can be set; whether the old client and collection objects
   work again once the server is back.

Usage::

    .venv/bin/python scripts/experiments/chroma_server_restart.py            # ~6k-12k vectors
    .venv/bin/python scripts/experiments/chroma_server_restart.py --identities 2000 --json /tmp/r.json

Needs the test extras (``pip install -e '.[test]'``): it imports ``tests/servers.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from servers import ChromaServer  # noqa: E402

from facedb.index.chroma_index import FORMAT_VERSION, HNSW, collection_name  # noqa: E402

DIM = 128
BATCH = 256  # facedb's WRITE_BATCH: one upsert per enroll write batch
SAMPLE_COS = 0.75


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Faces:
    """Face-like synthetic embeddings: identity centres plus noise, cos to centre ~0.75."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.next_face = 1
        self.next_subject = 1
        self.centres: dict[int, np.ndarray] = {}
        self.live: dict[int, tuple[np.ndarray, int]] = {}  # face id -> (vector, subject id)
        # ||noise||^2 = d s^2 and cos = 1/sqrt(1 + d s^2)
        self.sigma = float(np.sqrt((1 / SAMPLE_COS**2 - 1) / DIM))

    def _unit(self, x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)

    def new_subjects(self, n: int, samples: int) -> tuple[list[int], np.ndarray, list[int]]:
        ids, vecs, subs = [], [], []
        for _ in range(n):
            sid = self.next_subject
            self.next_subject += 1
            c = self._unit(self.rng.standard_normal(DIM))
            self.centres[sid] = c
            for _ in range(samples):
                v = self._unit(c + self.sigma * self.rng.standard_normal(DIM))
                ids.append(self.next_face)
                vecs.append(v)
                subs.append(sid)
                self.next_face += 1
        return ids, np.stack(vecs), subs

    def probe(self, n: int) -> np.ndarray:
        """New photos of enrolled people: a live subject's centre plus fresh noise."""
        subs = sorted({s for _, s in self.live.values()})
        pick = self.rng.choice(subs, n)
        return np.stack([self._unit(self.centres[s] + self.sigma * self.rng.standard_normal(DIM)) for s in pick])

    def subjects_to_delete(self, n: int) -> list[int]:
        subs = sorted({s for _, s in self.live.values()})
        return [int(s) for s in self.rng.choice(subs, n, replace=False)]


def create_collection(client: Any) -> Any:
    """Exactly ChromaIndex.collection(create=True) for the sface pack."""
    return client.create_collection(
        collection_name("sface"),
        embedding_function=None,
        configuration={"hnsw": dict(HNSW)},
        metadata={"pack": "sface", "dim": DIM, "fingerprint": "f" * 64, "format": FORMAT_VERSION},
    )


def write(col: Any, faces: Faces, ids: list[int], vecs: np.ndarray, subs: list[int],
          acked: list[list[int]] | None = None) -> None:
    """Upserts of BATCH, like an enroll (ChromaIndex.add -> col.upsert with the metadata)."""
    for i in range(0, len(ids), BATCH):
        keys = ids[i:i + BATCH]
        col.upsert(ids=[str(k) for k in keys], embeddings=vecs[i:i + BATCH],
                   metadatas=[{"subject_id": int(s), "subject": f"subject {s}"} for s in subs[i:i + BATCH]])
        for k, v, s in zip(keys, vecs[i:i + BATCH], subs[i:i + BATCH]):
            faces.live[k] = (v, s)
        if acked is not None:
            acked.append(list(keys))


def delete_subjects(col: Any, faces: Faces, subjects: list[int]) -> int:
    """facedb delete: one call per subject with all its face ids."""
    n = 0
    for s in subjects:
        ids = [fid for fid, (_, sid) in faces.live.items() if sid == s]
        col.delete(ids=[str(i) for i in ids])
        for i in ids:
            del faces.live[i]
        n += len(ids)
    return n


def verify(col: Any, faces: Faces, k: int = 10, chunk: int = 1000) -> dict[str, Any]:
    """count, get of every live id, and the self-search of ChromaIndex.unreachable."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"expected": len(faces.live)}
    try:
        out["count"] = int(col.count())
    except Exception as exc:
        out["error"] = f"count: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:400]
        return out
    ids = sorted(faces.live)
    found = 0
    for i in range(0, len(ids), 5000):
        got = col.get(ids=[str(x) for x in ids[i:i + 5000]], include=[])
        found += len(got["ids"])
    out["get_found"] = found
    vecs = np.stack([faces.live[i][0] for i in ids])
    unreachable, top1, short = [], 0, 0
    want = min(k, len(ids))
    try:
        for i in range(0, len(ids), chunk):
            res = col.query(query_embeddings=vecs[i:i + chunk], n_results=want, include=["distances"])
            for fid, row, dists in zip(ids[i:i + chunk], res["ids"], res["distances"]):
                if len(row) < want:
                    short += 1
                if row and row[0] == str(fid):
                    top1 += 1
                crowded = len(dists) == want and dists[-1] <= 1e-6
                if str(fid) not in row and not crowded:
                    unreachable.append(fid)
    except Exception as exc:
        out["error"] = f"query: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:400]
        return out
    out.update(self_top1=top1, self_in_top10=len(ids) - len(unreachable), unreachable=len(unreachable),
               short_answers=short, seconds=round(time.perf_counter() - t0, 2))
    out["ok"] = (out["count"] == out["expected"] == found and not unreachable and not short)
    return out


def restart(server: ChromaServer, how: str) -> float:
    t0 = time.perf_counter()
    server.restart(graceful=(how == "SIGTERM"))
    return round(time.perf_counter() - t0, 2)


def check_both_clients(server: ChromaServer, old_col: Any, faces: Faces) -> dict[str, Any]:
    """Verify with the collection object from before the restart, then with a fresh client."""
    out = {"old_client": verify(old_col, faces)}
    fresh = server.client().get_collection(collection_name("sface"))
    out["fresh_client"] = verify(fresh, faces)
    return out


# -- 1. restarts -----------------------------------------------------------------------------------

def restarts(server: ChromaServer, faces: Faces, identities: int, samples: int) -> list[dict[str, Any]]:
    client = server.client()
    col = create_collection(client)
    cfg = col.configuration.get("hnsw") or {}
    log(f"collection {col.name}: hnsw {dict(cfg)}")
    cycles: list[dict[str, Any]] = []

    def cycle(name: str, how: str | None, **facts: Any) -> None:
        entry: dict[str, Any] = {"cycle": name, **facts}
        if how:
            entry["before"] = verify(col, faces)
            entry["restart"] = how
            entry["restart_seconds"] = restart(server, how)
            entry.update(check_both_clients(server, col, faces))
        else:
            entry["now"] = verify(col, faces)
        cycles.append(entry)
        log(json.dumps(entry))

    # C1: the initial load, delete some subjects, SIGKILL
    t0 = time.perf_counter()
    ids, vecs, subs = faces.new_subjects(identities, samples)
    write(col, faces, ids, vecs, subs)
    added_s = time.perf_counter() - t0
    deleted = delete_subjects(col, faces, faces.subjects_to_delete(max(1, identities // 20)))
    cycle("load + delete, SIGKILL", "SIGKILL", added=len(ids), add_vec_per_s=round(len(ids) / added_s),
          deleted=deleted)

    # C2: more subjects, more deletes, graceful restart
    ids, vecs, subs = faces.new_subjects(max(1, identities // 5), samples)
    write(col, faces, ids, vecs, subs)
    deleted = delete_subjects(col, faces, faces.subjects_to_delete(max(1, identities // 30)))
    cycle("add + delete, SIGTERM", "SIGTERM", added=len(ids), deleted=deleted)

    # C3: SIGKILL while a writer thread is in the middle of its upserts
    ids, vecs, subs = faces.new_subjects(max(1, identities * 3 // 10), samples)
    acked: list[list[int]] = []
    error: list[str] = []
    writer_col = server.client().get_collection(collection_name("sface"))

    def writer() -> None:
        try:
            write(writer_col, faces, ids, vecs, subs, acked)
        except Exception as exc:
            error.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:300])

    th = threading.Thread(target=writer)
    th.start()
    while len(acked) < 3 and th.is_alive():
        time.sleep(0.005)
    time.sleep(0.05)  # the next upsert is on the wire or being applied
    n_acked_at_kill = len(acked)
    server.kill()
    th.join(60)
    acked_ids = {i for b in acked for i in b}
    in_flight = ids[len(acked) * BATCH:(len(acked) + 1) * BATCH]
    entry: dict[str, Any] = {"cycle": "SIGKILL during a write", "batches_acked": len(acked),
                             "batches_acked_when_kill_sent": n_acked_at_kill, "writer_error": error[:1],
                             "acked_vectors": len(acked_ids)}
    entry["restart_seconds"] = restart(server, "start")
    fresh = server.client().get_collection(collection_name("sface"))
    got = set(int(x) for x in fresh.get(ids=[str(i) for i in in_flight], include=[])["ids"]) if in_flight else set()
    entry["in_flight_batch"] = {"size": len(in_flight), "present_after_restart": len(got)}
    entry["all_or_nothing"] = len(got) in (0, len(in_flight))
    for i in got:  # Chroma holds them although the client never saw the answer
        faces.live[i] = (vecs[ids.index(i)], subs[ids.index(i)])
    entry["acked_check"] = verify(fresh, faces)
    # journal replay: facedb's ChromaIndex.add(may_exist=True) gets first, writes only the missing
    rest = [i for i in ids if i not in faces.live]
    t0 = time.perf_counter()
    have = set(int(x) for x in fresh.get(ids=[str(i) for i in rest], include=[])["ids"]) if rest else set()
    missing = [i for i in rest if i not in have]
    pos = {fid: j for j, fid in enumerate(ids)}
    write(fresh, faces, missing, vecs[[pos[i] for i in missing]] if missing else np.zeros((0, DIM)),
          [subs[pos[i]] for i in missing])
    entry["replayed"] = len(missing)
    entry["replay_seconds"] = round(time.perf_counter() - t0, 2)
    entry["after_replay"] = verify(fresh, faces)
    cycles.append(entry)
    log(json.dumps(entry))
    col = fresh

    # C4: churn (delete + add) and SIGKILL right after the last acknowledged write
    deleted = delete_subjects(col, faces, faces.subjects_to_delete(max(1, identities // 10)))
    ids, vecs, subs = faces.new_subjects(max(1, identities // 10), samples)
    write(col, faces, ids, vecs, subs)
    entry = {"cycle": "churn, SIGKILL right after the last write", "added": len(ids), "deleted": deleted,
             "restart": "SIGKILL"}
    server.kill()
    entry["restart_seconds"] = restart(server, "start")
    entry.update(check_both_clients(server, col, faces))
    cycles.append(entry)
    log(json.dumps(entry))

    # C5..: repeated restarts with no writes in between (#7090: "after any restart")
    for how in ("SIGTERM", "SIGKILL", "SIGTERM"):
        cycle(f"no writes, {how}", how)
    return cycles


# -- 2. latency ------------------------------------------------------------------------------------

def latency(server: ChromaServer, faces: Faces, n_queries: int, block: int = 50) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings

    server.stop()
    copy = Path(tempfile.mkdtemp(prefix="facedb-chroma-embedded-")) / "data"
    shutil.copytree(server.path, copy)
    server.start()
    http_col = server.client().get_collection(collection_name("sface"))
    emb_client = chromadb.PersistentClient(path=str(copy), settings=Settings(anonymized_telemetry=False))
    emb_col = emb_client.get_collection(collection_name("sface"))
    assert http_col.count() == emb_col.count()
    probes = faces.probe(n_queries + 100)
    times: dict[str, list[float]] = {"http": [], "embedded": []}
    same = 0
    for col in (http_col, emb_col):  # warm-up: loads the index on both sides
        for p in probes[:50]:
            col.query(query_embeddings=p[None], n_results=10, include=["distances"])
    for start in range(0, n_queries, block):
        order = (("http", http_col), ("embedded", emb_col))
        if (start // block) % 2:
            order = order[::-1]
        for name, col in order:
            for p in probes[100 + start:100 + start + block]:
                t0 = time.perf_counter()
                col.query(query_embeddings=p[None], n_results=10, include=["distances"])
                times[name].append(time.perf_counter() - t0)
    for p in probes[100:200]:
        a = http_col.query(query_embeddings=p[None], n_results=10, include=["distances"])["ids"][0]
        b = emb_col.query(query_embeddings=p[None], n_results=10, include=["distances"])["ids"][0]
        same += a == b
    batch = {}
    for name, col in (("http", http_col), ("embedded", emb_col)):
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            col.query(query_embeddings=probes[:100], n_results=10, include=["distances"])
            runs.append(time.perf_counter() - t0)
        batch[name] = round(float(np.median(runs)) * 1000, 2)
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    shutil.rmtree(copy.parent, ignore_errors=True)
    out: dict[str, Any] = {"vectors": http_col.count(), "queries_each": n_queries, "k": 10,
                           "identical_top10_of_100": same}
    for name, ts in times.items():
        ms = np.array(ts) * 1000
        out[name] = {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
                     "mean_ms": round(float(ms.mean()), 3)}
    out["ratio_p50_http_over_embedded"] = round(out["http"]["p50_ms"] / out["embedded"]["p50_ms"], 2)
    out["ratio_p99_http_over_embedded"] = round(out["http"]["p99_ms"] / out["embedded"]["p99_ms"], 2)
    out["batch_100_queries_ms"] = batch
    log(json.dumps(out))
    return out


# -- 3. outages ------------------------------------------------------------------------------------

def _attempt(fn: Any, limit: float | None = None) -> dict[str, Any]:
    """Run ``fn``; report what it raised and how long it took (gives up waiting after ``limit``)."""
    box: dict[str, Any] = {}

    def run() -> None:
        t0 = time.perf_counter()
        try:
            r = fn()
            box["result"] = repr(r)[:80]
        except BaseException as exc:  # noqa: BLE001 - we report whatever it is
            box["exception"] = f"{type(exc).__module__}.{type(exc).__name__}"
            box["message"] = str(exc)[:300]
            cause = exc.__cause__ or exc.__context__
            if cause is not None:
                box["cause"] = f"{type(cause).__module__}.{type(cause).__name__}: {str(cause)[:150]}"
        box["seconds"] = round(time.perf_counter() - t0, 3)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(limit)
    if th.is_alive():
        return {"still_waiting_after_s": limit, "_thread": th}
    return box


def outages(server: ChromaServer, faces: Faces) -> dict[str, Any]:
    import chromadb
    import httpx
    from chromadb.config import Settings

    out: dict[str, Any] = {}
    client = server.client()
    col = client.get_collection(collection_name("sface"))
    probe = faces.probe(1)
    some_id = str(next(iter(faces.live)))
    calls = {
        "heartbeat": client.heartbeat,
        "count": col.count,
        "query": lambda: col.query(query_embeddings=probe, n_results=10, include=["distances"]),
        "get": lambda: col.get(ids=[some_id], include=[]),
        "upsert": lambda: col.upsert(ids=["999999999"], embeddings=probe,
                                     metadatas=[{"subject_id": 0, "subject": "x"}]),
    }
    # killed: connection refused
    server.kill()
    out["killed"] = {name: _attempt(fn, 30) for name, fn in calls.items()}
    out["killed"]["new_HttpClient()"] = _attempt(
        lambda: chromadb.HttpClient(host=server.host, port=server.port,
                                    settings=Settings(anonymized_telemetry=False, allow_reset=True)), 30)
    server.start()
    out["after_restart_same_objects"] = {name: _attempt(fn, 30) for name, fn in calls.items() if name != "upsert"}
    col.delete(ids=["999999999"])

    # hung: SIGSTOP (TCP handshake done by the kernel, no HTTP answer)
    assert server.pid is not None
    os.kill(server.pid, signal.SIGSTOP)
    hung = _attempt(col.count, 10)
    out["hung_default_client"] = {k: v for k, v in hung.items() if k != "_thread"}
    # the only knob: the private httpx session (FastAPI._session is httpx.Client(timeout=None))
    session = client._server._session  # type: ignore[attr-defined]
    out["session_timeout_default"] = repr(session.timeout)
    session.timeout = httpx.Timeout(2.0)
    out["hung_with_2s_session_timeout"] = {k: v for k, v in _attempt(col.count, 10).items() if k != "_thread"}
    os.kill(server.pid, signal.SIGCONT)
    if "_thread" in hung:
        hung["_thread"].join(30)
        out["hung_default_client"]["answered_after_SIGCONT"] = not hung["_thread"].is_alive()
    session.timeout = httpx.Timeout(None)
    out["after_SIGCONT"] = _attempt(col.count, 30)
    log(json.dumps(out, default=str))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--identities", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import chromadb

    faces = Faces(0)
    server = ChromaServer()
    result: dict[str, Any] = {"chromadb": chromadb.__version__, "dim": DIM, "batch": BATCH, "hnsw": HNSW,
                              "identities": args.identities, "samples": args.samples,
                              "cos_to_centre": SAMPLE_COS, "command": " ".join(sys.argv)}
    try:
        server.start()
        log(f"server {server.url} path {server.path}")
        result["restarts"] = restarts(server, faces, args.identities, args.samples)
        result["latency"] = latency(server, faces, args.queries)
        result["outages"] = outages(server, faces)
        log_text = "\n".join(p.read_text(errors="replace") for p in server.root.glob("chroma-*.log"))
        result["server_log_error_lines"] = [ln.strip()[:300] for ln in log_text.splitlines()
                                            if " ERROR" in ln or "panicked" in ln][:20]
    finally:
        server.cleanup()
    ok = all((c.get("fresh_client") or c.get("after_replay") or c.get("now") or {}).get("ok") for c in result["restarts"])
    result["every_cycle_intact"] = ok
    text = json.dumps(result, indent=2, default=str)
    if args.json:
        args.json.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
