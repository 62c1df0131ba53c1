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


def load(*, kind: str, n: int, dim: int = 128, method: str = "add", batch: int = 5000, writers: int = 1,
         hnsw: dict[str, Any] | None = None, after: dict[str, Any] | None = None, base64: bool = True,
         scratch: Path | None = None, sample: int = 300) -> dict[str, Any]:
    """Load ``n`` vectors one way; the faces/s and the checks. ``hnsw``: extra create-time HNSW
    settings; ``after``: settings given to ``collection.modify`` after the load (read back)."""
    from ..index import chroma_index as ci

    load_before = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: say how busy it was
    vecs = vectors(n, dim)
    metas = [{"subject_id": i // 5 + 1} for i in range(n)]
    ids = [str(i + 1) for i in range(n)]
    config = {**ci.HNSW, **(hnsw or {})}
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="facedb-chroma-load-", dir=scratch)))
        where: Any = root / "index" if kind == "embedded" else stack.enter_context(_server(root))
        pid = os.getpid() if kind == "embedded" else where.pid
        admin = _client(kind, where, base64)
        max_batch = int(admin.get_max_batch_size())
        size = max(1, min(batch, max_batch))
        col = admin.create_collection("load", embedding_function=None, configuration={"hnsw": config})
        wire = "embedded" if kind == "embedded" else ("base64" if admin._server.supports_base64_encoding() else "json")
        starts = list(range(0, n, size))
        errors: list[BaseException] = []
        lock = threading.Lock()

        marks: list[float] = []  # seconds at each tenth of the load (the rate falls as N grows)
        done = [0]

        def write(part: list[int], client: Any) -> None:
            c = client.get_collection("load") if client is not admin else col
            fn = c.add if method == "add" else c.upsert
            for s in part:
                if errors:
                    return
                sl = slice(s, s + size)
                fn(ids=ids[sl], embeddings=vecs[sl], metadatas=metas[sl])
                with lock:
                    done[0] += len(ids[sl])
                    while done[0] >= (len(marks) + 1) * n / 10:
                        marks.append(round(time.monotonic() - t0, 1))

        clients = [admin] + [_client(kind, where, base64) for _ in range(writers - 1)] \
            if kind != "embedded" else [admin] * writers
        server_cpu0 = _proc_cpu(pid) if kind != "embedded" else 0.0
        cpu0 = time.process_time()
        t0 = time.monotonic()

        def run(part: list[int], client: Any) -> None:
            try:
                write(part, client)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(starts[w::writers], clients[w])) for w in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        client_cpu = time.process_time() - cpu0
        server_cpu = _proc_cpu(pid) - server_cpu0 if kind != "embedded" else 0.0
        if errors:
            raise errors[0]
        count = int(col.count())
        rng = np.random.default_rng(1)
        probe = rng.choice(n, size=min(sample, n), replace=False)
        res = col.query(query_embeddings=vecs[probe], n_results=1, include=[])
        self_found = sum(1 for p, row in zip(probe, res["ids"]) if row and row[0] == ids[p]) / len(probe)
        restored: dict[str, Any] = {}
        if after:
            col.modify(configuration={"hnsw": after})
            got = ci._hnsw_of(admin.get_collection("load"))
            restored = {k: got.get(k) for k in after}
        return {
            "kind": kind, "n": n, "dim": dim, "method": method, "batch": size, "max_batch": max_batch,
            "writers": writers, "hnsw": {k: v for k, v in (hnsw or {}).items()}, "wire": wire,
            "seconds": round(wall, 2), "faces_per_s": round(n / wall, 1),
            "client_cpu_s": round(client_cpu, 1), "server_cpu_s": round(server_cpu, 1),
            "count": count, "count_ok": count == n, "self_found": round(self_found, 4),
            "modified_after": restored, "tenths_s": marks, "load_before": load_before,
            "last_tenth_faces_per_s": round(n / 10 / (marks[-1] - marks[-2]), 1) if len(marks) > 1 else None,
        }
