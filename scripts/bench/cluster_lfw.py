"""Clustering quality of ``facedb discover`` on LFW: BCubed precision / recall / F per linkage rule
and threshold, nobody enrolled, scored on the labelled face of each image (the face nearest the
centre of LFW's 250x250 crops). The embedding pass is cached outside the repository
(``--cache``), so a rerun takes seconds. Logic: ``facedb.evaluation.discovery``.

    python scripts/bench/cluster_lfw.py                  # writes docs/benchmarks/discover.{md,json}
    python scripts/bench/cluster_lfw.py --out /tmp/d.md --json /tmp/d.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

from facedb.config import DEFAULT_PACK
from facedb.evaluation import bench, calibration, discovery, lfw

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=None, help="the LFW folder (default: the shared datasets)")
    ap.add_argument("--pack", default=DEFAULT_PACK)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=calibration.DEFAULT_CACHE, help="embedding cache folder")
    ap.add_argument("--k", type=int, default=20, help="neighbours per face in the graph")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "discover.md")
    ap.add_argument("--json", type=Path, default=REPO / "docs" / "benchmarks" / "discover.json")
    a = ap.parse_args()
    X, people, missing = discovery.lfw_faces(lfw.require_lfw(a.lfw), a.pack, a.workers, a.cache)
    rows = discovery.score_rules(X, people, discovery.DEFAULT_GRID, k=a.k)
    discovery.write_section(a.out, a.json, "quality", {
        "command": bench.command_line(), "commit": bench.git_rev(), "pack": a.pack, "faces": len(X),
        "people": len(set(people)), "images_without_face": missing, "rows": rows,
        "machine": bench.machine_info()})
    for r in rows:
        print(r)


if __name__ == "__main__":
    main()
