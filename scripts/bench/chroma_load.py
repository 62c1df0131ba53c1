#!/usr/bin/env python
"""Faces/s of a bulk load into Chroma, by write path (``facedb/evaluation/chroma_load.py``).

Usage::

    python scripts/bench/chroma_load.py --faces 100000 --kind server --method add --batch 5000 --writers 2
    python scripts/bench/chroma_load.py --faces 100000 --kind server --hnsw sync_threshold=100000,batch_size=5000
    python scripts/bench/chroma_load.py --faces 100000 --kind embedded --method upsert
    python scripts/bench/chroma_load.py --faces 300000 --shards 4 --per-subject 5 --queries 300

Each run starts (and stops) its own ``chroma run`` server in a temp folder, loads N synthetic unit
vectors into a new collection with facedb's HNSW settings (M 32, ef_construction 200) and prints one
JSON line: faces/s, client and server CPU seconds, the count and the self-query check. ``--out F``
appends the line to F. ``--shards S`` loads S collections at once instead (the faces split by
subject); ``--per-subject K --queries Q`` loads face-like vectors and then times Q searches merged
over the shards, with recall@10 and the mates found (docs/benchmarks/chroma-load.md).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facedb.evaluation.chroma_load import load


def _settings(text: str) -> dict[str, int | float]:
    out: dict[str, int | float] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        out[key.strip()] = float(value) if "." in value else int(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--kind", choices=("server", "embedded"), default="server")
    ap.add_argument("--method", choices=("add", "upsert"), default="add")
    ap.add_argument("--batch", type=int, default=5000, help="records a call (capped at the client's max) [5000]")
    ap.add_argument("--writers", type=int, default=1, help="concurrent writer threads, each its own client [1]")
    ap.add_argument("--hnsw", default="", help="create-time HNSW settings, e.g. sync_threshold=100000,batch_size=5000")
    ap.add_argument("--after", default="", help="HNSW settings given by collection.modify after the load")
    ap.add_argument("--json-wire", action="store_true", help="send embeddings as JSON lists, not base64")
    ap.add_argument("--shards", type=int, default=1,
                    help="split the faces over this many collections by subject, loaded at once, one writer each [1]")
    ap.add_argument("--per-subject", type=int, default=0,
                    help="face-like vectors, this many a subject (0: uniform random vectors) [0]")
    ap.add_argument("--queries", type=int, default=0,
                    help="then time this many searches of stored faces (merged over the shards), with recall@10 [0]")
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the temp data [the system's temp]")
    ap.add_argument("--label", default="", help="a name for this run in the output")
    ap.add_argument("--out", type=Path, default=None, help="append the JSON line to this file")
    a = ap.parse_args()
    row = load(kind=a.kind, n=a.faces, dim=a.dim, method=a.method, batch=a.batch, writers=a.writers,
               hnsw=_settings(a.hnsw), after=_settings(a.after), base64=not a.json_wire, scratch=a.scratch,
               shards=a.shards, per_subject=a.per_subject, queries=a.queries)
    row["label"] = a.label
    line = json.dumps(row)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return 0 if row["count_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
