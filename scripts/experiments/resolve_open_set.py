#!/usr/bin/env python
"""Does resolving photos with several faces change FNIR / FPIR? (LFW open set, end to end)

The same LFW gallery is enrolled twice through ``FaceDB.enroll``, once with
``multi_face="largest"`` (the old default) and once with ``"resolve"`` (the new one), and the
same probes are searched in both at the default threshold:

* gallery: ``--people`` LFW people with >= 2 photos (seeded sample), every photo but the last
  enrolled (a photo in which the pack finds several faces is what the two modes treat apart);
* mated probes: each gallery person's last photo; FNIR = share whose largest face is not named
  as that person (unknown or someone else), over every gallery person, including those left with
  no face enrolled (every photo of theirs refused);
* strangers: the photo of ``--strangers`` people with one LFW photo; FPIR = share whose largest
  face is named.

Usage (a few minutes on one core)::

    python scripts/experiments/resolve_open_set.py --people 400 --strangers 400 \\
        --md /tmp/facedb-resolve/open-set.md
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from facedb.api import FaceDB
from facedb.evaluation.lfw import list_people, require_lfw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path)
    ap.add_argument("--people", type=int, default=400)
    ap.add_argument("--strangers", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pack", default="sface-flip")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    lfw = require_lfw(args.lfw)
    people = list_people(lfw)
    rng = random.Random(args.seed)
    gallery = rng.sample(sorted(p for p, ims in people.items() if len(ims) >= 2), args.people)
    strangers = rng.sample(sorted(p for p, ims in people.items() if len(ims) == 1), args.strangers)
    probes = [lfw / people[p][-1] for p in gallery] + [lfw / people[p][0] for p in strangers]
    truth: list[str | None] = [*gallery, *([None] * len(strangers))]
    started = time.time()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="facedb-resolve-") as tmp:
        for mode in ("largest", "resolve"):
            with FaceDB(home=Path(tmp) / mode, pack=args.pack, workers=args.workers) as db:
                enrolled = refused = multi = 0
                for p in gallery:
                    rep = db.enroll(p, [lfw / rel for rel in people[p][:-1]], multi_face=mode)  # type: ignore[arg-type]
                    enrolled += rep.enrolled
                    refused += sum(f.reason == "ambiguous_faces" for f in rep.failed)
                    multi += sum(im.faces > 1 for im in rep.images)
                names = {s.name for s in db.subjects()}
                rep_s = db.search(probes)
                threshold = rep_s.threshold
            mated_miss = mated = fp = n_str = 0
            for res, t in zip(rep_s.results, truth):
                named = res.faces[0].identity if res.faces else None
                if t is not None:  # a person left with no face enrolled counts as a miss
                    mated += 1
                    mated_miss += named != t
                else:
                    n_str += 1
                    fp += named is not None
            out[mode] = {"photos_enrolled": enrolled, "photos_with_several_faces": multi,
                         "refused_ambiguous": refused, "subjects": len(names), "mated": mated,
                         "fnir": mated_miss / mated if mated else None, "strangers": n_str,
                         "fpir": fp / n_str if n_str else None, "named_strangers": fp}
    elapsed = time.time() - started
    lines = [
        "| enroll mode | photos enrolled | with several faces | refused (ambiguous_faces) | subjects | "
        "FNIR (mated) | FPIR (strangers) |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, r in out.items():
        lines.append(f"| {mode} | {r['photos_enrolled']} | {r['photos_with_several_faces']} | "
                     f"{r['refused_ambiguous']} | {r['subjects']} | {r['fnir']:.2%} of {r['mated']} | "
                     f"{r['fpir']:.2%} ({r['named_strangers']} of {r['strangers']}) |")
    text = (f"`scripts/experiments/resolve_open_set.py --people {args.people} --strangers {args.strangers} "
            f"--seed {args.seed}` (pack `{args.pack}`, threshold {threshold:.2f}, {elapsed:.0f} s)\n\n"
            + "\n".join(lines) + "\n")
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
