#!/usr/bin/env python
"""Cold start of the two sface embedders, in fresh processes, runs alternating.

1. ``SFaceEngine(embedder=X)`` including its imports (``from facedb.analysis.engines.sface import ...``)
   and the first embedding of one face, for X = opencv / onnxruntime;
2. with ``--home H --probe IMG``: the whole command ``facedb --home H search IMG --json`` with
   ``FACEDB_SFACE_BACKEND=X`` (what a user waits for).

Medians of ``--runs`` runs of each, the two embedders interleaved so that the ratio comes from
the same moments of a shared machine.

    python scripts/bench/sface_cold_start.py --runs 10 --home /tmp/yale-home --probe yalefaces/subject01.happy
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from facedb.evaluation import bench as common

ENGINE_CODE = """
import time
t0 = time.perf_counter()
import numpy as np
from facedb.analysis.engines.sface import SFaceEngine
e = SFaceEngine(embedder={name!r})
t1 = time.perf_counter()
e.analyze(np.full((160, 160, 3), 128, np.uint8))
e.features([np.full((112, 112, 3), 128, np.uint8)])
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--home", type=Path)
    ap.add_argument("--probe", type=Path)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    names = ("opencv", "onnxruntime")
    eng = {n: [] for n in names}
    first = {n: [] for n in names}
    cli = {n: [] for n in names}
    facedb = str(Path(sys.executable).with_name("facedb"))
    with common.bench_lock(label="sface_cold_start"):
        for r in range(a.runs + 1):  # run 0 warms the page cache
            order = names if r % 2 == 0 else names[::-1]
            for n in order:
                out = subprocess.run([sys.executable, "-c", ENGINE_CODE.format(name=n)], capture_output=True,
                                     text=True, check=True).stdout.split()
                if r:
                    eng[n].append(float(out[0]))
                    first[n].append(float(out[1]))
                if a.home and a.probe:
                    env = {**os.environ, "FACEDB_SFACE_BACKEND": n}
                    t = time.perf_counter()
                    p = subprocess.run([facedb, "--home", str(a.home), "search", str(a.probe), "--json"],
                                       capture_output=True, text=True, env=env)
                    dt = time.perf_counter() - t
                    if p.returncode != 0:
                        raise SystemExit(f"facedb search failed ({p.returncode}): {p.stderr.strip()}")
                    if r:
                        cli[n].append(dt)
    med = statistics.median
    R = {"command": common.command_line(), "machine": common.machine_info(), "runs": a.runs,
         "engine_construct_with_imports_s": {n: med(eng[n]) for n in names},
         "first_analyze_s": {n: med(first[n]) for n in names},
         "engine_ratio_ort_over_opencv": med([o / c for o, c in zip(eng["onnxruntime"], eng["opencv"])])}
    if a.home and a.probe:
        R["cli_search_s"] = {n: med(cli[n]) for n in names}
        R["cli_search_min_max_s"] = {n: [min(cli[n]), max(cli[n])] for n in names}
        R["cli_ratio_ort_over_opencv"] = med([o / c for o, c in zip(cli["onnxruntime"], cli["opencv"])])
    print(json.dumps(R, indent=1))
    if a.json:
        a.json.write_text(json.dumps(R, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
