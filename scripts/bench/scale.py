#!/usr/bin/env python
"""Scale through the service: N synthetic faces served by ``facedb serve``, measured end to end.

Builds a home of N face-like synthetic vectors through the restore path, starts ``facedb serve``
on it, and measures serve start time, search p50/p99 by an enrolled face id (no embedding) at 1
and 8 clients, recall@10 against exact search, resident memory, delete + erase of whole subjects
with a byte scan of every file, backup (through the server) and restore (into a new home). See
``facedb/evaluation/scale_service.py`` for each step.

Usage::

    python scripts/bench/scale.py --faces 20000                      # embedded Chroma, 128-d
    python scripts/bench/scale.py --faces 1000000 --json-out run.json
    python scripts/bench/scale.py --faces 100000 --index server       # a `chroma run` server
    python scripts/bench/scale.py --faces 20000 --keep-home /tmp/h --erased-out /tmp/erased.npy

Each run is appended to ``docs/benchmarks/scale.json`` (``--append``) and the table of
``docs/benchmarks/scale.md`` is regenerated from it.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from facedb.evaluation import bench
from facedb.evaluation.scale_service import COLUMNS, build, environment, measure, row_of

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = REPO / "docs" / "benchmarks"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=None, help="gallery size N (not with --reuse)")
    ap.add_argument("--dim", type=int, default=128, help="vector dimension; the pack must have it [128]")
    ap.add_argument("--pack", default=None,
                    help="the pack the gallery is recorded under [the default pack at 128-d; at another dimension a "
                         "tiny fake InsightFace pack of that dimension, built for the run (facedb.evaluation.fakepacks)]")
    ap.add_argument("--index", choices=("embedded", "server"), default="embedded",
                    help="embedded Chroma, or a `chroma run` server started for the run [embedded]")
    ap.add_argument("--per-id", type=int, default=5, help="faces per subject [5]")
    ap.add_argument("--queries", type=int, default=500, help="probe faces per client count [500]")
    ap.add_argument("--clients", default="1,8", help="comma-separated client counts [1,8]")
    ap.add_argument("--deletes", type=int, default=3, help="whole subjects deleted, one at a time [3]")
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the homes (default: a temp dir)")
    ap.add_argument("--keep-home", type=Path, default=None,
                    help="leave the served home here, its vectors in DIR-data and the restored home in DIR-restored")
    ap.add_argument("--reuse", type=Path, default=None,
                    help="measure again a home an earlier --keep-home run left (no build; its deleted subjects are skipped)")
    ap.add_argument("--no-restore", action="store_true", help="skip the restore (step 5's second half)")
    ap.add_argument("--erased-out", type=Path, default=None, help="write the erased vectors (float32, as stored) here (.npy)")
    ap.add_argument("--json-out", type=Path, default=None, help="write this run's JSON here")
    ap.add_argument("--append", type=Path, default=DOCS / "scale.json",
                    help="append the run to this JSON list and regenerate the .md beside it [docs/benchmarks/scale.json]")
    ap.add_argument("--no-append", action="store_true", help="do not touch docs/benchmarks")
    ap.add_argument("--no-lock", action="store_true", help="do not take the machine-wide benchmark lock")
    ap.add_argument("--collect", type=Path, nargs="+", default=None, metavar="RUN_JSON",
                    help="only append these runs' --json-out files to --append and regenerate the table")
    a = ap.parse_args()
    if a.collect:
        runs = json.loads(a.append.read_text()) if a.append.exists() else []
        runs += [json.loads(f.read_text()) for f in a.collect]
        a.append.write_text(json.dumps(runs, indent=1, default=str) + "\n")
        write_md(a.append.with_suffix(".md"), runs)
        return 0
    if (a.faces is None) == (a.reuse is None):
        ap.error("give --faces N, or --reuse DIR")
    root = Path(tempfile.mkdtemp(prefix="facedb-scale-", dir=a.scratch))
    kept = a.reuse or a.keep_home
    home = kept.absolute() if kept else root / "home"
    data = home.with_name(home.name + "-data") if kept else root / "data"
    if a.keep_home and a.keep_home.exists() and any(a.keep_home.iterdir()):
        ap.error(f"--keep-home {a.keep_home} is not empty")
    if a.reuse and not (data / "build.json").is_file():
        ap.error(f"--reuse {a.reuse}: no {data / 'build.json'} (made by a --keep-home run)")
    if a.reuse:
        a.dim = int(json.loads((data / "build.json").read_text())["dim"])
    restore_home = home.with_name(home.name + "-restored")
    if restore_home.exists():
        shutil.rmtree(restore_home)
    chroma = chroma2 = None
    restore_env = None
    try:
        with bench.bench_lock(f"scale {a.faces}", enabled=not a.no_lock):
            chroma_data = None
            if a.index == "server":
                from facedb.evaluation.servers import ChromaServer

                chroma = ChromaServer(home.with_name(home.name + "-chroma") if kept else root / "chroma-data").start()
                chroma_data = chroma.path
            pack, models = a.pack, None
            if a.dim != 128 and pack is None:
                from facedb.evaluation.fakepacks import make_pack

                pack, models = "buffalo_s", data / "models"
                if not (models / "models" / pack).is_dir():  # insightface's layout: DIR/models/<pack>/
                    make_pack(models / "models" / pack, dim=a.dim)
            env = environment(chroma.url if chroma else None, chroma_data, pack, models_dir=models)
            if chroma is not None and not a.no_restore:  # the restore goes to a new Chroma server
                chroma2 = ChromaServer(root / "chroma-restored").start()
                restore_env = environment(chroma2.url, chroma2.path, pack, apply=False, models_dir=models)
            if a.reuse:
                built = json.loads((data / "build.json").read_text())
            else:
                built = build(home, data, a.faces, a.dim, a.per_id)
                (data / "build.json").write_text(json.dumps(built))
            run = measure(home, data, built, queries=a.queries,
                          clients=[int(c) for c in a.clients.split(",") if c], deletes=a.deletes, env=env,
                          chroma_data=chroma_data, erased_out=a.erased_out,
                          restore_home=None if a.no_restore else restore_home, restore_env=restore_env)
    finally:
        for server in (chroma, chroma2):
            if server is not None:
                server.stop()
        shutil.rmtree(root, ignore_errors=True)
        if kept and restore_home.exists():
            shutil.rmtree(restore_home, ignore_errors=True)
    s1 = run.get("search_1", {})
    run.update({"index": a.index, "build": built, "reused_home": bool(a.reuse), "commit": bench.git_rev(), "command": bench.command_line(),
                "machine": bench.machine_info(),
                "search_p50_ms": s1.get("p50_ms"), "search_p99_ms": s1.get("p99_ms"),
                "recall_at_10": min((v["recall_at_10"] for k, v in run.items() if k.startswith("search_")
                                     and isinstance(v, dict) and v.get("recall_at_10") is not None), default=None)})
    text = json.dumps(run, indent=1, default=str)
    print(text)
    if a.json_out:
        a.json_out.write_text(text + "\n")
    if not a.no_append:
        runs = json.loads(a.append.read_text()) if a.append.exists() else []
        runs.append(run)
        a.append.write_text(json.dumps(runs, indent=1, default=str) + "\n")
        write_md(a.append.with_suffix(".md"), runs)
    return 0


def write_md(path: Path, runs: list[dict]) -> None:
    """The table of every run, then the hand-written section kept as it is."""
    table = bench.md_table(COLUMNS, [row_of(r) for r in runs])
    head = ("# Scale through the service (issue 18)\n\n"
            "Generated by `scripts/bench/scale.py` from [scale.json](scale.json), one row a run (its command, "
            "commit, machine and load average are in the JSON). Search: `GET /v1/faces/{id}/search?by=face&k=10` "
            "through `facedb serve` (an enrolled face's stored embedding as the probe, no embedding), wall time "
            "per request at the client; recall@10 against exact numpy search; delete+erase: `DELETE "
            "/v1/subjects/{name}` of one whole subject (median of the run's deletes); bytes found after: the "
            "deleted vectors found by a byte scan of every file of the home and of the Chroma server's data "
            "folder, the server stopped; backup through the server, restore into a new home, each a `facedb` "
            "process timed from outside.\n\n")
    old = path.read_text() if path.exists() else ""
    keep = old[old.index("<!-- section:analysis -->"):] if "<!-- section:analysis -->" in old else ""
    bench.write_text(path, head + table + "\n\n" + keep)


if __name__ == "__main__":
    sys.exit(main())
