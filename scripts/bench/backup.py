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
3. the restored home (which now has its index) is backed up again, the snapshot then ships the
   index, and a restore of it into another new home copies the index instead of rebuilding it:
   the table has one line per size and path ("rebuilt", "shipped").

    python scripts/bench/backup.py --faces 20000 100000      # writes docs/benchmarks/backup.md and .json
    python scripts/bench/backup.py --faces 2000 --out /tmp/b.md --json /tmp/b.json --no-lock   # smoke run
"""
from __future__ import annotations

import argparse
import json
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


def _backup(home: Path, snap: Path, env: dict[str, str]) -> dict[str, Any]:
    load = bench.loadavg()
    rep, proc = bench.facedb_json(home, "backup", str(snap), env=env)
    return {"wall_s": round(proc.wall_s, 2), "cpu_s": round(proc.cpu_s, 2), "max_rss_mb": round(proc.max_rss_mb),
            "report_s": rep["seconds"], "bytes": rep["bytes"], "mb": round(rep["bytes"] / 2**20, 1),
            "rows": rep["rows"], "index_shipped": rep.get("index_shipped", False), "index_note": rep.get("index_note"),
            "load_avg": load}


def _restore(home: Path, snap: Path, env: dict[str, str]) -> dict[str, Any]:
    load = bench.loadavg()
    rep, proc = bench.facedb_json(home, "restore", str(snap), env=env)
    return {"wall_s": round(proc.wall_s, 2), "cpu_s": round(proc.cpu_s, 2), "max_rss_mb": round(proc.max_rss_mb),
            "rows_s": rep["rows_seconds"], "index_s": rep["index_seconds"],
            "check_s": round(rep["seconds"] - rep["rows_seconds"] - rep["index_seconds"], 2),
            "report_s": rep["seconds"], "indexed_faces": rep["indexed_faces"], "clean": rep["clean"],
            "index_path": rep.get("index_path", "rebuilt"), "index_note": rep.get("index_note"),
            "exit": proc.returncode, "load_avg": load}


def measure(n: int, work: Path, a: argparse.Namespace) -> dict[str, Any]:
    """Two rounds: the source (no index) backs up without its index, and restores by rebuilding
    it; that restored home (with its index now) backs up with the index, and restores by copying it."""
    src = work / "src"
    log(f"N={n}: building the source catalog")
    row: dict[str, Any] = {"faces": n, "source": build_source(src, work / "vectors", n, a.per_identity, a.seed),
                           "rounds": []}
    from facedb.evaluation.servers import clean_env

    env = clean_env()
    home = src
    for i in (1, 2):
        snap, dst = work / f"snap{i}.zip", work / f"dst{i}"
        with bench_lock(f"backup N={n}", enabled=a.lock):
            log(f"N={n}: backup {i}")
            backup = _backup(home, snap, env)
            log(f"N={n}: restore {i}")
            restore = _restore(dst, snap, env)
        row["rounds"].append({"backup": backup, "restore": restore,
                              "chroma_mb": round(bench.dir_size_mb(dst / "chroma"), 1)})
        log(f"N={n}: backup {backup['wall_s']} s, restore {restore['wall_s']} s ({restore['index_path']})")
        snap.unlink()
        home = dst
    return row


def render(res: dict[str, Any]) -> str:
    f = bench.fmt_number
    # the commit the run started at (the header would name the checkout's commit when it is written)
    head = bench.header("Backup and restore (issue 18)", res["argv"]).replace(
        f"(facedb commit {bench.git_rev()})", f"(facedb commit {res['commit']})")
    lines = [head.rstrip("\n"), "",
             "Source: a home whose catalog holds N synthetic face-like 128-d unit vectors "
             f"({res['per_identity']} per subject) stored through facedb's SQL write path, with an API key and "
             "the audit trail of the writes; its own index is not built. Each command is its own process, timed "
             "from outside (`wall`), with its CPU and peak RSS. Two rounds per size: (1) the source backs up "
             "without an index (it has none: the snapshot says so) and the restore *rebuilds* the index from the "
             "restored embeddings; (2) that restored home, index included, backs up with its index, and the "
             "restore copies the *shipped* index and checks it against the catalog. Each restore ends with "
             "`check` of every collection.", "",
             bench.md_table(["faces", "index path", "snapshot", "backup wall", "backup CPU", "backup peak RSS",
                             "restore wall", "rows", "index", "weights check + check", "restore peak RSS", "clean"],
                            [[f"{r['faces']:,}", x["restore"]["index_path"], f"{x['backup']['mb']} MB",
                              f"{f(x['backup']['wall_s'])} s", f"{f(x['backup']['cpu_s'])} s",
                              f"{x['backup']['max_rss_mb']} MB", f"{f(x['restore']['wall_s'])} s",
                              f"{f(x['restore']['rows_s'])} s", f"{f(x['restore']['index_s'])} s",
                              f"{f(x['restore']['check_s'])} s", f"{x['restore']['max_rss_mb']} MB",
                              str(x["restore"]["clean"])]
                             for r in res["sizes"] for x in r["rounds"]]), ""]
    for r in res["sizes"]:
        lines.append(f"- N={r['faces']:,}: source built in {r['source']['build_s']} s "
                     f"({r['source']['catalog_mb']} MB); rows: "
                     + ", ".join(f"{k} {v:,}" for k, v in r["rounds"][0]["backup"]["rows"].items()))
        for i, x in enumerate(r["rounds"], 1):
            lines.append(f"  - round {i}: load average before backup {x['backup']['load_avg']}, before restore "
                         f"{x['restore']['load_avg']}; restored Chroma folder {x['chroma_mb']} MB; backup's index "
                         f"note: {x['backup']['index_note'] or 'shipped'}; restore's: "
                         f"{x['restore']['index_note'] or x['restore']['index_path']}")
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
