#!/usr/bin/env python
"""Calibrate a pack's default 1:N match threshold on LFW, for one subject scoring rule.

The command line of ``facedb.evaluation.calibration`` (the protocol is described there: splits,
designs, robustness over seeds, the side-by-side comparison). The report in docs/calibration.*::

    python scripts/calibrate_threshold.py --json docs/calibration.json --md docs/calibration.md
    python scripts/calibrate_threshold.py --pack sface --scoring best --compare none
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facedb.analysis.quality import parse_quality_floor
from facedb.config import DEFAULT_PACK
from facedb.errors import FacedbError
from facedb.evaluation import calibration, lfw, runner
from facedb.evaluation import metrics as M


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=None, help="LFW folder (with pairs.txt) [default: "
                    f"${lfw.DATASETS_ENV}/lfw, else <checkout>/../shared/datasets/lfw]")
    ap.add_argument("--cache", type=Path, default=calibration.DEFAULT_CACHE, help="embedding cache folder")
    ap.add_argument("--no-cache", action="store_true", help="embed afresh and write no cache")
    ap.add_argument("--pack", default=DEFAULT_PACK, help="pack to calibrate [default: %(default)s]")
    ap.add_argument("--scoring", choices=M.SCORINGS, default="template",
                    help="subject scoring: template (facedb's default search) or best (closest face)")
    ap.add_argument("--quality-floor", default="default", metavar="SPEC",
                    help="enrollment quality floor of the calibrated rule: gallery images below it are not "
                         "enrolled ('default' = facedb's, name=value pairs, or 'off') [default: %(default)s]")
    ap.add_argument("--compare", default="sface:best",
                    help="PACK:SCORING measured on the same seeds and shown side by side ('none': skip)")
    ap.add_argument("--compare-quality-floor", default="off", metavar="SPEC",
                    help="quality floor of the --compare rule [default: %(default)s, as before the floor existed]")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--face", choices=runner.PICKS, default="largest",
                    help="which face of a multi-face image is used (the product uses the largest; LFW "
                         "labels the central one); the other is reported as a sensitivity check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=10, help="split seeds for the robustness section")
    ap.add_argument("--target-fpir", type=float, default=0.01)
    ap.add_argument("--target-fnir", type=float, default=0.04, help="FNIR target the tables count seeds against")
    ap.add_argument("--gallery-sizes", default="100,500,1000,max", help="gallery sizes of the seed-0 designs")
    ap.add_argument("--table-thresholds", default=",".join(f"{t:.2f}" for t in calibration.TABLE_THRESHOLDS),
                    help="fixed thresholds of the robustness table (the calibrated and the current one are added)")
    ap.add_argument("--margins", default=",".join(f"{m:g}" for m in calibration.MARGINS),
                    help="margins (second-best minus best subject distance) tried with the threshold; "
                         "0 is the same as no margin rule")
    ap.add_argument("--max-enroll", type=int, default=0, help="cap on enrolled images per person (0: all but one)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (smoke test)")
    ap.add_argument("--json", type=Path, default=None, help="write every number as JSON here")
    ap.add_argument("--md", type=Path, default=None, help="write the tables as markdown here")
    return ap, ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ap, a = parse_args(argv)
    compare: tuple[str, str] | None = None
    if a.compare.lower() != "none":
        b_pack, _, b_scoring = a.compare.partition(":")
        compare = (b_pack, b_scoring or "best")
        if compare[1] not in M.SCORINGS:
            ap.error(f"--compare: scoring must be one of {M.SCORINGS}")
    try:
        floor, b_floor = parse_quality_floor(a.quality_floor), parse_quality_floor(a.compare_quality_floor)
        lfw_root = lfw.require_lfw(a.lfw)
    except FacedbError as exc:
        ap.error(str(exc))
    shown = sys.argv[1:] if argv is None else argv
    settings = calibration.Settings(
        pack=a.pack, lfw_root=lfw_root, command=" ".join(["python", "scripts/calibrate_threshold.py", *shown]),
        scoring=a.scoring, quality_floor=floor, compare=compare, compare_quality_floor=b_floor,
        cache=None if a.no_cache else a.cache, workers=a.workers, face=a.face, seed=a.seed, repeats=a.repeats,
        target_fpir=a.target_fpir, target_fnir=a.target_fnir,
        gallery_sizes=[s if s == "max" else int(s) for s in a.gallery_sizes.split(",")],
        table_thresholds=_floats(a.table_thresholds), margins=_floats(a.margins), max_enroll=a.max_enroll,
        limit=a.limit)
    R = calibration.run(settings)
    calibration.print_all(R)
    if a.json:
        calibration.write_json(R, a.json)
        print(f"wrote {a.json}")
    if a.md and "config" in R:
        a.md.write_text(calibration.markdown(R))
        print(f"wrote {a.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
