#!/usr/bin/env python
"""Backup and restore at scale (issue 18; targets at 1M faces: backup <= 2 min, restore <= 15 min).

For each ``--faces N``: a source home whose catalog holds N synthetic face-like 128-d unit vectors
(``facedb.evaluation.scale.make_synthetic``, ``--per-identity`` faces per subject) stored through
facedb's SQL write path (``store_batch``, then ``mark_indexed``, which computes the subject
templates), plus an API key and the audit trail of the writes. The source's own Chroma index is
not built: a backup reads only the catalog, and building it would only lengthen the run.

Then, each as its own process, timed from outside (wall, CPU, peak RSS):

1. ``facedb --home SRC backup SNAP --json``;
2. ``facedb --home NEW restore SNAP --json`` into a new home: rows inserted, the index built from
   the restored embeddings, every collection checked; its report splits rows / index / check;
3. the alternative a restore could take, shipping the index instead of rebuilding it: the time to
   copy the restored home's Chroma folder (``shutil.copytree``, the least a shipped index costs at
   restore, before it is packed and unpacked), beside the index rebuild's seconds.

    python scripts/bench/backup.py --faces 20000 100000      # writes docs/benchmarks/backup.md and .json
    python scripts/bench/backup.py --faces 2000 --out /tmp/b.md --json /tmp/b.json --no-lock   # smoke run
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

from facedb.evaluation import bench, scale
from facedb.evaluation.bench import bench_lock, log

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "backup.md"
DIM = 128
BATCH = 2000


class _Synthetic:
    """What ``store_batch`` reads of a detected face."""

    def __init__(self, embedding: Any) -> None:
        self.bbox = (0.0, 0.0, 1.0, 1.0)
        self.score = 1.0
        self.landmarks = ((0.0, 0.0),) * 5
        self.embedding = embedding
        self.quality = {"det_score": 1.0, "face_px": 112.0}


def build_source(home: Path, folder: Path, n: int, per_identity: int, seed: int) -> dict[str, Any]:
    """A home whose catalog holds ``n`` synthetic faces (SQL only: see the module docstring)."""
    from facedb.api import FaceDB
    from facedb.catalog.faces import StoredItem

    folder.mkdir(parents=True, exist_ok=True)
    data = scale.make_synthetic(n, DIM, per_identity, 1, seed, folder)
    sids = np.load(folder / "sids.npy")
    t0 = time.monotonic()
    db = FaceDB(home=home, workers=1, pack="sface-flip")
    try:
        info = db.pack.contract(register=True)
        db.create_key("backup-bench", "read")
        for start in range(0, n, BATCH):
            m = min(BATCH, n - start)
            vecs = scale.read_rows(str(folder / "vectors.f32"), start, m, DIM)
            items = [StoredItem(subject=f"synthetic{int(sids[start + j])}", label=f"/synthetic/{start + j}.jpg",
                                path=f"/synthetic/{start + j}.jpg", digest=f"{start + j:064x}", source="upload",
                                size_bytes=1, width=1, height=1, face=_Synthetic(embedding=vecs[j]))
                     for j in range(m)]
            with db.store.writing(open_index=False):
                new = db.catalog.store_batch(items, info.name)
                db.catalog.mark_indexed([f.face_id for f in new])
            db.gate.record("enroll", images=m, faces=m)
    finally:
        db.close()
    data["build_s"] = round(time.monotonic() - t0, 1)
    data["catalog_mb"] = round(bench.dir_size_mb(home), 1)
    return data


def measure(n: int, work: Path, a: argparse.Namespace) -> dict[str, Any]:
    src, dst, snap = work / "src", work / "dst", work / "snap.zip"
    log(f"N={n}: building the source catalog")
    row: dict[str, Any] = {"faces": n, "source": build_source(src, work / "vectors", n, a.per_identity, a.seed)}
    from facedb.evaluation.servers import clean_env

    env = clean_env()
    log(f"N={n}: backup")
    with bench_lock(f"backup N={n}", enabled=a.lock):
        load = bench.loadavg()
        rep, proc = bench.facedb_json(src, "backup", str(snap), env=env)
        row["backup"] = {"wall_s": round(proc.wall_s, 2), "cpu_s": round(proc.cpu_s, 2),
                         "max_rss_mb": round(proc.max_rss_mb), "report_s": rep["seconds"],
                         "bytes": rep["bytes"], "mb": round(rep["bytes"] / 2**20, 1), "rows": rep["rows"],
                         "load_avg": load}
        log(f"N={n}: restore")
        load = bench.loadavg()
        rep, proc = bench.facedb_json(dst, "restore", str(snap), env=env)
        row["restore"] = {"wall_s": round(proc.wall_s, 2), "cpu_s": round(proc.cpu_s, 2),
                          "max_rss_mb": round(proc.max_rss_mb), "rows_s": rep["rows_seconds"],
                          "index_s": rep["index_seconds"],
                          "check_s": round(rep["seconds"] - rep["rows_seconds"] - rep["index_seconds"], 2),
                          "report_s": rep["seconds"], "indexed_faces": rep["indexed_faces"], "clean": rep["clean"],
                          "exit": proc.returncode, "load_avg": load}
        t0 = time.perf_counter()
        shutil.copytree(dst / "chroma", work / "chroma-copy")
        row["ship_index"] = {"copy_s": round(time.perf_counter() - t0, 2),
                             "chroma_mb": round(bench.dir_size_mb(dst / "chroma"), 1)}
    log(f"N={n}: backup {row['backup']['wall_s']} s, restore {row['restore']['wall_s']} s")
    return row


def render(res: dict[str, Any]) -> str:
    f = bench.fmt_number
    # the commit the run started at (the header would name the checkout's commit when it is written)
    head = bench.header("Backup and restore (issue 18)", res["argv"]).replace(
        f"(facedb commit {bench.git_rev()})", f"(facedb commit {res['commit']})")
    lines = [head.rstrip("\n"), "",
             "Source: a home whose catalog holds N synthetic face-like 128-d unit vectors "
             f"({res['per_identity']} per subject) stored through facedb's SQL write path, with an API key and "
             "the audit trail of the writes; its own index is not built (a backup reads only the catalog). "
             "Each command is its own process, timed from outside (`wall`), with its CPU and peak RSS. "
             "Restore: into a new home; rows, then the index built from the restored embeddings, then `check` "
             "of every collection. *Ship index*: the time to copy the restored Chroma folder, the least that "
             "shipping the index in the snapshot would cost at restore instead of rebuilding it.", "",
             bench.md_table(["faces", "snapshot", "backup wall", "backup CPU", "backup peak RSS", "restore wall",
                             "rows", "index build", "weights check + check", "restore peak RSS", "clean", "ship index (copy)"],
                            [[f"{r['faces']:,}", f"{r['backup']['mb']} MB", f"{f(r['backup']['wall_s'])} s",
                              f"{f(r['backup']['cpu_s'])} s", f"{r['backup']['max_rss_mb']} MB",
                              f"{f(r['restore']['wall_s'])} s", f"{f(r['restore']['rows_s'])} s",
                              f"{f(r['restore']['index_s'])} s", f"{f(r['restore']['check_s'])} s",
                              f"{r['restore']['max_rss_mb']} MB", str(r['restore']['clean']),
                              f"{f(r['ship_index']['copy_s'])} s ({r['ship_index']['chroma_mb']} MB)"]
                             for r in res["sizes"]]), ""]
    for r in res["sizes"]:
        lines.append(f"- N={r['faces']:,}: source built in {r['source']['build_s']} s "
                     f"({r['source']['catalog_mb']} MB); load average before backup {r['backup']['load_avg']}, "
                     f"before restore {r['restore']['load_avg']}; rows: "
                     + ", ".join(f"{k} {v:,}" for k, v in r["backup"]["rows"].items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--faces", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--per-identity", type=int, default=5)
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--json", type=Path, default=None, help="default: --out with .json")
    p.add_argument("--no-lock", dest="lock", action="store_false", help="do not take the machine-wide benchmark lock")
    a = p.parse_args(argv)
    res: dict[str, Any] = {"argv": ["python", "scripts/bench/backup.py", *argv], "commit": bench.git_rev(),
                           "per_identity": a.per_identity, "machine": bench.machine_info(), "sizes": []}
    json_path = a.json or a.out.with_suffix(".json")
    for n in a.faces:
        with tempfile.TemporaryDirectory(prefix=f"facedb-backup-{n}-") as tmp:
            res["sizes"].append(measure(n, Path(tmp), a))
        bench.write_text(json_path, json.dumps(res, indent=2) + "\n")
        bench.write_report(a.out, render(res))
    log(f"wrote {a.out} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
