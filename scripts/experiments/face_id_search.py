#!/usr/bin/env python
"""Search by an enrolled face (``facedb search --face-id``) and the single-face writes, measured.

Imports a labelled folder (default: the Yale faces, ``subjectNN.<condition>``, names by prefix)
into a fresh temporary home, then:

1. for every enrolled face, ``FaceDB.search_face`` with each ranking (subjects by template, by
   closest face, and the nearest faces): rank-1 = the first answer is the face's own subject.
   The face itself is left out (and its own subject scored without it), so this is leave-one-out
   identification; without the exclusion every answer would be the face itself at distance 0.
   It also checks that no answer is ever the probe face.
2. the wall time of ``faces list`` per subject, ``search_face`` per call, and of moving one face
   to another subject and back, and of removing one face (the two-store writes, journaled).

Run (about a minute for Yale; ``--hold`` keeps the index open between calls, as a server does):

    python scripts/experiments/face_id_search.py ../shared/datasets/yalefaces [--hold]

Prints one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from facedb.api import FaceDB


def _ms(samples: list[float]) -> dict[str, float]:
    return {"median_ms": round(1000 * statistics.median(samples), 2),
            "p90_ms": round(1000 * sorted(samples)[int(0.9 * (len(samples) - 1))], 2), "n": len(samples)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset", type=Path, help="a folder: <subject>/<images> (--name-from dir) or flat by prefix")
    ap.add_argument("--name-from", choices=("dir", "prefix"), default="prefix")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--hold", action="store_true",
                    help="keep the home locked and the index open between calls (as `facedb serve` does)")
    args = ap.parse_args()
    out: dict[str, Any] = {"dataset": str(args.dataset), "hold": args.hold}
    with tempfile.TemporaryDirectory() as tmp, FaceDB(home=Path(tmp) / "home", workers=args.workers) as db, \
            (db.hold() if args.hold else contextlib.nullcontext()):
        t0 = time.perf_counter()
        rep = db.import_dir(args.dataset, name_from=args.name_from, quality_floor=None)
        out["import"] = {"enrolled": rep.enrolled, "duplicates": rep.duplicates, "failed": rep.n_failed,
                         "seconds": round(time.perf_counter() - t0, 1)}
        subjects = [s.name for s in db.subjects()]
        listing: list[float] = []
        faces: list[tuple[int, str]] = []
        for name in subjects:
            t = time.perf_counter()
            fr = db.faces(name)
            listing.append(time.perf_counter() - t)
            faces += [(x.face_id, name) for x in fr.faces]
        out["subjects"], out["faces"] = len(subjects), len(faces)
        out["faces_list"] = _ms(listing)
        modes = {"template": {"by": "subject", "scoring": "template"}, "best": {"by": "subject", "scoring": "best"},
                 "nearest_face": {"by": "face", "scoring": "best"}}
        for label, kw in modes.items():
            right, itself, times = 0, 0, []
            for fid, name in faces:
                t = time.perf_counter()
                r = db.search_face(fid, k=3, **kw)  # type: ignore[arg-type]
                times.append(time.perf_counter() - t)
                itself += any(m.face_id == fid and (kw["by"] == "face") for m in r.matches)
                right += bool(r.matches) and r.matches[0].subject == name
            out[f"rank1_{label}"] = round(right / len(faces), 4)
            out[f"probe_returned_{label}"] = itself
            out[f"search_face_{label}"] = _ms(times)
        # Writes: move one face of each of the first subjects to the next subject and back; remove one.
        moves: list[float] = []
        for (fid, name), other in zip(faces[::11][:10], subjects[1:11]):
            for to in (other if other != name else subjects[0], name):
                t = time.perf_counter()
                db.move_faces([fid], to)
                moves.append(time.perf_counter() - t)
        out["move_one_face"] = _ms(moves)
        removes: list[float] = []
        for fid, _ in faces[5::17][:8]:
            t = time.perf_counter()
            db.remove_faces([fid])
            removes.append(time.perf_counter() - t)
        out["remove_one_face"] = _ms(removes)
        out["check_clean_after"] = db.check().clean
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
