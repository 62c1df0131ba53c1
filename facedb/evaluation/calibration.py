"""The threshold calibration protocol on LFW: a pack's default 1:N match threshold, for one
subject scoring rule, calibrated on half of LFW's people and reported on the other half.

``scripts/calibrate_threshold.py`` is its command line (``run`` + ``print_all`` + ``markdown``);
the experiments under ``scripts/experiments`` reuse the splits and the robustness loop.

Steps:

1. Embed every LFW image once through facedb's own pipeline (``facedb.evaluation.runner.embed``:
   ``facedb.analysis.pipeline.Analyzer`` workers, the largest face, and the face nearest the image centre
   for the sensitivity check; images with no face are recorded). The embeddings are cached under
   ``--cache`` (one file per pack, fingerprint and file list), so later runs take seconds.
2. Verification: the official ``pairs.txt`` 10-fold accuracy (``facedb.evaluation.lfw``;
   threshold chosen on 9 folds, tested on the 10th). Pairs with an undetected image count as
   **wrong**.
3. Open-set identification (what facedb does), subjects scored by ``--scoring``: ``template``
   (distance to the normalised mean of the subject's faces: facedb's default search) or ``best``
   (the closest face). People are split by seed into a calibration half and a report half.
   People with >= 2 detected images give a gallery (all images but one held-out probe) and mated
   probes; people with one image, and gallery-eligible people left out of a smaller gallery, are
   strangers. The threshold (and optionally a best-vs-second margin) with FPIR <= target on the
   calibration part and the lowest FNIR is chosen and then measured on the report part at
   several gallery sizes. Two designs:

   * ``halves``: each half has its own gallery (LFW allows only ~780 people per half);
   * ``full``: one gallery of every person with >= 2 images (1,559), whose held-out probes
     are split by person into calibration/report, with single-image strangers split likewise.

4. Robustness: design ``full`` over ``--repeats`` seeds; the recommended default is the median of
   the per-seed calibrated thresholds floored to 0.01, reported on the report halves with a table
   threshold -> FPIR / FNIR at 100, 1,000 and all enrolled people (mean, min-max, and the seeds
   meeting FPIR <= ``--target-fpir`` and FNIR <= ``--target-fnir``).
   ``--quality-floor`` (default: facedb's enrollment floor): gallery photos whose face is below it
   are not enrolled, as ``facedb enroll`` refuses them (``low_quality``); they are still probes.
   The default rule measured is therefore facedb's own: pack ``sface-flip``, template scoring,
   the quality floor on.
5. ``--compare PACK:SCORING`` (default ``sface:best``, facedb's previous default, with
   ``--compare-quality-floor off``): the same for that configuration on the same seeds (the same
   detector finds the same faces, so the splits are the same), side by side.

The report (``docs/calibration.json`` and ``docs/calibration.md``) is rebuilt by::

    python scripts/calibrate_threshold.py --json docs/calibration.json --md docs/calibration.md
"""
from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from ..analysis.quality import QualityFloor, format_quality_floor
from . import lfw, runner
from . import metrics as M
from .bench import REPO

#: Embedding cache of the calibration and the experiments (never in the repository).
DEFAULT_CACHE = runner.DEFAULT_CACHE


def default_lfw() -> Path | None:
    """``$FACEDB_DATASETS/lfw``, else ``<checkout>/../shared/datasets/lfw``; None when absent
    (the default ``--lfw`` of the experiments)."""
    return lfw.find_lfw()


# -- embedding pass -------------------------------------------------------------------------


@dataclass
class Embeddings:
    rel_paths: list[str]  # "<Person>/<Person>_NNNN.jpg", lfw.list_images order
    people: list[str]
    emb: np.ndarray  # (n, dim) float32, largest face; NaN rows where no face
    emb_central: np.ndarray  # (n, dim) float32, face nearest the image centre (LFW's labelled face)
    n_faces: np.ndarray  # (n,) int
    wall_seconds: float
    workers: int
    fingerprint: str
    cached: bool = False
    pack: str = ""
    quality: np.ndarray | None = None  # (n, len(runner.QUALITY_SIGNALS)) of the largest face; NaN rows
    cache_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def detected(self) -> np.ndarray:
        """Per image: was a face found (its row is not NaN)?"""
        found: np.ndarray = np.isfinite(self.emb[:, 0])
        return found

    def with_emb(self, emb: np.ndarray, central: np.ndarray | None = None) -> Embeddings:
        """The same images with other vectors (NaN rows where no face)."""
        return Embeddings(self.rel_paths, self.people, emb, self.emb_central if central is None else central,
                          self.n_faces, self.wall_seconds, self.workers, self.fingerprint, self.cached, self.pack,
                          self.quality, self.cache_file, dict(self.extra))


