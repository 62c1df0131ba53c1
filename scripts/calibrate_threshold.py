#!/usr/bin/env python
"""Calibrate the sface pack's default 1:N match threshold on LFW.

Steps:

1. Embed every LFW image once with the ``sface`` engine (largest face; images with no face are
   recorded) using a pool of worker processes, each with its own engine and
   ``cv2.setNumThreads(1)``. Embeddings are cached as .npy under ``--cache``, keyed by the
   engine fingerprint, so later runs take seconds.
2. Verification: the official ``pairs.txt`` 10-fold accuracy (threshold chosen on 9 folds,
   tested on the 10th). Pairs with an undetected image are counted as **wrong**.
3. Open-set identification (what facedb does): people are split by seed into a calibration
   half and a report half. People with >= 2 detected images give a gallery (all images but one
   held-out probe) and mated probes; people with one image, and gallery-eligible people left
   out of a smaller gallery, are strangers. The threshold (and optionally a best-vs-second
   margin) with FPIR <= target on the calibration part and the lowest FNIR is chosen and then
   measured on the report part at several gallery sizes. Two designs:

   * ``halves``: each half has its own gallery (LFW allows only ~840 people per half);
   * ``full``: one gallery of every person with >= 2 images (~1,680), whose held-out probes
     are split by person into calibration/report, with single-image strangers split likewise.

Usage::

    python scripts/calibrate_threshold.py --cache /tmp/facedb-lfw-cache --json lfw.json
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from facedb.evaluation import metrics as M  # noqa: E402

DEFAULT_LFW = ROOT.parent / "shared" / "datasets" / "lfw"
if not DEFAULT_LFW.is_dir():
    DEFAULT_LFW = Path("/work/shared/datasets/lfw")


# -- embedding pass -------------------------------------------------------------------------

_ENGINE: Any = None


def _init_worker(pack: str) -> None:
    import cv2

    cv2.setNumThreads(1)
    global _ENGINE
    from facedb.engine import load_engine

    _ENGINE = load_engine(pack)


def _embed_one(path: str) -> tuple[np.ndarray | None, np.ndarray | None, int, float, str]:
    """(largest face's embedding, most central face's embedding, n faces, seconds, error)."""
    from facedb import imaging
    from facedb.errors import ImageError

    t0 = time.perf_counter()
    try:
        im = imaging.load(path)
        faces = _ENGINE.analyze(im.pixels)
    except ImageError as exc:
        return None, None, 0, time.perf_counter() - t0, str(exc)
    dt = time.perf_counter() - t0
    if not faces:
        return None, None, 0, dt, ""
    h, w = im.pixels.shape[:2]
    off = [math.hypot((f.bbox[0] + f.bbox[2]) / 2 - w / 2, (f.bbox[1] + f.bbox[3]) / 2 - h / 2) for f in faces]
    central = faces[int(np.argmin(off))]
    return faces[0].embedding.astype(np.float32), central.embedding.astype(np.float32), len(faces), dt, ""


@dataclass
class Embeddings:
    rel_paths: list[str]  # "<Person>/<Person>_NNNN.jpg"
    people: list[str]
    emb: np.ndarray  # (n, dim) float32, largest face; NaN rows where no face
    emb_central: np.ndarray  # (n, dim) float32, face nearest the image centre (LFW's labelled face)
    n_faces: np.ndarray  # (n,) int
    seconds: np.ndarray  # (n,) compute seconds per image in its worker (load + analyze)
    wall_seconds: float
    workers: int
    fingerprint: str
    cached: bool = False

    @property
    def detected(self) -> np.ndarray:
        return np.isfinite(self.emb[:, 0])


def list_images(lfw: Path) -> list[str]:
    out = []
    for person in sorted(p.name for p in lfw.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted((lfw / person).iterdir()):
            if f.suffix.lower() == ".jpg":
                out.append(f"{person}/{f.name}")
    return out


def embed_lfw(lfw: Path, cache: Path, pack: str, workers: int, limit: int | None) -> Embeddings:
    from facedb.engine import load_engine

    fingerprint = load_engine(pack).info.fingerprint
    rel = list_images(lfw)
    if limit:
        rel = rel[:limit]
    tag = f"{pack}-{fingerprint[:12]}-n{len(rel)}"
    cache.mkdir(parents=True, exist_ok=True)
    f_emb, f_meta = cache / f"{tag}-embeddings.npy", cache / f"{tag}-meta.json"
    f_nf, f_sec = cache / f"{tag}-nfaces.npy", cache / f"{tag}-seconds.npy"
    f_cen = cache / f"{tag}-embeddings-central.npy"
    if all(f.is_file() for f in (f_emb, f_meta, f_nf, f_sec, f_cen)):
        meta = json.loads(f_meta.read_text())
        if meta.get("rel_paths") == rel and meta.get("fingerprint") == fingerprint:
            print(f"[embed] using cached embeddings {f_emb}", flush=True)
            return Embeddings(rel, [r.split("/")[0] for r in rel], np.load(f_emb), np.load(f_cen), np.load(f_nf),
                              np.load(f_sec), meta["wall_seconds"], meta["workers"], fingerprint, cached=True)
    print(f"[embed] {len(rel)} images with {workers} worker(s)...", flush=True)
    dim = load_engine(pack).info.dim
    emb = np.full((len(rel), dim), np.nan, dtype=np.float32)
    emb_c = emb.copy()
    n_faces = np.zeros(len(rel), dtype=np.int64)
    seconds = np.zeros(len(rel))
    errors: dict[str, str] = {}
    paths = [str(lfw / r) for r in rel]
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(pack,)) as pool:
        for i, (vec, vec_c, nf, dt, err) in enumerate(pool.imap(_embed_one, paths, chunksize=16)):
            if vec is not None:
                emb[i], emb_c[i] = vec, vec_c
            n_faces[i], seconds[i] = nf, dt
            if err:
                errors[rel[i]] = err
            if (i + 1) % 1000 == 0:
                el = time.perf_counter() - t0
                print(f"[embed] {i + 1}/{len(rel)}  {el:.0f}s  ({el / (i + 1) * 1000:.1f} ms/image wall)", flush=True)
    wall = time.perf_counter() - t0
    np.save(f_emb, emb)
    np.save(f_cen, emb_c)
    np.save(f_nf, n_faces)
    np.save(f_sec, seconds)
    f_meta.write_text(json.dumps({"rel_paths": rel, "fingerprint": fingerprint, "pack": pack,
                                  "wall_seconds": wall, "workers": workers, "errors": errors}))
    return Embeddings(rel, [r.split("/")[0] for r in rel], emb, emb_c, n_faces, seconds, wall, workers, fingerprint)


# -- LFW pairs ------------------------------------------------------------------------------


def read_pairs(path: Path) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    lines = path.read_text().splitlines()
    n_folds, n_per = (int(v) for v in lines[0].split())
    pairs, same, folds = [], [], []
    rows = [ln.split("\t") for ln in lines[1:] if ln.strip()]
    if len(rows) != n_folds * 2 * n_per:
        raise ValueError(f"{path}: expected {n_folds * 2 * n_per} pairs, found {len(rows)}")
    for k, r in enumerate(rows):
        if len(r) == 3:
            a, b = f"{r[0]}/{r[0]}_{int(r[1]):04d}.jpg", f"{r[0]}/{r[0]}_{int(r[2]):04d}.jpg"
            s = True
        elif len(r) == 4:
            a, b = f"{r[0]}/{r[0]}_{int(r[1]):04d}.jpg", f"{r[2]}/{r[2]}_{int(r[3]):04d}.jpg"
            s = False
        else:
            raise ValueError(f"{path}: bad line {r!r}")
        pairs.append((a, b))
        same.append(s)
        folds.append(k // (2 * n_per))
    return pairs, np.array(same), np.array(folds)


def verification(E: Embeddings, lfw: Path) -> dict[str, Any]:
    pairs, same, folds = read_pairs(lfw / "pairs.txt")
    index = {r: i for i, r in enumerate(E.rel_paths)}
    ia = np.array([index[a] for a, _ in pairs])
    ib = np.array([index[b] for _, b in pairs])
    d = 1.0 - np.sum(E.emb[ia].astype(np.float64) * E.emb[ib], axis=1)  # NaN if a face is missing
    missing = ~np.isfinite(d)
    cv = M.lfw_10fold_accuracy(d, same, folds)
    ok = ~missing
    cv_det = M.lfw_10fold_accuracy(d[ok], same[ok], folds[ok])
    thr_all, acc_all = M.best_accuracy_threshold(d, same)
    e, e_thr = M.eer(d[same], d[~same])
    tar3, tar3_thr = M.tar_at_far(d[same], d[~same], 1e-3)
    tar2, tar2_thr = M.tar_at_far(d[same], d[~same], 1e-2)
    imgs_in_pairs = sorted({x for p in pairs for x in p})
    undetected_in_pairs = [x for x in imgs_in_pairs if not E.detected[index[x]]]
    return {
        "n_pairs": int(d.size),
        "n_pairs_with_undetected_image": int(missing.sum()),
        "n_same_pairs_with_undetected_image": int((missing & same).sum()),
        "undetected_images_in_pairs": undetected_in_pairs,
        "accuracy_mean": cv.mean,
        "accuracy_std": cv.std,
        "fold_accuracies": cv.accuracies.tolist(),
        "fold_thresholds": cv.thresholds.tolist(),
        "accuracy_mean_detected_pairs_only": cv_det.mean,
        "accuracy_std_detected_pairs_only": cv_det.std,
        "best_threshold_all_pairs": thr_all,
        "best_accuracy_all_pairs_in_sample": acc_all,
        "eer": e,
        "eer_threshold": e_thr,
        "tar_at_far_1e-3": tar3,
        "tar_at_far_1e-3_threshold": tar3_thr,
        "tar_at_far_1e-2": tar2,
        "tar_at_far_1e-2_threshold": tar2_thr,
    }


# -- open-set identification ----------------------------------------------------------------


@dataclass
class Split:
    people_multi: list[str]  # >= 2 detected images, in a seeded order
    half_of: dict[str, int]  # person -> 0 (calibration) or 1 (report)
    probe_of: dict[str, int]  # multi person -> held-out image index
    enroll_of: dict[str, list[int]]  # multi person -> enrolled image indices
    singles: list[str]  # exactly one detected image
    single_img: dict[str, int]
    n_people_no_face: int


def make_split(E: Embeddings, seed: int, max_enroll: int) -> Split:
    rng = np.random.default_rng(seed)
    by_person: dict[str, list[int]] = {}
    all_people: set[str] = set()
    for i, p in enumerate(E.people):
        all_people.add(p)
        if E.detected[i]:
            by_person.setdefault(p, []).append(i)
    multi = sorted(p for p, v in by_person.items() if len(v) >= 2)
    singles = sorted(p for p, v in by_person.items() if len(v) == 1)
    half_of: dict[str, int] = {}
    for group in (multi, singles):  # stratified: both halves get ~half of each kind
        perm = rng.permutation(len(group))
        for rank, j in enumerate(perm):
            half_of[group[j]] = 0 if rank < (len(group) + 1) // 2 else 1
    probe_of, enroll_of = {}, {}
    for p in multi:
        idx = by_person[p]
        k = int(rng.integers(len(idx)))
        probe_of[p] = idx[k]
        rest = idx[:k] + idx[k + 1:]
        if max_enroll and len(rest) > max_enroll:
            rest = sorted(rng.choice(rest, size=max_enroll, replace=False).tolist())
        enroll_of[p] = rest
    order = [multi[j] for j in rng.permutation(len(multi))]  # nested galleries take prefixes
    return Split(order, half_of, probe_of, enroll_of, singles, {p: by_person[p][0] for p in singles},
                 len(all_people) - len(by_person))


@dataclass
class Part:
    """One gallery with calibration and report probe sets."""

    gallery_size: int
    scores: dict[str, M.SubjectScores]  # "calib" / "report"
    labels: dict[str, list[str]]
    n_gallery_images: int


def build_part(E: Embeddings, S: Split, gallery_people: list[str], probe_people: dict[str, list[str]],
               singles: dict[str, list[str]]) -> Part:
    g_idx = [i for p in gallery_people for i in S.enroll_of[p]]
    g_lab = [E.people[i] for i in g_idx]
    scores, labels = {}, {}
    for part in ("calib", "report"):
        p_idx = [S.probe_of[p] for p in probe_people[part]] + [S.single_img[p] for p in singles[part]]
        lab = [E.people[i] for i in p_idx]
        scores[part] = M.subject_scores(E.emb[g_idx], g_lab, E.emb[p_idx])
        labels[part] = lab
    return Part(len(gallery_people), scores, labels, len(g_idx))


def _point(part: Part, which: str, thr: float, margin: float | None) -> dict[str, Any]:
    r = M.open_set_from_scores(part.scores[which], part.labels[which], thr, margin)
    return {"fpir": r.fpir, "fnir": r.fnir, "n_mated": r.n_mated, "n_strangers": r.n_nonmated,
            "strangers_named": r.n_nonmated_named, "mated_misnamed": r.n_mated_misnamed,
            "mated_unknown": r.n_mated_unknown}


def calibrate(part: Part, target: float, margins: list[float]) -> dict[str, Any]:
    """Best threshold without margin, and best (threshold, margin) pair, on the calibration probes."""
    sc, lab = part.scores["calib"], part.labels["calib"]
    plain = M.threshold_for_fpir_from_scores(sc, lab, target, None)
    grid = []
    for m in margins:
        c = M.threshold_for_fpir_from_scores(sc, lab, target, m)
        grid.append({"margin": m, "threshold": c.threshold, "fpir": c.fpir, "fnir": c.fnir})
    best = min(grid, key=lambda g: (g["fnir"], g["margin"]))
    return {"plain": {"threshold": plain.threshold, "fpir": plain.fpir, "fnir": plain.fnir},
            "with_margin": best, "margin_grid": grid}


def floor2(x: float) -> float:
    return math.floor(x * 100 + 1e-9) / 100 if math.isfinite(x) else x


def run_design(name: str, E: Embeddings, S: Split, sizes: list[int | str], target: float,
               margins: list[float], ref_thresholds: dict[str, float]) -> dict[str, Any]:
    if name == "halves":
        pools = {h: [p for p in S.people_multi if S.half_of[p] == h] for h in (0, 1)}
        max_size = min(len(pools[0]), len(pools[1]))
    else:
        max_size = len(S.people_multi)
    singles = {"calib": [p for p in S.singles if S.half_of[p] == 0],
               "report": [p for p in S.singles if S.half_of[p] == 1]}

    def part_for(n: int) -> Part:
        if name == "halves":
            # Two independent galleries: one per half. Store calib gallery scores under "calib"
            # and report gallery scores under "report".
            parts = {}
            for h, which in ((0, "calib"), (1, "report")):
                gal = pools[h][:n]
                withheld = pools[h][n:]
                pp = {"calib": [], "report": []}
                pp[which] = gal + withheld
                sg = {"calib": [], "report": []}
                sg[which] = singles[which]
                parts[which] = build_part(E, S, gal, pp, sg)
            return Part(n, {w: parts[w].scores[w] for w in parts}, {w: parts[w].labels[w] for w in parts},
                        parts["report"].n_gallery_images)
        gal = S.people_multi[:n]
        pp = {"calib": [p for p in S.people_multi if S.half_of[p] == 0],
              "report": [p for p in S.people_multi if S.half_of[p] == 1]}
        return build_part(E, S, gal, pp, singles)

    wanted = sorted({min(max_size, int(s)) if s != "max" else max_size for s in sizes})
    out: dict[str, Any] = {"max_gallery_size": max_size, "by_size": {}}
    parts = {n: part_for(n) for n in wanted}
    big = parts[max_size]
    cal = calibrate(big, target, margins)
    out["calibrated_at_gallery_size"] = max_size
    out["calibration"] = cal
    rec_plain = floor2(cal["plain"]["threshold"])
    wm = cal["with_margin"]
    rec_m_thr, rec_m = floor2(wm["threshold"]), wm["margin"]
    out["recommended"] = {"threshold": rec_plain, "threshold_with_margin": rec_m_thr, "margin": rec_m}
    for n in wanted:
        part = parts[n]
        row: dict[str, Any] = {"gallery_images": part.n_gallery_images}
        # per-size calibration, for reference (how the 1 % threshold moves with gallery size)
        c = M.threshold_for_fpir_from_scores(part.scores["calib"], part.labels["calib"], target, None)
        row["calib_threshold_at_this_size"] = c.threshold
        row["calib"] = {
            "exact_threshold": _point(part, "calib", cal["plain"]["threshold"], None),
            "recommended": _point(part, "calib", rec_plain, None),
            "recommended_with_margin": _point(part, "calib", rec_m_thr, rec_m),
        }
        row["report"] = {
            "exact_threshold": _point(part, "report", cal["plain"]["threshold"], None),
            "recommended": _point(part, "report", rec_plain, None),
            "recommended_with_margin": _point(part, "report", rec_m_thr, rec_m),
            "exact_threshold_with_margin": _point(part, "report", wm["threshold"], rec_m),
        }
        for ref_name, t in ref_thresholds.items():
            row["report"][ref_name] = _point(part, "report", t, None)
        out["by_size"][str(n)] = row
    # sweep on the report probes at the largest gallery, for docs / plots
    sweep = []
    for t in np.round(np.arange(0.20, 0.80001, 0.02), 2):
        sweep.append({"threshold": float(t), **_point(big, "report", float(t), None)})
    out["report_sweep_max_gallery"] = sweep
    return out


# -- report ---------------------------------------------------------------------------------


def pct(x: float) -> str:
    return "  n/a " if x is None or not math.isfinite(x) else f"{100 * x:5.2f}%"


def print_report(R: dict[str, Any]) -> None:
    em = R["embedding"]
    print("\n=== facedb threshold calibration on LFW (pack %s) ===" % R["pack"])
    print(f"images: {em['n_images']} of {em['n_people']} people; no face detected in {em['n_undetected']} "
          f"({', '.join(em['undetected'][:8])}{' ...' if em['n_undetected'] > 8 else ''})")
    print(f"images with >1 face: {em['n_multi_face']}; {R['face']} face used; in {em['n_largest_not_central']} "
          "images the largest face is not the one nearest the centre (LFW's labelled face)")
    print(f"time: {em['ms_per_image_compute']:.1f} ms/image (median {em['ms_per_image_compute_median']:.1f}) of "
          "compute per worker (decode + detect + embed every face), "
          f"{em['ms_per_image_wall']:.1f} ms/image wall with {em['workers']} workers"
          + (" (cached run: timings from the original pass)" if em.get("cached") else ""))
    v = R["verification"]
    print("\n-- 1:1 verification, LFW pairs.txt, 10-fold --")
    print(f"accuracy {100 * v['accuracy_mean']:.2f} % ± {100 * v['accuracy_std']:.2f} "
          f"(pairs with an undetected image: {v['n_pairs_with_undetected_image']}, counted as WRONG)")
    print(f"  detected pairs only: {100 * v['accuracy_mean_detected_pairs_only']:.2f} % ± "
          f"{100 * v['accuracy_std_detected_pairs_only']:.2f}")
    ft = np.array(v["fold_thresholds"])
    print(f"  fold thresholds {ft.min():.3f}..{ft.max():.3f} (mean {ft.mean():.3f}); best on all pairs "
          f"{v['best_threshold_all_pairs']:.3f}")
    print(f"  EER {pct(v['eer'])} at {v['eer_threshold']:.3f};  TAR@FAR=1e-3 {pct(v['tar_at_far_1e-3'])} "
          f"(thr {v['tar_at_far_1e-3_threshold']:.3f});  TAR@FAR=1e-2 {pct(v['tar_at_far_1e-2'])} "
          f"(thr {v['tar_at_far_1e-2_threshold']:.3f})")
    if "precision_at_2" in R:
        print(f"  tutorial protocol on LFW (one probe/person, rest enrolled): precision@2 = {R['precision_at_2']:.3f}")
    o = R["open_set"]
    sp = o["split"]
    print("\n-- 1:N open-set identification --")
    print(f"people with >=2 detected images: {sp['n_multi']} (calib half {sp['n_multi_calib']}, report half "
          f"{sp['n_multi_report']}); single-image people (strangers): {sp['n_singles']} "
          f"(calib {sp['n_singles_calib']}, report {sp['n_singles_report']}); people with no detected face: "
          f"{sp['n_people_no_face']}; seed {R['seed']}; target FPIR {pct(R['target_fpir'])}; "
          f"enrol {'all but one' if not R['max_enroll'] else 'up to %d' % R['max_enroll']} images/person")
    for name, D in o["designs"].items():
        cal = D["calibration"]
        rec = D["recommended"]
        title = {"halves": "design 'halves': separate galleries per half",
                 "full": "design 'full': one gallery of all >=2-image people, probes/strangers split"}[name]
        print(f"\n[{title}] max gallery {D['max_gallery_size']} people")
        if name == "halves" and D["max_gallery_size"] < 1000:
            print(f"  NOTE: a half holds only {D['max_gallery_size']} gallery-eligible people (< 1000); "
                  "see design 'full' for a >= 1000 gallery")
        print(f"  calibrated at gallery {D['calibrated_at_gallery_size']}: threshold {cal['plain']['threshold']:.4f} "
              f"-> calib FPIR {pct(cal['plain']['fpir'])} FNIR {pct(cal['plain']['fnir'])}")
        wm = cal["with_margin"]
        print(f"  best with margin: threshold {wm['threshold']:.4f} margin {wm['margin']:.2f} -> calib FPIR "
              f"{pct(wm['fpir'])} FNIR {pct(wm['fnir'])}")
        print(f"  recommended (floored to 0.01): threshold {rec['threshold']:.2f}; with margin: "
              f"{rec['threshold_with_margin']:.2f} + margin {rec['margin']:.2f}")
        refs = [k for k in next(iter(D["by_size"].values()))["report"] if k.startswith("ref_")]
        hdr = f"  {'gallery':>7} {'calib@size':>10} | {'thr ' + format(rec['threshold'], '.2f'):^15} | " \
              f"{'+margin ' + format(rec['margin'], '.2f'):^15} | " + " | ".join(f"{r[4:]:^15}" for r in refs)
        print("  REPORT split, FPIR / FNIR:")
        print(hdr)
        for n, row in D["by_size"].items():
            rp = row["report"]
            cells = [f"{pct(rp['recommended']['fpir'])}/{pct(rp['recommended']['fnir'])}",
                     f"{pct(rp['recommended_with_margin']['fpir'])}/{pct(rp['recommended_with_margin']['fnir'])}"]
            cells += [f"{pct(rp[r]['fpir'])}/{pct(rp[r]['fnir'])}" for r in refs]
            print(f"  {n:>7} {row['calib_threshold_at_this_size']:>10.4f} | " + " | ".join(f"{c:^15}" for c in cells))
        nmax = str(D["max_gallery_size"])
        r = D["by_size"][nmax]["report"]["recommended"]
        print(f"  at gallery {nmax}, thr {rec['threshold']:.2f}: {r['strangers_named']}/{r['n_strangers']} strangers "
              f"named; {r['mated_misnamed']} enrolled probes misnamed + {r['mated_unknown']} unknown of {r['n_mated']}")


def _jsonable(o: Any) -> Any:
    """Plain JSON: numpy values to Python, non-finite floats to null."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def seed_robustness(E: Embeddings, seeds: list[int], target: float, max_enroll: int, margins: list[float],
                    fixed: list[float]) -> dict[str, Any]:
    """Design 'full' re-run for several split seeds: calibrated threshold and report-split rates."""
    per_seed = []
    for sd in seeds:
        S = make_split(E, sd, max_enroll)
        refs = {f"fixed_{t:.2f}": t for t in fixed}
        D = run_design("full", E, S, [1000, "max"], target, margins, refs)
        cal = D["calibration"]
        nmax = str(D["max_gallery_size"])
        row = {"seed": sd, "threshold": cal["plain"]["threshold"], "calib_fnir": cal["plain"]["fnir"],
               "margin": cal["with_margin"]["margin"], "margin_threshold": cal["with_margin"]["threshold"],
               "calib_fnir_with_margin": cal["with_margin"]["fnir"], "report": {}}
        for n in ("1000", nmax):
            rp = D["by_size"][n]["report"]
            row["report"][n] = {
                "exact": rp["exact_threshold"], "exact_with_margin": rp["exact_threshold_with_margin"],
                **{k: rp[k] for k in refs},
            }
        per_seed.append(row)
    thr = np.array([r["threshold"] for r in per_seed])
    return {"seeds": seeds, "per_seed": per_seed, "threshold_median": float(np.median(thr)),
            "threshold_min": float(thr.min()), "threshold_max": float(thr.max()),
            "gallery_sizes": ["1000", str(len(make_split(E, seeds[0], max_enroll).people_multi))]}


