"""How fast a Chroma collection loads, by write path (``scripts/bench/chroma_load.py``).

The rebuild of a Chroma server's index (restore, ``reindex``, ``vacuum``, ``check --repair``)
is a bulk load of every face through ``chromadb.HttpClient``. This measures what that load
costs by each knob a client has: ``add`` or ``upsert``, the batch size, concurrent writers
(threads, each its own client, disjoint batches), the collection's HNSW ``batch_size``,
``sync_threshold`` and ``num_threads``, and the wire encoding of embeddings (base64, which
chromadb 1.5 uses when the server says it supports it, or JSON lists); the same settings on
an embedded ``PersistentClient`` for reference.

Every run loads synthetic unit vectors (Gaussian, normalised) into a new collection with
facedb's create-time HNSW settings (``chroma_index.HNSW``: M 32, ef_construction 200), then
checks the result: the count, and that a sample of the vectors finds itself as its own
nearest neighbour (so a faster path that loses or damages records shows up as such).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def _proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) of a process and its threads, 0 if unknown."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)


@contextlib.contextmanager
def _server(scratch: Path) -> Iterator[Any]:
    from .servers import ChromaServer

    srv = ChromaServer(scratch / "chroma-data")
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def _client(kind: str, where: Any, base64: bool) -> Any:
    if kind == "embedded":
        from ..index.clients import open_embedded

        return open_embedded(where)
    client = where.client()
    if not base64:  # the JSON-list encoding (what a server without base64 support gets)
        server_api = client._server
        server_api.supports_base64_encoding = lambda: False
    return client


def face_like(n: int, dim: int, per_subject: int, seed: int = 0) -> np.ndarray:
    """``per_subject`` faces a subject, in subject order: a centre uniform on the sphere plus
    Gaussian noise with cos(face, centre) ~ 0.75 (the shape of ``facedb.evaluation.scale``'s
    synthetic galleries)."""
    from .scale import COS_TO_CENTRE

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((-(-n // per_subject), dim), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sigma = float(np.sqrt((1 / COS_TO_CENTRE**2 - 1) / dim))
    v: np.ndarray = centres[np.arange(n) // per_subject] + sigma * rng.standard_normal((n, dim), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def search_check(cols: list[Any], vecs: np.ndarray, per_subject: int, queries: int, k: int = 10,
                 seed: int = 2) -> dict[str, Any]:
    """Search ``queries`` stored faces (each its own probe, itself left out) as facedb would over
    ``cols`` (shards: one query each, concurrently, the top ``k`` merged): wall ms a search, and
    recall@k against exact search over every face; with ``per_subject``, also the share of each
    probe's mates (its subject's other faces) found."""
    from concurrent.futures import ThreadPoolExecutor

    n = len(vecs)
    rng = np.random.default_rng(seed)
    probes = rng.choice(n, size=min(queries, n), replace=False)
    pool = ThreadPoolExecutor(len(cols)) if len(cols) > 1 else None

    def one(col: Any, q: np.ndarray) -> list[tuple[float, int]]:
        r = col.query(query_embeddings=[q], n_results=k + 1, include=["distances"])
        return [(float(d), int(i) - 1) for d, i in zip(r["distances"][0], r["ids"][0])]

    def search(q: np.ndarray) -> list[tuple[float, int]]:
        parts = pool.map(one, cols, [q] * len(cols)) if pool else [one(cols[0], q)]
        return sorted(x for part in parts for x in part)

    for p in probes[:10]:  # warm-up (the first queries load the index)
        search(vecs[p])
    ms, recall, mates = [], [], []
    for p in probes:
        t0 = time.perf_counter()
        got = [i for _, i in search(vecs[p]) if i != p][:k]
        ms.append(1000 * (time.perf_counter() - t0))
        sims = vecs @ vecs[p]
        sims[p] = -2.0
        exact = np.argpartition(-sims, k)[:k]
        recall.append(len(set(got) & set(exact.tolist())) / k)
        if per_subject > 1:
            first = p // per_subject * per_subject
            mate = {m for m in range(first, min(n, first + per_subject)) if m != p}
            mates.append(len(set(got) & mate) / len(mate))
    if pool:
        pool.shutdown()
    return {"search_p50_ms": round(float(np.percentile(ms, 50)), 3), "search_p99_ms": round(float(np.percentile(ms, 99)), 3),
            f"recall_at_{k}": round(float(np.mean(recall)), 4),
            "mates_found": round(float(np.mean(mates)), 4) if mates else None, "queries": len(probes)}


def load(*, kind: str, n: int, dim: int = 128, method: str = "add", batch: int = 5000, writers: int = 1,
         hnsw: dict[str, Any] | None = None, after: dict[str, Any] | None = None, base64: bool = True,
         scratch: Path | None = None, sample: int = 300, shards: int = 1, per_subject: int = 0,
         queries: int = 0) -> dict[str, Any]:
    """Load ``n`` vectors one way; the faces/s and the checks. ``hnsw``: extra create-time HNSW
    settings; ``after``: settings given to ``collection.modify`` after the load (read back).

    ``shards`` > 1 splits the faces over that many collections by subject (subject id modulo
    ``shards``), each loaded by its own writer thread and client at the same time (``writers`` is
    then ignored). ``per_subject`` > 0 loads face-like vectors (``face_like``) instead of uniform
    ones; ``queries`` > 0 then times that many searches (``search_check``)."""
    from ..index import chroma_index as ci

    load_before = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: say how busy it was
    vecs = face_like(n, dim, per_subject) if per_subject > 0 else vectors(n, dim)
    metas = [{"subject_id": i // (per_subject or 5) + 1} for i in range(n)]
    ids = [str(i + 1) for i in range(n)]
    config = {**ci.HNSW, **(hnsw or {})}
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facedb-chroma-load-", dir=scratch)))
        where: Any = root / "index" if kind == "embedded" else stack.enter_context(_server(root))
        pid = os.getpid() if kind == "embedded" else where.pid
        admin = _client(kind, where, base64)
        max_batch = int(admin.get_max_batch_size())
        size = max(1, min(batch, max_batch))
        names = ["load"] if shards <= 1 else [f"load-{i}" for i in range(shards)]
        cols = [admin.create_collection(name, embedding_function=None, configuration={"hnsw": config})
                for name in names]
        wire = "embedded" if kind == "embedded" else ("base64" if admin._server.supports_base64_encoding() else "json")
        if shards <= 1:  # contiguous batches, dealt out to the writers in turn
            batches = [np.arange(s, min(n, s + size)) for s in range(0, n, size)]
            work = [(names[0], batches[w::writers]) for w in range(writers)]
        else:  # one writer a shard, each over its subjects' faces
            shard_of = (np.arange(n) // (per_subject or 5)) % shards
            work = []
            for i, name in enumerate(names):
                members = np.flatnonzero(shard_of == i)
                work.append((name, [members[s:s + size] for s in range(0, len(members), size)]))
        errors: list[BaseException] = []
        lock = threading.Lock()

        marks: list[float] = []  # seconds at each tenth of the load (the rate falls as N grows)
        done = [0]

        def write(name: str, part: list[np.ndarray], client: Any) -> None:
            c = client.get_collection(name) if client is not admin else cols[names.index(name)]
            fn = c.add if method == "add" else c.upsert
            for rows in part:
                if errors:
                    return
                fn(ids=[ids[r] for r in rows], embeddings=vecs[rows], metadatas=[metas[r] for r in rows])
                with lock:
                    done[0] += len(rows)
                    while done[0] >= (len(marks) + 1) * n / 10:
                        marks.append(round(time.monotonic() - t0, 1))

        clients = [admin] + [_client(kind, where, base64) for _ in range(len(work) - 1)] \
            if kind != "embedded" else [admin] * len(work)
        server_cpu0 = _proc_cpu(pid) if kind != "embedded" else 0.0
        cpu0 = time.process_time()
        t0 = time.monotonic()

        def run(name: str, part: list[np.ndarray], client: Any) -> None:
            try:
                write(name, part, client)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(name, part, clients[w])) for w, (name, part) in enumerate(work)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        client_cpu = time.process_time() - cpu0
        server_cpu = _proc_cpu(pid) - server_cpu0 if kind != "embedded" else 0.0
        if errors:
            raise errors[0]
        count = sum(int(c.count()) for c in cols)
        rng = np.random.default_rng(1)
        probe = rng.choice(n, size=min(sample, n), replace=False)
        hits = 0
        for c in cols:  # each vector finds itself in its own shard
            res = c.query(query_embeddings=vecs[probe], n_results=1, include=[])
            hits += sum(1 for p, row in zip(probe, res["ids"]) if row and row[0] == ids[p])
        self_found = hits / len(probe)
        searched: dict[str, Any] = {}
        if queries > 0:
            readers = [_client(kind, where, base64) for _ in cols] if kind != "embedded" else [admin] * len(cols)
            searched = search_check([r.get_collection(name) for r, name in zip(readers, names)], vecs, per_subject,
                                    queries)
        restored: dict[str, Any] = {}
        if after:
            for c in cols:
                c.modify(configuration={"hnsw": after})
            got = ci._hnsw_of(admin.get_collection(names[0]))
            restored = {k: got.get(k) for k in after}
        return {
            "kind": kind, "n": n, "dim": dim, "method": method, "batch": size, "max_batch": max_batch,
            "writers": len(work), "shards": len(cols), "per_subject": per_subject or None,
            "hnsw": {k: v for k, v in (hnsw or {}).items()}, "wire": wire,
            "seconds": round(wall, 2), "faces_per_s": round(n / wall, 1),
            "client_cpu_s": round(client_cpu, 1), "server_cpu_s": round(server_cpu, 1),
            "count": count, "count_ok": count == n, "self_found": round(self_found, 4),
            "modified_after": restored, "tenths_s": marks, "load_before": load_before,
            "last_tenth_faces_per_s": round(n / 10 / (marks[-1] - marks[-2]), 1) if len(marks) > 1 and marks[-1] > marks[-2] else None,
            **searched,
        }