def from_embedded(e: runner.Embedded, root: Path, rel: list[str], central: str | None = "central") -> Embeddings:
    """An ``Embedded`` of ``runner.lfw_dataset(root)`` as per-image arrays (NaN where no face)."""
    row = {str(root / r): i for i, r in enumerate(rel)}
    n, dim = len(rel), e.vectors.shape[1]
    emb = np.full((n, dim), np.nan, dtype=np.float32)
    emb_c = emb.copy()
    quality = np.full((n, len(runner.QUALITY_SIGNALS)), np.nan)
    n_faces = np.zeros(n, dtype=np.int64)
    idx = np.array([row[str(p)] for p in e.paths], dtype=np.int64)
    if len(idx):
        emb[idx] = e.vectors
        emb_c[idx] = e.alternatives[central] if central and central in e.alternatives else e.vectors
        if e.quality is not None and len(e.quality):
            quality[idx] = e.quality
        if e.n_faces is not None and len(e.n_faces):
            n_faces[idx] = e.n_faces
    return Embeddings(rel, [lfw.person_of(r) for r in rel], emb, emb_c, n_faces, e.wall_seconds, e.workers,
                      e.fingerprint, e.cached, e.pack, quality, e.cache_file,
                      {"failures": {str(Path(k).relative_to(root)): v for k, v in e.failures.items()}})


def embed_lfw(root: Path, cache: Path | None, pack: str, workers: int, limit: int | None = None,
              central: bool = True) -> Embeddings:
    """Every LFW image (or the first ``limit``) through ``runner.embed``: largest face, and with
    ``central`` the face nearest the centre too (every face is then embedded)."""
    ds = runner.lfw_dataset(root, limit)
    rel = [p.relative_to(root).as_posix() for p in ds.paths]
    done = [0]
    t0 = time.perf_counter()

    def progress(k: int) -> None:
        done[0] += k
        if done[0] % 1000 < k or done[0] == len(rel):
            el = time.perf_counter() - t0
            print(f"[embed {pack}] {done[0]}/{len(rel)}  {el:.0f}s", flush=True)

    e = runner.embed(ds, pack, None, workers, progress, pick="largest", also=("central",) if central else (),
                     cache=cache if cache is not None else None)
    if e.cached:
        print(f"[embed {pack}] cached embeddings {e.cache_file}", flush=True)
    return from_embedded(e, root, rel)


# -- LFW pairs ------------------------------------------------------------------------------