def summarise(rows: list[dict[str, Any]], size: str, key: str) -> dict[str, float]:
    f = np.array([r["report"][size][key]["fpir"] for r in rows])
    n = np.array([r["report"][size][key]["fnir"] for r in rows])
    return {"fpir_mean": float(f.mean()), "fpir_min": float(f.min()), "fpir_max": float(f.max()),
            "fnir_mean": float(n.mean()), "fnir_min": float(n.min()), "fnir_max": float(n.max())}


def print_robustness(R: dict[str, Any]) -> None:
    rb = R["robustness"]
    rows = rb["per_seed"]
    print(f"\n-- robustness: design 'full' over {len(rows)} split seeds {rb['seeds'][0]}..{rb['seeds'][-1]} --")
    print(f"calibrated threshold (FPIR <= {pct(R['target_fpir'])} on calib, gallery max): median "
          f"{rb['threshold_median']:.4f}, range {rb['threshold_min']:.4f}..{rb['threshold_max']:.4f}")
    m = np.array([r["calib_fnir"] - r["calib_fnir_with_margin"] for r in rows])
    print(f"margin rule: calib FNIR gain of the best margin over none: mean {100 * m.mean():.2f} points "
          f"(margins chosen: {sorted({r['margin'] for r in rows})})")
    for size in rb["gallery_sizes"]:
        e = summarise(rows, size, "exact")
        em = summarise(rows, size, "exact_with_margin")
        print(f"  gallery {size:>5}: own calibrated threshold -> report FPIR {pct(e['fpir_mean'])} "
              f"({pct(e['fpir_min'])}..{pct(e['fpir_max'])}), FNIR {pct(e['fnir_mean'])} "
              f"({pct(e['fnir_min'])}..{pct(e['fnir_max'])});  with best margin: FPIR {pct(em['fpir_mean'])} "
              f"FNIR {pct(em['fnir_mean'])}")
    print("  fixed thresholds, REPORT split, mean (min..max) over seeds:")
    keys = [k for k in rows[0]["report"][rb["gallery_sizes"][0]] if k.startswith("fixed_")]
    for k in keys:
        cells = []
        for size in rb["gallery_sizes"]:
            e = summarise(rows, size, k)
            cells.append(f"gallery {size:>5}: FPIR {pct(e['fpir_mean'])} ({pct(e['fpir_min'])}..{pct(e['fpir_max'])}) "
                         f"FNIR {pct(e['fnir_mean'])} ({pct(e['fnir_min'])}..{pct(e['fnir_max'])})")
        print(f"   {k[6:]}  " + "   ".join(cells))
    rec = R["recommendation"]
    print(f"\nRECOMMENDED default threshold: {rec['threshold']:.2f} (median calibrated threshold over seeds, floored "
          f"to 0.01); margin rule: {'worth it' if rec['margin_worth_it'] else 'not worth it'}")
    for size, v in rec["report"].items():
        print(f"  gallery {size:>5}: report FPIR {pct(v['fpir_mean'])} ({pct(v['fpir_min'])}..{pct(v['fpir_max'])}), "
              f"FNIR {pct(v['fnir_mean'])} ({pct(v['fnir_min'])}..{pct(v['fnir_max'])})")


