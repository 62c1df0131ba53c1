#!/usr/bin/env python
"""Erasure at scale: delete + erase of one subject in a home of N faces, and what is left.

For each size: builds a facedb home of N synthetic faces (bulk SQL rows, ``ChromaIndex.add``,
templates), then in one process that keeps it open times ``FaceDB.delete`` of several whole
subjects (median), measures face-search p50 before and after, and byte-scans every file of the
home for the deleted vectors and names (``facedb.evaluation.erasure``).

Usage::

    python scripts/bench/erasure.py --faces 20000,100000
    python scripts/bench/erasure.py --faces 1000000 --deletes 5 --scratch /big/disk   # later

Writes ``docs/benchmarks/erasure.md`` and ``.json`` (``--out``/``--json`` elsewhere).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from facedb.evaluation import bench
from facedb.evaluation.erasure import build_home, measure, report_md

REPO = Path(__file__).resolve().parent.parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", default="20000,100000", help="comma-separated gallery sizes [20000,100000]")
    ap.add_argument("--per-id", type=int, default=5, help="faces per subject [5]")
    ap.add_argument("--deletes", type=int, default=5, help="subjects deleted (timed one by one) per size [5]")
    ap.add_argument("--scratch", type=Path, default=None, help="folder for the homes (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the homes")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "erasure.md")
    ap.add_argument("--json", type=Path, default=None, help="[--out with .json]")
    ap.add_argument("--no-lock", action="store_true", help="do not take the machine-wide benchmark lock")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="facedb-erasure-", dir=a.scratch))
    runs = []
    try:
        for n in (int(x) for x in a.faces.split(",") if x):
            work = root / str(n)
            with bench.bench_lock(f"erasure {n}", enabled=not a.no_lock):
                built = build_home(work / "home", work / "data", n, a.per_id, log=bench.log)
                run = measure(work / "home", work / "data", n, a.per_id, a.deletes)
            run["build"] = built
            runs.append(run)
            bench.log(f"[erasure] {n:,}: median delete+erase {run['median']['total_s']:.3f} s, "
                      f"left in files {run['scan'] or 'nothing'}")
            if not a.keep:
                shutil.rmtree(work, ignore_errors=True)
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)
    head = bench.header("Erasure at scale: delete + erase of one subject",
                        ["python", "scripts/bench/erasure.py", *sys.argv[1:]], {})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(report_md(runs, head))
    (a.json or a.out.with_suffix(".json")).write_text(json.dumps(runs, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