def verification(E: Embeddings, root: Path) -> dict[str, Any]:
    pairs = lfw.read_pairs(root / "pairs.txt")
    same, folds = pairs.same, pairs.fold_ids
    index = {r: i for i, r in enumerate(E.rel_paths)}
    nan_row = np.full(E.emb.shape[1], np.nan, dtype=np.float32)

    def vec(r: str) -> np.ndarray:
        i = index.get(r)
        return E.emb[i] if i is not None else nan_row

    va = np.stack([vec(p.a) for p in pairs.pairs]).astype(np.float64)
    vb = np.stack([vec(p.b) for p in pairs.pairs])
    d = 1.0 - np.sum(va * vb, axis=1)  # NaN if a face (or an image) is missing
    missing = ~np.isfinite(d)
    cv = M.lfw_10fold_accuracy(d, same, folds)
    ok = ~missing
    cv_det = M.lfw_10fold_accuracy(d[ok], same[ok], folds[ok])
    thr_all, acc_all = M.best_accuracy_threshold(d, same)
    e, e_thr = M.eer(d[same], d[~same])
    tar3, tar3_thr = M.tar_at_far(d[same], d[~same], 1e-3)
    tar2, tar2_thr = M.tar_at_far(d[same], d[~same], 1e-2)
    undetected_in_pairs = [x for x in pairs.images() if x not in index or not E.detected[index[x]]]
    return {
        "n_pairs": int(d.size),
        "n_pairs_with_undetected_image": int(missing.sum()),
        "n_same_pairs_with_undetected_image": int((missing & same).sum()),
        "undetected_images_in_pairs": undetected_in_pairs,
        "images_not_in_dataset": pairs.missing(E.rel_paths),
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
    n_refused: int = 0  # gallery images refused by the quality floor
    n_people_refused: int = 0  # people left with no enrolled image by it (their probe is a stranger)


def make_split(E: Embeddings, seed: int, max_enroll: int, refused: np.ndarray | None = None) -> Split:
    """People split by ``seed`` (see the module docstring). ``refused``: per image, is it below
    the enrollment quality floor? Such images are not enrolled (as ``facedb enroll`` refuses them
    with ``low_quality``); they are still searched as probes. The draws do not depend on
    ``refused``, so a split is the same with the floor on and off."""
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
    n_refused = n_people_refused = 0
    for p in multi:
        idx = by_person[p]
        k = int(rng.integers(len(idx)))
        probe_of[p] = idx[k]
        rest = idx[:k] + idx[k + 1:]
        if max_enroll and len(rest) > max_enroll:
            rest = sorted(rng.choice(rest, size=max_enroll, replace=False).tolist())
        if refused is not None:
            kept = [i for i in rest if not refused[i]]
            n_refused += len(rest) - len(kept)
            n_people_refused += not kept
            rest = kept
        enroll_of[p] = rest
    order = [multi[j] for j in rng.permutation(len(multi))]  # nested galleries take prefixes
    return Split(order, half_of, probe_of, enroll_of, singles, {p: by_person[p][0] for p in singles},
                 len(all_people) - len(by_person), n_refused, n_people_refused)


@dataclass
class Part:
    """One gallery with calibration and report probe sets."""

    gallery_size: int
    scores: dict[str, M.SubjectScores]  # "calib" / "report"
    labels: dict[str, list[str]]
    n_gallery_images: int


#: A subject scoring rule: a name of ``metrics.SCORINGS`` ("template", "best"), or a function
#: ``(gallery_emb, gallery_labels, probe_emb) -> SubjectScores`` (the experiments' other rules).
Scoring: TypeAlias = str | Callable[..., M.SubjectScores]


def score(scoring: Scoring, gallery: np.ndarray, labels: list[str], probes: np.ndarray) -> M.SubjectScores:
    """Subject scores of ``probes`` against a labelled gallery by rule ``scoring``."""
    if callable(scoring):
        return scoring(gallery, labels, probes)
    return M.subject_scores(gallery, labels, probes, scoring=scoring)


def build_part(E: Embeddings, S: Split, gallery_people: list[str], probe_people: dict[str, list[str]],
               singles: dict[str, list[str]], scoring: Scoring = "best") -> Part:
    g_idx = [i for p in gallery_people for i in S.enroll_of[p]]
    g_lab = [E.people[i] for i in g_idx]
    scores, labels = {}, {}
    for part in ("calib", "report"):
        p_idx = [S.probe_of[p] for p in probe_people[part]] + [S.single_img[p] for p in singles[part]]
        lab = [E.people[i] for i in p_idx]
        scores[part] = score(scoring, E.emb[g_idx], g_lab, E.emb[p_idx])
        labels[part] = lab
    return Part(len(gallery_people), scores, labels, len(g_idx))


def _point(part: Part, which: str, thr: float, margin: float | None) -> dict[str, Any]:
    r = M.open_set_from_scores(part.scores[which], part.labels[which], thr, margin)
    return {"fpir": r.fpir, "fnir": r.fnir, "n_mated": r.n_mated, "n_strangers": r.n_nonmated,
            "strangers_named": r.n_nonmated_named, "mated_misnamed": r.n_mated_misnamed,
            "mated_unknown": r.n_mated_unknown}


def _by_enrolled(part: Part, S: Split, E: Embeddings, thr: float) -> dict[str, dict[str, int]]:
    """Report-half mated probes by the number of photos their person has enrolled ("1", "2+"):
    how many, and how many are missed (named wrongly or unknown) at ``thr``."""
    r = M.open_set_from_scores(part.scores["report"], part.labels["report"], thr, None)
    enrolled = set(part.scores["report"].subjects.tolist())
    out = {"1": {"mated": 0, "missed": 0}, "2+": {"mated": 0, "missed": 0}}
    for lab, pred in zip(part.labels["report"], r.predicted.tolist()):
        if lab in enrolled:
            k = "1" if len(S.enroll_of[lab]) == 1 else "2+"
            out[k]["mated"] += 1
            out[k]["missed"] += pred != lab
    return out


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
               margins: list[float], ref_thresholds: dict[str, float], scoring: Scoring = "best") -> dict[str, Any]:
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
                pp: dict[str, list[str]] = {"calib": [], "report": []}
                pp[which] = gal + withheld
                sg: dict[str, list[str]] = {"calib": [], "report": []}
                sg[which] = singles[which]
                parts[which] = build_part(E, S, gal, pp, sg, scoring)
            return Part(n, {w: parts[w].scores[w] for w in parts}, {w: parts[w].labels[w] for w in parts},
                        parts["report"].n_gallery_images)
        gal = S.people_multi[:n]
        pp = {"calib": [p for p in S.people_multi if S.half_of[p] == 0],
              "report": [p for p in S.people_multi if S.half_of[p] == 1]}
        return build_part(E, S, gal, pp, singles, scoring)

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
            if n == max_size:
                row["report"][ref_name]["by_enrolled"] = _by_enrolled(part, S, E, t)
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
    print(f"\n=== facedb threshold calibration on LFW (pack {R['pack']}, subjects scored by {R['scoring']}) ===")
    print(f"images: {em['n_images']} of {em['n_people']} people; no face detected in {em['n_undetected']} "
          f"({', '.join(em['undetected'][:8])}{' ...' if em['n_undetected'] > 8 else ''})")
    print(f"images with >1 face: {em['n_multi_face']}; {R['face']} face used; in {em['n_largest_not_central']} "
          "images the largest face is not the one nearest the centre (LFW's labelled face)")
    print(f"time: {em['ms_per_image_wall']:.1f} ms/image wall with {em['workers']} workers (decode + detect + "
          "embed every face, facedb.analysis.pipeline.Analyzer)"
          + (f" (cached: {em['cache_file']}; the time of the original pass)" if em.get("cached") else ""))
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
          "enrol " + ("all but one" if not R["max_enroll"] else f"up to {R['max_enroll']}") + " images/person")
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


