"""Clustering speed of ``facedb discover``: ``--faces`` synthetic 128-d unit vectors in people of
power-law sizes (embeddings given: no images decoded), clustered by ``facedb.analysis.clustering``
with the default settings; wall and CPU seconds, peak memory (RSS), BCubed against the planted
people, and the recall of the approximate kNN graph against the exact one on a sample.
Logic: ``facedb.evaluation.discovery``. The machine's load average is recorded: on a shared
machine the wall time is an upper bound and the CPU time is the better guide.

    python scripts/bench/cluster_speed.py --faces 100000     # writes docs/benchmarks/discover.{md,json}
    python scripts/bench/cluster_speed.py --faces 20000 --out /tmp/d.md --json /tmp/d.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

from facedb.analysis import clustering
from facedb.evaluation import bench, discovery

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recall-sample", type=int, default=1000,
                    help="faces whose exact neighbours check the approximate graph (0: skip)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "discover.md")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks" / "discover.json")
    a = ap.parse_args()
    load = bench.loadavg()
    r = discovery.speed_run(a.faces, clustering.ClusterSettings(), a.seed, a.recall_sample)
    r.update(command=bench.command_line(), commit=bench.git_rev(), load_at_start=load,
             load_at_end=bench.loadavg(), machine=bench.machine_info())
    discovery.write_section(a.out, a.json, "speed", r)
    print(r)


if __name__ == "__main__":
    main()
