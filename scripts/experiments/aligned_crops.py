#!/usr/bin/env python
"""Aligned 112x112 crops: named with ``--aligned``, and without it? Can they be recognised alone?

Builds a crop set from LFW with the standard ArcFace five-point template, as face datasets ship
them: each photo is detected and aligned by facedb's own pipeline (YuNet landmarks, OpenCV's
``FaceRecognizerSF.alignCrop``, which maps them to the template exactly as InsightFace's
``norm_crop`` does) and saved as a 112x112 PNG. Then, in a fresh database per protocol:

* ``sampled`` (the first protocol, issue 16): a seeded sample of ``--people`` LFW people with >= 2
  photos; every photo but the last (at most ``--enroll``) enrolled; probe: the last photo. Half of
  LFW's people with >= 2 photos have exactly 2, so about half of these people have one enrolled
  photo, and the model misses them far more often (docs/calibration.md: 7.8 % against 1.7 %).
* ``dataset`` (a crop dataset used for recognition, fixed before its results were seen): *every*
  LFW person with >= ``--min-photos`` photos (no sampling), the first ``--enroll`` photos
  enrolled, the last held out as the probe. Every person has the same number of enrolled photos,
  as a dataset built for recognition would give them.

In both, ``--strangers`` people with one LFW photo (a seeded sample, never enrolled) are probed as
crops too. Every crop is searched with ``aligned=True`` (embedded whole) and without (detected
again), the probes' own photos are searched as the reference, and a second database enrolls the
crops of the gallery photos with ``aligned=True`` (a crop dataset enrolled as crops). The report
gives the share of mated probes named right, named wrong, unknown and "no face", the strangers
named, and each unknown mated probe's distance to its own subject.

Recognising crops without the flag: every crop of the first protocol and, as the controls that a
rule must not take for crops, the same LFW photos resized to 112x112 (whole 250x250 photos, a face
in the middle but not on the template) are run through detection, and the report gives for each:
faces found, and the mean distance (px) of the detected landmarks to the template's. A rule
"112x112 and (no face found, or one face whose landmarks are within D px of the template)" is
reliable if the two distributions do not overlap.

Usage (the report in docs/benchmarks/aligned-crops.md; about 25 minutes with 2 workers on the
shared 2-core machine)::

    python scripts/experiments/aligned_crops.py --people 200 --strangers 200 --seed 0 --workers 2 \\
        --md docs/benchmarks/aligned-crops.md --json /tmp/facedb-aligned/result.json

How a crop is embedded (test-time augmentation variants, template against closest-face scoring)
is measured by ``scripts/experiments/crop_tta.py`` on the same protocols.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from facedb.analysis import imaging
from facedb.analysis.aligned import ARCFACE_TEMPLATE, SIDE
from facedb.analysis.engines import load_engine
from facedb.api import FaceDB
from facedb.evaluation.calibration import git_commit
from facedb.evaluation.lfw import choose_protocol, list_people, require_lfw

TEMPLATE = np.asarray(ARCFACE_TEMPLATE, np.float32)


def make_crop(engine: Any, src: Path, out: Path) -> bool:
    """The aligned 112x112 crop of the largest face of ``src`` (False: no face found)."""
    from PIL import Image

    bgr = imaging.load(src).pixels
    rows = engine.detect(bgr)
    if not len(rows):
        return False
    row = max(rows, key=lambda r: float(r[2] * r[3]))
    crop = engine.align(bgr, row)
    Image.fromarray(np.ascontiguousarray(crop[:, :, ::-1])).save(out)
    return True


def landmark_offset(engine: Any, path: Path) -> tuple[int, float | None]:
    """(faces detected, mean px distance of the largest face's landmarks to the template)."""
    bgr = imaging.load(path).pixels
    rows = engine.detect(bgr)
    if not len(rows):
        return 0, None
    row = max(rows, key=lambda r: float(r[2] * r[3]))
    pts = np.asarray(row[4:14], np.float32).reshape(5, 2) * (SIDE / bgr.shape[1])
    return len(rows), float(np.linalg.norm(pts - TEMPLATE, axis=1).mean())


def agreement(engine: Any, path: Path) -> float | None:
    """Cosine between ``path`` embedded whole (as ``--aligned`` would) and its largest detected face
    aligned again and embedded (as without the flag); None when no face is detected. A crop on the
    template gives nearly the same vector both ways; a small photo does not."""
    bgr = imaging.load(path).pixels
    rows = engine.detect(bgr)
    if not len(rows):
        return None
    row = max(rows, key=lambda r: float(r[2] * r[3]))
    f = engine.features([np.ascontiguousarray(bgr), engine.align(bgr, row)])
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    return float(f[0] @ f[1])


def best_cut(low: list[float], high: list[float]) -> tuple[float, int]:
    """The cut c minimising (values of ``low`` above c) + (values of ``high`` at or below c), and
    that number of errors."""
    cut, err = 0.0, len(low) + len(high)
    for c in sorted(set(low + high)):
        e = sum(o > c for o in low) + sum(o <= c for o in high)
        if e < err:
            cut, err = c, e
    return cut, err


def outcome(face_results: list[Any], truth: str | None) -> str:
    """right / wrong / unknown / no_face for a probe's largest face (``truth`` None: a stranger)."""
    if not face_results:
        return "no_face"
    identity = face_results[0].identity
    if identity is None:
        return "unknown"
    return "right" if identity == truth else "wrong"


#: The protocols (see the module docstring) and their labels in the report.
PROTOCOLS = {"sampled": "sampled: {people} people with >= 2 photos, up to {enroll} enrolled",
             "dataset": "dataset: every person with >= {min_photos} photos ({people}), {enroll} enrolled"}


def run_protocol(lfw: Path, tmp: Path, engine: Any, enrolled: dict[str, list[str]], held_out: dict[str, str],
                 strangers: list[str], people: dict[str, list[str]], pack: str, workers: int) -> dict[str, Any]:
    """Crops made, the databases built and searched: counts per mode, and the probes."""
    from PIL import Image

    for sub in ("crops", "controls", "gallery"):
        (tmp / sub).mkdir()
    probes: list[tuple[Path, Path, str | None]] = []  # (crop, its source photo, person or None)
    controls: list[Path] = []
    no_crop = 0
    for person in list(held_out) + strangers:
        src = lfw / (held_out[person] if person in held_out else people[person][-1])
        out = tmp / "crops" / f"{person}.png"
        if not make_crop(engine, src, out):
            no_crop += 1
            continue
        probes.append((out, src, person if person in held_out else None))
        with Image.open(src) as im:
            ctrl = tmp / "controls" / f"{person}.png"
            im.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS).save(ctrl)
            controls.append(ctrl)
    gallery_crops: dict[str, list[Path]] = {}
    for person, rels in enrolled.items():
        (tmp / "gallery" / person).mkdir()
        for i, rel in enumerate(rels):
            out = tmp / "gallery" / person / f"{i}.png"
            if make_crop(engine, lfw / rel, out):
                gallery_crops.setdefault(person, []).append(out)
    paths = [c for c, _, _ in probes]
    truth = [t for _, _, t in probes]
    counts: dict[str, dict[str, dict[str, int]]] = {}
    per_probe: dict[str, list[str]] = {}
    missed: dict[str, list[dict[str, Any]]] = {}

    def tally(mode: str, rep: Any, names: set[str]) -> None:
        c: dict[str, dict[str, int]] = {"mated": {}, "stranger": {}}
        outs, miss = [], []
        for res, t in zip(rep.results, truth):
            t = t if t in names else None
            o = outcome(res.faces, t)
            kind = "mated" if t else "stranger"
            c[kind][o] = c[kind].get(o, 0) + 1
            outs.append(o)
            if t and o != "right":
                own = [m.distance for f in res.faces[:1] for m in f.matches if m.subject == t]
                miss.append({"person": t, "photos": len(people[t]), "outcome": o,
                             "distance": round(own[0], 3) if own else None})
        counts[mode], per_probe[mode], missed[mode] = c, outs, miss

    with FaceDB(home=tmp / "home", pack=pack, workers=workers) as db:
        for person, rels in enrolled.items():
            db.enroll(person, [lfw / rel for rel in rels], multi_face="largest")
        names = {s.name for s in db.subjects()}
        tally("photo", db.search([src for _, src, _ in probes]), names)
        tally("aligned", db.search(paths, aligned=True), names)
        tally("detected", db.search(paths), names)
    with FaceDB(home=tmp / "crop-home", pack=pack, workers=workers) as db:
        for person, crops in gallery_crops.items():
            db.enroll(person, crops, aligned=True)
        tally("crop_gallery", db.search(paths, aligned=True), {s.name for s in db.subjects()})
    # Of the mated probes whose own photo is named right, the share whose crop is named right too.
    photo_right = [i for i, o in enumerate(per_probe["photo"]) if o == "right" and truth[i] is not None]
    kept = {mode: sum(per_probe[mode][i] == "right" for i in photo_right) / len(photo_right) if photo_right else None
            for mode in ("aligned", "detected", "crop_gallery")}
    return {"gallery_people": len(enrolled), "enrolled_photos": sum(len(v) for v in enrolled.values()),
            "mated_probes": sum(t is not None for t in truth), "stranger_probes": sum(t is None for t in truth),
            "no_crop": no_crop, "counts": counts, "named_when_photo_named": kept, "missed": missed,
            "paths": paths, "controls": controls}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, help="the LFW folder [default: ../shared/datasets/lfw]")
    ap.add_argument("--people", type=int, default=300, help="people of the sampled protocol")
    ap.add_argument("--strangers", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pack", default="sface-flip")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS))
    ap.add_argument("--min-photos", type=int, default=5, help="LFW photos a person of the dataset protocol has")
    ap.add_argument("--enroll", type=int, default=4, help="photos enrolled per person (at most)")
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    lfw = require_lfw(args.lfw)
    people = list_people(lfw)
    engine = load_engine("sface")
    commit = git_commit()  # at the start: the code that runs, not what is committed meanwhile
    started = time.time()
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="facedb-aligned-") as tmp_name:
        tmp = Path(tmp_name)
        for protocol in args.protocols:
            (tmp / protocol).mkdir()
            t0 = time.time()
            enrolled, held_out, strangers = choose_protocol(people, protocol, args.people, args.strangers, args.seed,
                                                   args.min_photos, args.enroll)
            runs[protocol] = run_protocol(lfw, tmp / protocol, engine, enrolled, held_out, strangers, people,
                                          args.pack, args.workers)
            runs[protocol]["seconds"] = round(time.time() - t0, 1)
            print(f"[{protocol}] {runs[protocol]['seconds']:.0f} s", flush=True)
        first = runs[args.protocols[0]]
        crop_paths, ctrl_paths = first.pop("paths"), first.pop("controls")
        crop_stats = [landmark_offset(engine, p) for p in crop_paths]
        ctrl_stats = [landmark_offset(engine, p) for p in ctrl_paths]
        crop_agree = sorted(a for a in (agreement(engine, p) for p in crop_paths) if a is not None)
        ctrl_agree = sorted(a for a in (agreement(engine, p) for p in ctrl_paths) if a is not None)
        for r in runs.values():
            r.pop("paths", None)
            r.pop("controls", None)
    elapsed = time.time() - started

    def share(c: dict[str, int], key: str) -> float:
        n = sum(c.values())
        return c.get(key, 0) / n if n else 0.0

    def offsets(stats: list[tuple[int, float | None]]) -> list[float]:
        return sorted(o for _, o in stats if o is not None)

    crop_off, ctrl_off = offsets(crop_stats), offsets(ctrl_stats)
    # The best landmark-offset cut between crops and controls, and its errors; the same for the
    # agreement of the two embeddings (controls low, crops high).
    cut_px, best_err = best_cut(crop_off, ctrl_off)
    cut_cos, cos_err = best_cut(ctrl_agree, crop_agree)
    result = {
        "pack": args.pack, "seed": args.seed, "protocols": runs, "seconds": round(elapsed, 1),
        "min_photos": args.min_photos, "enroll": args.enroll, "commit": commit,
        "crops": {"no_face": sum(n == 0 for n, _ in crop_stats), "several": sum(n > 1 for n, _ in crop_stats),
                  "offset_px_max": max(crop_off) if crop_off else None,
                  "offset_px_p99": float(np.percentile(crop_off, 99)) if crop_off else None},
        "controls": {"n": len(ctrl_stats), "no_face": sum(n == 0 for n, _ in ctrl_stats),
                     "offset_px_min": min(ctrl_off) if ctrl_off else None,
                     "offset_px_p1": float(np.percentile(ctrl_off, 1)) if ctrl_off else None},
        "best_cut_px": cut_px, "best_cut_errors": best_err,
        "agreement": {"crops_min": crop_agree[0] if crop_agree else None,
                      "crops_p1": float(np.percentile(crop_agree, 1)) if crop_agree else None,
                      "controls_max": ctrl_agree[-1] if ctrl_agree else None,
                      "controls_p99": float(np.percentile(ctrl_agree, 99)) if ctrl_agree else None,
                      "best_cut": cut_cos, "best_cut_errors": cos_err, "n": len(crop_agree) + len(ctrl_agree)},
    }
    labels = {"photo": "the probes' own photos, default (reference)",
              "aligned": "crops, `--aligned` (embedded whole)",
              "detected": "crops, default (detected again)",
              "crop_gallery": "crops, `--aligned`; gallery of crops enrolled `--aligned`"}
    cmd = (f"scripts/experiments/aligned_crops.py --people {args.people} --strangers {args.strangers} "
           f"--seed {args.seed} --workers {args.workers}"
           + ("" if args.protocols == list(PROTOCOLS) else " --protocols " + " ".join(args.protocols))
           + ("" if args.min_photos == 5 else f" --min-photos {args.min_photos}")
           + ("" if args.enroll == 4 else f" --enroll {args.enroll}"))
    lines = [
        "# Aligned 112x112 crops (`--aligned`)",
        "",
        f"Made by `{cmd}` at commit {result['commit']} (pack `{args.pack}`, threshold = the pack's default, "
        f"{elapsed:.0f} s). The crops: facedb's own YuNet landmarks -> the ArcFace five-point template "
        "(OpenCV `alignCrop`, the same warp as InsightFace's `norm_crop`). Per protocol, the gallery "
        "photos are enrolled the default way, and the probes are the aligned 112x112 crops of each "
        "person's held-out photo (mated) and of people with one LFW photo (strangers, not enrolled). "
        "The last row of each table enrolls the crops of the gallery photos instead (`--aligned`), as a "
        "crop dataset would be used.",
    ]
    for protocol, r in runs.items():
        title = PROTOCOLS[protocol].format(people=r["gallery_people"], enroll=args.enroll,
                                           min_photos=args.min_photos)
        lines += [
            "",
            f"## Protocol {title}",
            "",
            f"{r['gallery_people']} people ({r['enrolled_photos']} photos enrolled), {r['mated_probes']} mated "
            f"probes, {r['stranger_probes']} stranger probes ({r['no_crop']} photos without a face to crop; "
            f"{r['seconds']:.0f} s).",
            "",
            "| probes | mated named right | named wrong | unknown | no face found | strangers named | "
            "right, of those whose photo is named right |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode, label in labels.items():
            m, st = r["counts"][mode]["mated"], r["counts"][mode]["stranger"]
            k = r["named_when_photo_named"].get(mode)
            lines.append(f"| {label} | {share(m, 'right'):.1%} ({m.get('right', 0)}) | "
                         f"{share(m, 'wrong'):.1%} ({m.get('wrong', 0)}) | "
                         f"{share(m, 'unknown'):.1%} | {share(m, 'no_face'):.1%} | "
                         f"{share(st, 'wrong'):.1%} ({st.get('wrong', 0)}) | {'-' if k is None else f'{k:.1%}'} |")
        miss = r["missed"]["aligned"]
        if miss:
            lines += ["", "Mated crops not named right with `--aligned` (person, LFW photos, outcome, distance "
                          "to their own subject, - when it is not among the nearest): " + "; ".join(
                              f"{m['person']} ({m['photos']}, {m['outcome']}, "
                              f"{'-' if m['distance'] is None else m['distance']})" for m in miss) + "."]
    cr, ct, ag = result["crops"], result["controls"], result["agreement"]
    lines += [
        "",
        "## Recognising crops without the flag",
        "",
        f"Detection on the {len(crop_stats)} crops of the first protocol found no face in {cr['no_face']} and "
        f"several in {cr['several']}; the mean distance of the detected landmarks to the template's is at most "
        f"{_px(cr['offset_px_max'])} px (99th percentile {_px(cr['offset_px_p99'])}). On {ct['n']} controls "
        "(the same LFW photos resized whole to 112x112: a face, not on the template) no face was found in "
        f"{ct['no_face']}, and the offset is at least {_px(ct['offset_px_min'])} px (1st percentile "
        f"{_px(ct['offset_px_p1'])}). The best single cut ({cut_px:.1f} px) still misclassifies "
        f"{best_err} of {len(crop_off) + len(ctrl_off)} images.",
        "",
        f"Embedded both ways (whole, as `--aligned` does, and detected and aligned again, as without "
        f"it), the two vectors of a crop agree: cosine at least {_cos(ag['crops_min'])} (1st percentile "
        f"{_cos(ag['crops_p1'])}) over the crops; those of the controls at most {_cos(ag['controls_max'])} (99th "
        f"percentile {_cos(ag['controls_p99'])}). The best cut ({_cos(ag['best_cut'])}) misclassifies "
        f"{ag['best_cut_errors']} of {ag['n']} images.",
        "",
        "So neither where the detector puts its landmarks nor whether the two embeddings agree tells a crop "
        "from a small photo reliably enough to skip detection behind the user's back: a wrong guess embeds a "
        "misaligned face (a miss, or a wrong name). facedb does not guess; `--aligned` (the `aligned` "
        "form field, the `aligned=True` keyword) says it.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _cos(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _px(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    raise SystemExit(main())