def jsonable(o: Any) -> Any:
    """Plain JSON: numpy values to Python, non-finite floats to null."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


#: Gallery sizes of the robustness section and of the tables ("max" = every enrolled person).
ROBUST_SIZES: list[int | str] = [100, 1000, "max"]


def seed_robustness(E: Embeddings, seeds: list[int], target: float, max_enroll: int, margins: list[float],
                    fixed: list[float], scoring: Scoring = "best",
                    sizes: list[int | str] | None = None, refused: np.ndarray | None = None) -> dict[str, Any]:
    """Design 'full' re-run for several split seeds: calibrated threshold and report-split rates."""
    sizes = list(sizes or ROBUST_SIZES)
    per_seed = []
    names: list[str] = []
    for sd in seeds:
        S = make_split(E, sd, max_enroll, refused)
        refs = {f"fixed_{t:.2f}": t for t in fixed}
        D = run_design("full", E, S, sizes, target, margins, refs, scoring)
        cal = D["calibration"]
        names = list(D["by_size"])
        row = {"seed": sd, "threshold": cal["plain"]["threshold"], "calib_fnir": cal["plain"]["fnir"],
               "calib_fpir": cal["plain"]["fpir"],
               "margin": cal["with_margin"]["margin"], "margin_threshold": cal["with_margin"]["threshold"],
               "calib_fnir_with_margin": cal["with_margin"]["fnir"], "gallery_images_refused": S.n_refused,
               "people_refused": S.n_people_refused, "report": {}}
        for n in names:
            rp = D["by_size"][n]["report"]
            row["report"][n] = {
                "exact": rp["exact_threshold"], "exact_with_margin": rp["exact_threshold_with_margin"],
                **{k: rp[k] for k in refs},
            }
        per_seed.append(row)
    thr = np.array([r["threshold"] for r in per_seed])
    return {"seeds": seeds, "per_seed": per_seed, "threshold_median": float(np.median(thr)),
            "threshold_min": float(thr.min()), "threshold_max": float(thr.max()), "gallery_sizes": names,
            "fixed": fixed}


def summarise(rows: list[dict[str, Any]], size: str, key: str, target_fpir: float = 0.01,
              target_fnir: float = 0.04) -> dict[str, float]:
    f = np.array([r["report"][size][key]["fpir"] for r in rows])
    n = np.array([r["report"][size][key]["fnir"] for r in rows])
    return {"fpir_mean": float(f.mean()), "fpir_min": float(f.min()), "fpir_max": float(f.max()),
            "fnir_mean": float(n.mean()), "fnir_min": float(n.min()), "fnir_max": float(n.max()),
            "seeds_meeting": int(np.sum((f <= target_fpir + 1e-12) & (n <= target_fnir + 1e-12))),
            "seeds_fpir_ok": int(np.sum(f <= target_fpir + 1e-12)), "seeds": len(rows),
            "strangers_named_mean": float(np.mean([r["report"][size][key]["strangers_named"] for r in rows])),
            "mated_misnamed_mean": float(np.mean([r["report"][size][key]["mated_misnamed"] for r in rows])),
            "mated_unknown_mean": float(np.mean([r["report"][size][key]["mated_unknown"] for r in rows])),
            "n_mated": int(rows[0]["report"][size][key]["n_mated"]),
            "n_strangers": int(rows[0]["report"][size][key]["n_strangers"]),
            **_enrolled_summary([r["report"][size][key].get("by_enrolled") for r in rows])}


def _enrolled_summary(parts: list[dict[str, dict[str, int]] | None]) -> dict[str, Any]:
    """FNIR of the mated probes by enrolled photos of their person, pooled over seeds."""
    if not parts or any(p is None for p in parts):
        return {}
    out: dict[str, Any] = {}
    for k in ("1", "2+"):
        mated = sum(p[k]["mated"] for p in parts if p)
        missed = sum(p[k]["missed"] for p in parts if p)
        out[f"enrolled_{k}"] = {"mated_per_seed": mated / len(parts), "fnir": missed / mated if mated else None}
    return out


def fixed_grid(thresholds: list[float], *extra: float) -> list[float]:
    return sorted({round(t, 2) for t in (*thresholds, *extra) if math.isfinite(t)})


def robustness_config(E: Embeddings, seeds: list[int], a: Settings, scoring: Scoring,
                      current: float, table: list[float], floor: QualityFloor = None) -> dict[str, Any]:
    """Calibrated thresholds over ``seeds``, the recommendation and the threshold table; with
    ``floor``, the gallery images below that enrollment quality floor are not enrolled."""
    margins = a.margins
    fixed = fixed_grid(table, current)
    refused = runner.rows_below_floor(E.quality, floor, len(E.rel_paths)) if floor else None
    rb = seed_robustness(E, seeds, a.target_fpir, a.max_enroll, margins, fixed, scoring, refused=refused)
    rec = floor2(rb["threshold_median"])
    if f"fixed_{rec:.2f}" not in rb["per_seed"][0]["report"][rb["gallery_sizes"][0]]:  # make sure it is measured
        fixed = fixed_grid(fixed, rec)
        rb = seed_robustness(E, seeds, a.target_fpir, a.max_enroll, margins, fixed, scoring, refused=refused)
    rows = rb["per_seed"]
    gain = float(np.mean([r["calib_fnir"] - r["calib_fnir_with_margin"] for r in rows]))

    def summ(size: str, key: str) -> dict[str, float]:
        return summarise(rows, size, key, a.target_fpir, a.target_fnir)

    return {
        "quality_floor": dict(floor) if floor else None,
        "images_below_floor": int(refused.sum()) if refused is not None else 0,
        "gallery_images_refused_mean": float(np.mean([r["gallery_images_refused"] for r in rows])),
        "people_refused_mean": float(np.mean([r["people_refused"] for r in rows])),
        "robustness": rb,
        "recommendation": {
            "threshold": rec,
            "margin_worth_it": gain >= 0.005,  # at least half a point of FNIR at the same FPIR budget
            "margin_mean_calib_fnir_gain": gain,
            "report": {size: summ(size, f"fixed_{rec:.2f}") for size in rb["gallery_sizes"]},
        },
        "current": {"threshold": current,
                    "report": {size: summ(size, f"fixed_{current:.2f}") for size in rb["gallery_sizes"]}},
        "per_seed_own_threshold": {size: summ(size, "exact") for size in rb["gallery_sizes"]},
        "table": {f"{t:.2f}": {size: summ(size, f"fixed_{t:.2f}") for size in rb["gallery_sizes"]}
                  for t in rb["fixed"]},
    }


def print_robustness(R: dict[str, Any]) -> None:
    C = R["config"]
    rb = C["robustness"]
    rows = rb["per_seed"]
    print(f"\n-- robustness: design 'full' over {len(rows)} split seeds {rb['seeds'][0]}..{rb['seeds'][-1]} "
          f"({R['pack']}, scoring {R['scoring']}) --")
    print(f"calibrated threshold (FPIR <= {pct(R['target_fpir'])} on calib, gallery max): median "
          f"{rb['threshold_median']:.4f}, range {rb['threshold_min']:.4f}..{rb['threshold_max']:.4f}")
    m = np.array([r["calib_fnir"] - r["calib_fnir_with_margin"] for r in rows])
    print(f"margin rule: calib FNIR gain of the best margin over none: mean {100 * m.mean():.2f} points "
          f"(margins chosen: {sorted({r['margin'] for r in rows})})")
    for size, e in C["per_seed_own_threshold"].items():
        print(f"  gallery {size:>5}: own calibrated threshold -> report FPIR {pct(e['fpir_mean'])} "
              f"({pct(e['fpir_min'])}..{pct(e['fpir_max'])}), FNIR {pct(e['fnir_mean'])} "
              f"({pct(e['fnir_min'])}..{pct(e['fnir_max'])})")
    print("  fixed thresholds, REPORT split, mean (min..max) over seeds [seeds with FPIR <= "
          f"{pct(R['target_fpir'])} and FNIR <= {pct(R['target_fnir'])}]:")
    for t, by in C["table"].items():
        cells = [f"gallery {size:>5}: FPIR {pct(e['fpir_mean'])} ({pct(e['fpir_min'])}..{pct(e['fpir_max'])}) "
                 f"FNIR {pct(e['fnir_mean'])} ({pct(e['fnir_min'])}..{pct(e['fnir_max'])}) [{e['seeds_meeting']}]"
                 for size, e in by.items()]
        print(f"   {t}  " + "   ".join(cells))
    rec = C["recommendation"]
    print(f"\nRECOMMENDED default threshold: {rec['threshold']:.2f} (median calibrated threshold over seeds, floored "
          f"to 0.01; in force now: {C['current']['threshold']:.2f}); margin rule: "
          f"{'worth it' if rec['margin_worth_it'] else 'not worth it'}")
    for size, v in rec["report"].items():
        print(f"  gallery {size:>5}: report FPIR {pct(v['fpir_mean'])} ({pct(v['fpir_min'])}..{pct(v['fpir_max'])}), "
              f"FNIR {pct(v['fnir_mean'])} ({pct(v['fnir_min'])}..{pct(v['fnir_max'])}), seeds ok "
              f"{v['seeds_meeting']}/{v['seeds']}")


def print_sensitivity(R: dict[str, Any]) -> None:
    sv = R.get("sensitivity")
    if not sv:
        return
    print(f"\n-- sensitivity: embeddings of the {sv['face']} face instead "
          f"({sv['n_images_differing']} images pick a different face) --")
    print(f"LFW 10-fold accuracy {100 * sv['accuracy_mean']:.2f} % ± {100 * sv['accuracy_std']:.2f}; "
          f"1:1 best threshold {sv['best_threshold_all_pairs']:.3f}")
    for size, v in sv["report"].items():
        print(f"  gallery {size:>5} at {R['config']['recommendation']['threshold']:.2f}: report FPIR "
              f"{pct(v['fpir_mean'])}, FNIR {pct(v['fnir_mean'])} (mean over seeds)")


def rule_name(C: dict[str, Any]) -> str:
    """``pack + scoring [+ quality floor]`` of a configuration."""
    return f"{C['pack']} + {C['scoring']}" + (" + quality floor" if C.get("quality_floor") else "")


def compare_rows(R: dict[str, Any]) -> list[tuple[str, str, float, dict[str, dict[str, float]]]]:
    """(label, configuration, threshold, per-size summary) of the side-by-side table."""
    out = []
    for key in ("baseline", "config"):
        C = R.get(key)
        if not C:
            continue
        name = rule_name(C)
        out.append((f"{'old' if key == 'baseline' else 'new'}, threshold in force", name,
                    C["current"]["threshold"], C["current"]["report"]))
        out.append((f"{'old' if key == 'baseline' else 'new'}, own calibrated threshold", name,
                    C["recommendation"]["threshold"], C["recommendation"]["report"]))
    return out


def print_compare(R: dict[str, Any]) -> None:
    if not R.get("baseline"):
        return
    print(f"\n-- side by side on the same {len(R['seeds'])} seeds (REPORT halves; mean (min..max); seeds with "
          f"FPIR <= {pct(R['target_fpir'])} and FNIR <= {pct(R['target_fnir'])}) --")
    for label, name, thr, by in compare_rows(R):
        cells = [f"{size:>5}: FPIR {pct(v['fpir_mean'])} ({pct(v['fpir_min'])}..{pct(v['fpir_max'])}) FNIR "
                 f"{pct(v['fnir_mean'])} ({pct(v['fnir_min'])}..{pct(v['fnir_max'])}) [{v['seeds_meeting']}]"
                 for size, v in by.items()]
        print(f"  {name:<22} {thr:.2f} ({label}):  " + "   ".join(cells))


def _p(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def _cell(v: dict[str, float], what: str) -> str:
    return f"{_p(v[what + '_mean'])} ({_p(v[what + '_min'])}–{_p(v[what + '_max'])})"


def markdown(R: dict[str, Any]) -> str:
    """The tables of the report as markdown (README / docs)."""
    C = R["config"]
    sizes = C["robustness"]["gallery_sizes"]
    people = {s: R["gallery_people"][s] for s in sizes}
    lines = [f"# Threshold calibration on LFW: {rule_name(C)}", "",
             f"`{R['command']}` at commit {R['commit']}; {len(R['seeds'])} seeds ({R['seeds'][0]}..{R['seeds'][-1]}); "
             f"target FPIR <= {_p(R['target_fpir'])} % and FNIR <= {_p(R['target_fnir'])} %. Rates in %, on the "
             "report halves: mean (min–max over seeds) [seeds meeting both targets].", ""]
    rb = C["robustness"]
    v = R["verification"]
    lines += [f"- Embeddings: {R['embedding']['n_images']:,} images, {R['embedding']['n_undetected']} without a "
              f"face; fingerprint `{R['fingerprint'][:12]}`; {R['embedding']['ms_per_image_wall']:.1f} ms/image wall "
              f"with {R['embedding']['workers']} workers" + (" (cached pass)" if R["embedding"]["cached"] else ""),
              f"- Gallery: {people[sizes[-1]]:,} people with >= 2 photos (one held out each as the mated probe); "
              f"strangers: {R['open_set']['split']['n_singles']:,} single-photo people; probes and strangers split "
              "by person into calibration and report halves.",
              f"- Calibrated threshold (FPIR <= 1 % on the calibration half, all people): median "
              f"**{rb['threshold_median']:.4f}** ({rb['threshold_min']:.4f}–{rb['threshold_max']:.4f}); recommended "
              f"(floored to 0.01): **{C['recommendation']['threshold']:.2f}**; in force: "
              f"{C['current']['threshold']:.2f} ("
              + ("the default stays" if C["recommendation"]["threshold"] == C["current"]["threshold"]
                 else "the measurement recommends another default") + ").",
              f"- Quality floor of the calibrated rule: `{R['quality_floor']}`; {C['images_below_floor']} of "
              f"{R['embedding']['n_images']:,} images below it (mean {C['gallery_images_refused_mean']:.1f} gallery "
              f"images refused per seed, {C['people_refused_mean']:.1f} people left unenrolled)"
              + (f"; the old rule has floor `{format_quality_floor(R['baseline'].get('quality_floor'))}`."
                 if R.get("baseline") else "."),
              f"- LFW pairs 10-fold: {100 * v['accuracy_mean']:.2f} % ± {100 * v['accuracy_std']:.2f} "
              f"(EER {_p(v['eer'])} %, TAR@FAR=1e-3 {_p(v['tar_at_far_1e-3'])} %).", ""]
    if R.get("baseline_verification"):
        bv = R["baseline_verification"]
        lines[-2] += (f" Baseline `{R['baseline']['pack']}`: {100 * bv['accuracy_mean']:.2f} % ± "
                      f"{100 * bv['accuracy_std']:.2f}.")
    lines += [f"## Threshold -> FPIR / FNIR, {rule_name(C)}", "",
              "| threshold | " + " | ".join(f"{people[s]:,} people: FPIR | FNIR [ok]" for s in sizes) + " |",
              "|---|" + "---|---|" * len(sizes)]
    for t, by in C["table"].items():
        mark = " (in force)" if float(t) == C["current"]["threshold"] else ""
        mark += " (calibrated)" if float(t) == C["recommendation"]["threshold"] else ""
        lines.append(f"| {t}{mark} | " + " | ".join(f"{_cell(by[s], 'fpir')} | {_cell(by[s], 'fnir')} "
                                                     f"[{by[s]['seeds_meeting']}]" for s in sizes) + " |")
    own = C["per_seed_own_threshold"]
    lines.append("| each seed's own calibrated threshold | " + " | ".join(
        f"{_cell(own[s], 'fpir')} | {_cell(own[s], 'fnir')} [{own[s]['seeds_meeting']}]" for s in sizes) + " |")
    if R.get("baseline"):
        lines += ["", f"## Side by side on the same seeds: old ({rule_name(R['baseline'])}) vs new "
                      f"({rule_name(C)})", "",
                  "| configuration | threshold | " + " | ".join(f"{people[s]:,} people: FPIR | FNIR [ok]"
                                                              for s in sizes) + " |",
                  "|---|---|" + "---|---|" * len(sizes)]
        for label, name, thr, by in compare_rows(R):
            lines.append(f"| {name} ({label}) | {thr:.2f} | " + " | ".join(
                f"{_cell(by[s], 'fpir')} | {_cell(by[s], 'fnir')} [{by[s]['seeds_meeting']}]" for s in sizes) + " |")
        big = sizes[-1]
        B = R["baseline"]
        lines += ["", f"Per seed at the threshold in force ({C['current']['threshold']:.2f}), {people[big]:,} people "
                      "(FPIR / FNIR %):", "",
                  f"| seed | old {rule_name(B)} | new {rule_name(C)} |",
                  "|---|---|---|"]
        key_old, key_new = f"fixed_{B['current']['threshold']:.2f}", f"fixed_{C['current']['threshold']:.2f}"
        for ro, rn in zip(B["robustness"]["per_seed"], C["robustness"]["per_seed"]):
            o, n = ro["report"][big][key_old], rn["report"][big][key_new]
            lines.append(f"| {rn['seed']} | {_p(o['fpir'])} / {_p(o['fnir'])} | {_p(n['fpir'])} / {_p(n['fnir'])} |")
    big = sizes[-1]
    fe = [(rule_name(X), X["current"]["threshold"], X["current"]["report"][big])
          for X in (R.get("baseline"), C) if X]
    if all("enrolled_1" in v for _, _, v in fe):
        lines += ["", f"Misses by enrolled photos of the person, {people[big]:,} people, at the threshold in force "
                      "(report halves, pooled over seeds):", "",
                  "| configuration | threshold | mated probes with 1 photo enrolled: FNIR | with 2+ photos: FNIR |",
                  "|---|---|---|---|"]
        for name, thr, v in fe:
            one, more = v["enrolled_1"], v["enrolled_2+"]
            lines.append(f"| {name} | {thr:.2f} | {_p(one['fnir'])} ({one['mated_per_seed']:.0f} per seed) | "
                         f"{_p(more['fnir'])} ({more['mated_per_seed']:.0f} per seed) |")
    sv = R.get("sensitivity")
    if sv:
        lines += ["", f"Sensitivity: with the {sv['face']} face of each photo ({sv['n_images_differing']} photos "
                      f"differ), LFW pairs {100 * sv['accuracy_mean']:.2f} %, calibrated median "
                      f"{sv['calibrated_threshold_median']:.4f}; at {C['recommendation']['threshold']:.2f}: " +
                  "; ".join(f"{people[s]:,} people FPIR {_p(x['fpir_mean'])} / FNIR {_p(x['fnir_mean'])}"
                            for s, x in sv["report"].items())]
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    """The checkout's short commit, marked when facedb/ or scripts/ have uncommitted changes."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "facedb", "scripts"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except Exception:  # pragma: no cover
        return "unknown"