def print_sensitivity(R: dict[str, Any]) -> None:
    sv = R.get("sensitivity")
    if not sv:
        return
    print(f"\n-- sensitivity: embeddings of the {sv['face']} face instead "
          f"({sv['n_images_differing']} images pick a different face) --")
    print(f"LFW 10-fold accuracy {100 * sv['accuracy_mean']:.2f} % ± {100 * sv['accuracy_std']:.2f}; "
          f"1:1 best threshold {sv['best_threshold_all_pairs']:.3f}")
    for size, v in sv["report"].items():
        print(f"  gallery {size:>5} at {R['recommendation']['threshold']:.2f}: report FPIR {pct(v['fpir_mean'])}, "
              f"FNIR {pct(v['fnir_mean'])} (mean over seeds)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder (with pairs.txt)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/facedb-lfw-cache"), help="embedding cache dir")
    ap.add_argument("--pack", default="sface")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--face", choices=("largest", "central"), default="largest",
                    help="which face of a multi-face image is used (the product uses the largest; LFW "
                         "labels the central one); the other is reported as a sensitivity check")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=10, help="split seeds for the robustness section")
    ap.add_argument("--target-fpir", type=float, default=0.01)
    ap.add_argument("--gallery-sizes", default="100,500,1000,max")
    ap.add_argument("--margins", default="0,0.01,0.02,0.03,0.04,0.05,0.06,0.08,0.10,0.12,0.15,0.20",
                    help="margins (second-best minus best subject distance) tried with the threshold; "
                         "0 is the same as no margin rule")
    ap.add_argument("--max-enroll", type=int, default=0, help="cap on enrolled images per person (0: all but one)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (smoke test)")
    ap.add_argument("--json", type=Path, default=None, help="write every number as JSON here")
    a = ap.parse_args(argv)
    t_run = time.perf_counter()

    E = embed_lfw(a.lfw, a.cache, a.pack, a.workers, a.limit)
    differing = int(np.sum(np.any(E.emb != E.emb_central, axis=1) & E.detected))
    if a.face == "central":
        E.emb, E.emb_central = E.emb_central, E.emb
    from facedb.engine import load_engine

    current = float(load_engine(a.pack).info.threshold)
    det = E.detected
    R: dict[str, Any] = {"pack": a.pack, "fingerprint": E.fingerprint, "seed": a.seed, "face": a.face,
                         "target_fpir": a.target_fpir, "max_enroll": a.max_enroll}
    R["embedding"] = {
        "n_images": len(E.rel_paths), "n_people": len(set(E.people)), "n_undetected": int((~det).sum()),
        "undetected": [r for r, d in zip(E.rel_paths, det) if not d],
        "n_multi_face": int((E.n_faces > 1).sum()), "n_largest_not_central": differing,
        "ms_per_image_compute": 1000 * float(E.seconds.mean()),
        "ms_per_image_compute_median": 1000 * float(np.median(E.seconds)),
        "ms_per_image_wall": 1000 * E.wall_seconds / len(E.rel_paths),
        "wall_seconds": E.wall_seconds, "workers": E.workers, "cached": E.cached,
    }
    R["verification"] = verification(E, a.lfw) if a.limit is None else None
    ok = np.flatnonzero(det)
    R["precision_at_2"] = M.precision_at_k(E.emb[ok], [E.people[i] for i in ok], k=2, seed=a.seed)

    S = make_split(E, a.seed, a.max_enroll)
    sizes: list[int | str] = [s if s == "max" else int(s) for s in a.gallery_sizes.split(",")]
    margins = [float(m) for m in a.margins.split(",") if m]
    refs = {f"ref_current_{current:.2f}": current}
    if R["verification"]:
        refs["ref_1:1_best_%.3f" % R["verification"]["best_threshold_all_pairs"]] = \
            R["verification"]["best_threshold_all_pairs"]
    n_mc = sum(S.half_of[p] == 0 for p in S.people_multi)
    n_sc = sum(S.half_of[p] == 0 for p in S.singles)
    R["open_set"] = {
        "split": {"n_multi": len(S.people_multi), "n_multi_calib": n_mc, "n_multi_report": len(S.people_multi) - n_mc,
                  "n_singles": len(S.singles), "n_singles_calib": n_sc, "n_singles_report": len(S.singles) - n_sc,
                  "n_people_no_face": S.n_people_no_face},
        "designs": {d: run_design(d, E, S, sizes, a.target_fpir, margins, refs) for d in ("halves", "full")},
    }
    if R["verification"] and a.repeats > 0:
        seeds = list(range(a.seed, a.seed + a.repeats))
        base = R["open_set"]["designs"]["full"]["recommended"]["threshold"]
        fixed = sorted({round(base + k / 100, 2) for k in range(-3, 4)})
        rb = seed_robustness(E, seeds, a.target_fpir, a.max_enroll, margins, fixed)
        rec = floor2(rb["threshold_median"])
        if f"fixed_{rec:.2f}" not in rb["per_seed"][0]["report"]["1000"]:  # make sure it is measured
            rb = seed_robustness(E, seeds, a.target_fpir, a.max_enroll, margins, sorted(set(fixed) | {rec}))
        R["robustness"] = rb
        rows = rb["per_seed"]
        gain = float(np.mean([r["calib_fnir"] - r["calib_fnir_with_margin"] for r in rows]))
        R["recommendation"] = {
            "threshold": rec,
            "margin_worth_it": gain >= 0.005,  # at least half a point of FNIR at the same FPIR budget
            "margin_mean_calib_fnir_gain": gain,
            "report": {size: summarise(rows, size, f"fixed_{rec:.2f}") for size in rb["gallery_sizes"]},
        }
        # sensitivity: the other face choice, same seeds, at the recommended threshold
        E2 = Embeddings(E.rel_paths, E.people, E.emb_central, E.emb, E.n_faces, E.seconds, E.wall_seconds,
                        E.workers, E.fingerprint, E.cached)
        v2 = verification(E2, a.lfw)
        rb2 = seed_robustness(E2, seeds, a.target_fpir, a.max_enroll, [0.0], [rec])
        R["sensitivity"] = {
            "face": "central" if a.face == "largest" else "largest",
            "n_images_differing": differing,
            "accuracy_mean": v2["accuracy_mean"], "accuracy_std": v2["accuracy_std"],
            "best_threshold_all_pairs": v2["best_threshold_all_pairs"],
            "calibrated_threshold_median": rb2["threshold_median"],
            "report": {size: summarise(rb2["per_seed"], size, f"fixed_{rec:.2f}") for size in rb2["gallery_sizes"]},
        }
    R["run_seconds"] = time.perf_counter() - t_run
    if R["verification"]:
        print_report(R)
        if "robustness" in R:
            print_robustness(R)
            print_sensitivity(R)
        print(f"\nembedding pass {R['embedding']['wall_seconds']:.0f} s; total run {R['run_seconds']:.0f} s")
    else:
        print(json.dumps({k: R[k] for k in ("embedding", "precision_at_2")}, indent=1, default=str))
    if a.json:
        a.json.write_text(json.dumps(_jsonable(R), indent=1, allow_nan=False))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
