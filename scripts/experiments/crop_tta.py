#!/usr/bin/env python
"""How an aligned crop is embedded: test-time augmentation and subject scoring, measured.

``--aligned`` embeds a 112x112 crop as ``sface-flip`` embeds the crop it aligns itself: the crop
and its mirror image, summed and normalised. This experiment asks whether more test-time
augmentation of the crop (small shifts and scales of the 112x112 image, each embedded with its
mirror, the unit vectors averaged and re-normalised) names more mated probes without naming
strangers, and whether scoring subjects by their closest face instead of their template would.

The probes are the crops of ``scripts/experiments/aligned_crops.py``'s protocols (facedb's YuNet
landmarks -> the ArcFace template by OpenCV's ``alignCrop``), plus ``open-set``: every LFW person
with >= 2 photos (up to 4 enrolled, the last held out) and every person with one photo as a
stranger, the scale of docs/calibration.md. The gallery templates are the sums of the enrolled
photos' ``sface-flip`` vectors (facedb's template), read from the calibration's embedding cache
(``facedb.evaluation.runner``; the first run embeds all of LFW, about 4 minutes). The variants'
crop vectors are cached too (``--cache``), so a re-run only scores.

The plain variant ("flip") must equal the cached photo vector of the same face (the crop path
embeds exactly what the photo path embeds); the report gives the largest difference.

Usage::

    python scripts/experiments/crop_tta.py --md /tmp/facedb-aligned/tta.md --json /tmp/facedb-aligned/tta.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from facedb.analysis import imaging
from facedb.analysis.engines import load_engine
from facedb.evaluation import calibration
from facedb.evaluation.lfw import choose_protocol, list_people, require_lfw

#: Each variant: the (dx, dy, scale) warps of the crop whose (crop + mirror) unit vectors are averaged.
VARIANTS: dict[str, list[tuple[float, float, float]]] = {
    "flip": [(0, 0, 1)],
    "shift1": [(0, 0, 1), (1, 0, 1), (-1, 0, 1), (0, 1, 1), (0, -1, 1)],
    "shift2": [(0, 0, 1), (2, 0, 1), (-2, 0, 1), (0, 2, 1), (0, -2, 1)],
    "scale": [(0, 0, 1), (0, 0, 0.95), (0, 0, 1.05)],
    "shift2scale": [(0, 0, 1), (2, 0, 1), (-2, 0, 1), (0, 2, 1), (0, -2, 1), (0, 0, 0.95), (0, 0, 1.05)],
}
WARPS = sorted({w for ws in VARIANTS.values() for w in ws})


def warp(cv2: Any, crop: np.ndarray, dx: float, dy: float, s: float) -> np.ndarray:
    """``crop`` scaled by ``s`` about its centre and shifted by (dx, dy) px, edges replicated."""
    if (dx, dy, s) == (0, 0, 1):
        return crop
    c = (crop.shape[1] - 1) / 2
    m = np.array([[s, 0, (1 - s) * c + dx], [0, s, (1 - s) * c + dy]], np.float32)
    out: np.ndarray = cv2.warpAffine(crop, m, (crop.shape[1], crop.shape[0]), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
    return out


def warp_features(engine: Any, lfw: Path, rels: list[str]) -> tuple[np.ndarray, float]:
    """(n, len(WARPS), 128) raw crop + mirror features of the largest face of each photo (NaN: no
    face), and the ms per crop of embedding all the warps."""
    cv2 = engine._cv2
    out = np.full((len(rels), len(WARPS), 128), np.nan, np.float32)
    spent = 0.0
    for i, rel in enumerate(rels):
        bgr = imaging.load(lfw / rel).pixels
        rows = engine.detect(bgr)
        if not len(rows):
            continue
        row = max(rows, key=lambda r: float(r[2] * r[3]))
        crop = engine.align(bgr, row)
        t0 = time.perf_counter()
        ims = []
        for w in WARPS:
            im = warp(cv2, crop, *w)
            ims += [im, cv2.flip(im, 1)]
        f = engine.features(ims)
        out[i] = f[0::2] + f[1::2]
        spent += time.perf_counter() - t0
        if (i + 1) % 500 == 0:
            print(f"[crops] {i + 1}/{len(rels)}", flush=True)
    return out, 1000 * spent / max(1, len(rels))


def variant_vectors(feats: np.ndarray, name: str) -> np.ndarray:
    """The unit vectors of variant ``name`` from ``warp_features`` rows."""
    idx = [WARPS.index(w) for w in VARIANTS[name]]
    f = feats[:, idx]
    f = f / np.linalg.norm(f, axis=2, keepdims=True)
    v = f.sum(1)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def evaluate(T: np.ndarray, F: np.ndarray, lab: np.ndarray, probes: np.ndarray, truth: list[int | None],
             thr: float) -> dict[str, dict[str, Any]]:
    """Per scoring: mated right / wrong / unknown / no face, strangers named, mean mated distance."""
    out: dict[str, dict[str, Any]] = {}
    for scoring in ("template", "best"):
        c: dict[str, Any] = {"right": 0, "wrong": 0, "unknown": 0, "no_face": 0, "strangers_named": 0,
                             "mated": 0, "strangers": 0}
        md = []
        ok = np.isfinite(probes[:, 0])
        v = np.nan_to_num(probes)
        if scoring == "template":
            d = 1 - v @ T.T
        else:
            dface = 1 - v @ F.T
            d = np.full((len(v), len(T)), np.inf, np.float32)
            np.minimum.at(d.T, lab, dface.T)
        for i, t in enumerate(truth):
            c["mated" if t is not None else "strangers"] += 1
            if not ok[i]:
                if t is not None:
                    c["no_face"] += 1
                continue
            j = int(np.argmin(d[i]))
            named = d[i, j] <= thr
            if t is None:
                c["strangers_named"] += int(named)
                continue
            md.append(float(d[i, t]))
            c["unknown" if not named else "right" if j == t else "wrong"] += 1
        c["mated_mean_distance"] = round(float(np.mean(md)), 4) if md else None
        out[scoring] = c
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, help="the LFW folder [default: ../shared/datasets/lfw]")
    ap.add_argument("--people", type=int, default=200, help="people of the sampled protocol")
    ap.add_argument("--strangers", type=int, default=200, help="strangers of the sampled and dataset protocols")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-photos", type=int, default=5)
    ap.add_argument("--enroll", type=int, default=4)
    ap.add_argument("--threshold", type=float, default=0.5, help="the pack's default")
    ap.add_argument("--workers", type=int, default=2, help="workers of the first (uncached) LFW embedding pass")
    ap.add_argument("--cache", type=Path, default=calibration.DEFAULT_CACHE)
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    commit = calibration.git_commit()  # at the start: the code that runs
    lfw = require_lfw(args.lfw)
    people = list_people(lfw)
    E = calibration.embed_lfw(lfw, args.cache, "sface-flip", args.workers)
    row = {r: i for i, r in enumerate(E.rel_paths)}
    protocols: dict[str, tuple[dict[str, list[str]], dict[str, str], list[str]]] = {
        p: choose_protocol(people, p, args.people, args.strangers, args.seed, args.min_photos, args.enroll)
        for p in ("sampled", "dataset")}
    multi = sorted(p for p, ims in people.items() if len(ims) >= 2)
    protocols["open-set"] = ({p: people[p][:-1][:args.enroll] for p in multi}, {p: people[p][-1] for p in multi},
                             sorted(p for p, ims in people.items() if len(ims) == 1))
    rels = sorted({r for _, held, st in protocols.values() for r in list(held.values()) + [people[p][0] for p in st]})
    engine = load_engine("sface-flip")
    key = hashlib.sha256(json.dumps([engine.info.fingerprint, WARPS, rels]).encode()).hexdigest()[:16]
    file = args.cache / f"crop-tta-{key}.npz"
    if file.is_file():
        z = np.load(file)
        feats, ms = z["feats"], float(z["ms"])
    else:
        feats, ms = warp_features(engine, lfw, rels)
        args.cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        np.savez(file, feats=feats, ms=ms)
    at = {r: i for i, r in enumerate(rels)}
    flip = variant_vectors(feats, "flip")
    cached = np.stack([E.emb[row[r]] for r in rels])
    both = np.isfinite(flip[:, 0]) & np.isfinite(cached[:, 0])
    same_as_photo = float(np.abs(flip[both] - cached[both]).max())
    results: dict[str, Any] = {}
    for name, (enrolled, held, strangers) in protocols.items():
        subjects = list(enrolled)
        faces, lab = [], []
        for j, p in enumerate(subjects):
            for r in enrolled[p]:
                if np.isfinite(E.emb[row[r], 0]):
                    faces.append(E.emb[row[r]])
                    lab.append(j)
        F, L = np.stack(faces), np.asarray(lab)
        sums = np.zeros((len(subjects), F.shape[1]), np.float64)
        np.add.at(sums, L, F)
        T = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
        probe_rels = [held[p] for p in subjects] + [people[p][0] for p in strangers]
        truth: list[int | None] = [*range(len(subjects)), *([None] * len(strangers))]
        idx = [at[r] for r in probe_rels]
        results[name] = {"people": len(subjects), "strangers": len(strangers),
                         "variants": {v: evaluate(T, F, L, variant_vectors(feats[idx], v), truth, args.threshold)
                                      for v in VARIANTS}}
    R = {"threshold": args.threshold, "seed": args.seed, "crops": len(rels), "ms_per_crop_all_warps": round(ms, 1),
         "flip_vs_photo_max_abs_diff": same_as_photo, "commit": commit, "protocols": results,
         "variants": {k: [list(w) for w in v] for k, v in VARIANTS.items()}}
    lines = [
        "| protocol | variant (warps) | scoring | mated named right | wrong | unknown | strangers named | "
        "mean mated distance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for v, by in r["variants"].items():
            for scoring, c in by.items():
                lines.append(f"| {name} ({r['people']} people, {r['strangers']} strangers) | {v} "
                             f"({len(VARIANTS[v])}) | {scoring} | {c['right'] / c['mated']:.2%} ({c['right']}) | "
                             f"{c['wrong']} | {c['unknown'] + c['no_face']} | {c['strangers_named']} "
                             f"({c['strangers_named'] / max(1, c['strangers']):.2%}) | {c['mated_mean_distance']} |")
    lines += ["", f"{len(rels)} crops; embedding all {len(WARPS)} warps with their mirrors: {ms:.0f} ms per crop; "
                  f"the plain variant differs from the photo path's vector by at most {same_as_photo:.1e}; "
                  f"commit {R['commit']}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(R, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