def embedding_summary(E: Embeddings) -> dict[str, Any]:
    det = E.detected
    differing = int(np.sum(np.any(E.emb != E.emb_central, axis=1) & det))
    return {"n_images": len(E.rel_paths), "n_people": len(set(E.people)), "n_undetected": int((~det).sum()),
            "undetected": [r for r, d in zip(E.rel_paths, det) if not d],
            "failures": E.extra.get("failures", {}),
            "n_multi_face": int((E.n_faces > 1).sum()), "n_largest_not_central": differing,
            "ms_per_image_wall": 1000 * E.wall_seconds / max(1, len(E.rel_paths)),
            "wall_seconds": E.wall_seconds, "workers": E.workers, "cached": E.cached, "cache_file": E.cache_file}




# -- the whole protocol ---------------------------------------------------------------------


#: Fixed thresholds of the robustness table by default (the calibrated and the current one are added).
TABLE_THRESHOLDS = [t / 100 for t in range(44, 60)]
#: Margins (second-best minus best subject distance) tried with the threshold; 0 = no margin rule.
MARGINS = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20]


@dataclass
class Settings:
    """Everything a calibration run depends on (the command line of ``scripts/calibrate_threshold.py``)."""

    pack: str
    lfw_root: Path
    #: the command recorded in the report (how to reproduce it)
    command: str
    scoring: str = "template"
    quality_floor: QualityFloor = None
    #: (pack, scoring) measured on the same seeds and shown side by side; None: skip
    compare: tuple[str, str] | None = ("sface", "best")
    compare_quality_floor: QualityFloor = None
    cache: Path | None = DEFAULT_CACHE
    workers: int = 2
    face: runner.Pick = "largest"
    seed: int = 0
    repeats: int = 10
    target_fpir: float = 0.01
    target_fnir: float = 0.04
    gallery_sizes: list[int | str] = field(default_factory=lambda: [100, 500, 1000, "max"])
    table_thresholds: list[float] = field(default_factory=lambda: list(TABLE_THRESHOLDS))
    margins: list[float] = field(default_factory=lambda: list(MARGINS))
    max_enroll: int = 0
    #: only the first N images (smoke test: no verification, no robustness section)
    limit: int | None = None


