#!/usr/bin/env python
"""Chroma bulk-load settings for an index rebuild (issue 18): does ``add`` into a new collection,
or raising ``sync_threshold`` / ``batch_size`` during the load, beat facedb's ``upsert``?

Raw chromadb, facedb's HNSW settings (cosine, max_neighbors 32, ef_construction 200, ef_search
200), N random 128-d unit vectors with facedb's metadata (subject id and name), batches of 5,000,
into a new collection in a temporary folder. For each mode, rounds interleaved (A B C A B C):
wall and CPU seconds of the load (CPU: the whole process, every thread; the better guide on a
shared machine), and for ``addbulk`` the seconds to put the settings back and make Chroma persist
(a delete of ``sync_threshold`` + 200 absent ids, as ``ChromaIndex.erase`` pads). Then a fresh
client reopens the folder and checks that each of 10 vectors finds itself first.

    python scripts/experiments/chroma_bulk_load.py --faces 20000 --rounds 2
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

MODES = ("upsert", "add", "addbulk")
BATCH = 5000


def load(n: int, mode: str, folder: Path, seed: int) -> dict[str, Any]:
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    hnsw: dict[str, Any] = {"space": "cosine", "max_neighbors": 32, "ef_construction": 200, "ef_search": 200}
    if mode == "addbulk":
        hnsw.update(sync_threshold=n + 10, batch_size=BATCH)
    col = client.create_collection("bulk-load", embedding_function=None, configuration={"hnsw": hnsw})
    rng = np.random.default_rng(seed)
    vecs = rng.standard_normal((n, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, BATCH):
        ids = [str(x) for x in range(i, min(n, i + BATCH))]
        metas = [{"subject_id": x // 5, "subject": f"synthetic{x // 5}"} for x in range(i, min(n, i + BATCH))]
        (col.upsert if mode == "upsert" else col.add)(ids=ids, embeddings=vecs[i:i + BATCH], metadatas=metas)
    t1, c1 = time.perf_counter(), time.process_time()
    if mode == "addbulk":
        col.modify(configuration={"hnsw": {"sync_threshold": 1000, "batch_size": 100}})
        col.delete(ids=[f"pad-{k}" for k in range(1200)])
    t2 = time.perf_counter()
    del col, client
    import chromadb as again

    fresh = again.PersistentClient(path=str(folder), settings=Settings(anonymized_telemetry=False))
    res = fresh.get_collection("bulk-load").query(query_embeddings=vecs[:10], n_results=10)
    hits = sum(res["ids"][i][0] == str(i) for i in range(10))
    return {"mode": mode, "faces": n, "load_wall_s": round(t1 - t0, 2), "load_cpu_s": round(c1 - c0, 2),
            "vectors_per_s": round(n / (t1 - t0)), "persist_s": round(t2 - t1, 2), "self_hits_of_10": hits}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = []
    for _ in range(a.rounds):
        for mode in a.modes:
            folder = Path(tempfile.mkdtemp(prefix="chroma-bulk-"))
            try:
                row = load(a.faces, mode, folder, a.seed)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            print(json.dumps(row), flush=True)
            out.append(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