def _pack_threshold(pack: str) -> float:
    from ..analysis.engines import load_engine

    return float(load_engine(pack).info.threshold)


def run(a: Settings) -> dict[str, Any]:
    """The whole protocol (see the module docstring): every number of the report, as one dict
    (``jsonable`` makes it plain JSON; ``markdown`` its tables, once ``"config"`` is in it)."""
    if a.scoring not in M.SCORINGS:
        raise ValueError(f"scoring must be one of {M.SCORINGS}, not {a.scoring!r}")
    if a.compare is not None and a.compare[1] not in M.SCORINGS:
        raise ValueError(f"the compared scoring must be one of {M.SCORINGS}, not {a.compare[1]!r}")
    t_run = time.perf_counter()
    floor, b_floor = a.quality_floor, a.compare_quality_floor
    root = lfw.require_lfw(a.lfw_root)
    cache = a.cache
    E = embed_lfw(root, cache, a.pack, a.workers, a.limit)
    if a.face == "central":
        E = E.with_emb(E.emb_central, E.emb)
    current = _pack_threshold(a.pack)
    refused = runner.rows_below_floor(E.quality, floor, len(E.rel_paths)) if floor else None
    R: dict[str, Any] = {"pack": a.pack, "scoring": a.scoring, "quality_floor": format_quality_floor(floor),
                         "fingerprint": E.fingerprint, "seed": a.seed,
                         "face": a.face, "target_fpir": a.target_fpir, "target_fnir": a.target_fnir,
                         "max_enroll": a.max_enroll, "command": a.command, "commit": git_commit()}
    R["embedding"] = embedding_summary(E)
    R["verification"] = verification(E, root) if a.limit is None else None
    ok = np.flatnonzero(E.detected)
    R["precision_at_2"] = M.precision_at_k(E.emb[ok], [E.people[i] for i in ok], k=2, seed=a.seed)

    S = make_split(E, a.seed, a.max_enroll, refused)
    refs = {f"ref_current_{current:.2f}": current}
    if R["verification"]:
        best = R["verification"]["best_threshold_all_pairs"]
        refs[f"ref_1:1_best_{best:.3f}"] = best
    n_mc = sum(S.half_of[p] == 0 for p in S.people_multi)
    n_sc = sum(S.half_of[p] == 0 for p in S.singles)
    R["open_set"] = {
        "split": {"n_multi": len(S.people_multi), "n_multi_calib": n_mc, "n_multi_report": len(S.people_multi) - n_mc,
                  "n_singles": len(S.singles), "n_singles_calib": n_sc, "n_singles_report": len(S.singles) - n_sc,
                  "n_people_no_face": S.n_people_no_face, "n_gallery_images_refused": S.n_refused,
                  "n_people_refused": S.n_people_refused},
        "designs": {d: run_design(d, E, S, a.gallery_sizes, a.target_fpir, a.margins, refs, a.scoring)
                    for d in ("halves", "full")},
    }
    R["gallery_people"] = {"100": min(100, len(S.people_multi)), "1000": min(1000, len(S.people_multi)),
                           str(len(S.people_multi)): len(S.people_multi)}
    table = a.table_thresholds
    if R["verification"] and a.repeats > 0:
        seeds = list(range(a.seed, a.seed + a.repeats))
        R["seeds"] = seeds
        C = robustness_config(E, seeds, a, a.scoring, current, table, floor)
        C.update(pack=a.pack, scoring=a.scoring)
        R["config"] = C
        rec = C["recommendation"]["threshold"]
        # sensitivity: the other face choice, same seeds, at the recommended threshold
        E2 = E.with_emb(E.emb_central, E.emb)
        v2 = verification(E2, root)
        rb2 = seed_robustness(E2, seeds, a.target_fpir, a.max_enroll, [0.0], [rec], a.scoring, refused=refused)
        R["sensitivity"] = {
            "face": "central" if a.face == "largest" else "largest",
            "n_images_differing": R["embedding"]["n_largest_not_central"],
            "accuracy_mean": v2["accuracy_mean"], "accuracy_std": v2["accuracy_std"],
            "best_threshold_all_pairs": v2["best_threshold_all_pairs"],
            "calibrated_threshold_median": rb2["threshold_median"],
            "report": {size: summarise(rb2["per_seed"], size, f"fixed_{rec:.2f}", a.target_fpir, a.target_fnir)
                       for size in rb2["gallery_sizes"]},
        }
        if a.compare is not None:
            b_pack, b_scoring = a.compare
            EB = E if b_pack == a.pack else embed_lfw(root, cache, b_pack, a.workers, a.limit)
            if a.face == "central":
                EB = EB.with_emb(EB.emb_central, EB.emb)
            same_split = bool(np.array_equal(EB.detected, E.detected))
            B = robustness_config(EB, seeds, a, b_scoring, _pack_threshold(b_pack), table, b_floor)
            B.update(pack=b_pack, scoring=b_scoring, same_detected_images=same_split)
            R["baseline"] = B
            R["baseline_verification"] = verification(EB, root)
            R["baseline_embedding"] = embedding_summary(EB)
    R["run_seconds"] = time.perf_counter() - t_run
    return R


def print_all(R: dict[str, Any]) -> None:
    """The console report of a ``run`` (a JSON summary when it ran without verification, ``limit``)."""
    if R["verification"]:
        print_report(R)
        if "config" in R:
            print_robustness(R)
            print_sensitivity(R)
            print_compare(R)
        print(f"\nembedding pass {R['embedding']['wall_seconds']:.0f} s; total run {R['run_seconds']:.0f} s")
    else:
        print(json.dumps({k: R[k] for k in ("embedding", "precision_at_2")}, indent=1, default=str))


def write_json(R: dict[str, Any], path: Path) -> None:
    """Every number of a ``run`` as plain JSON (non-finite floats as null)."""
    path.write_text(json.dumps(jsonable(R), indent=1, allow_nan=False))
