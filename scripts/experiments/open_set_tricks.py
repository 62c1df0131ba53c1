#!/usr/bin/env python
"""Do cheap test-time tricks bring the sface pack to FNIR <= 5 % at FPIR <= 1 % (1:N, LFW)?

Same protocol and code as ``scripts/calibrate_threshold.py`` (design ``full``: one gallery of
every person with >= 2 detected images, held-out probes and single-image strangers split by
person into a calibration and a report half; threshold calibrated for FPIR <= 1 % at the largest
gallery, recommended threshold = median over 10 seeds floored to 0.01, reported on the report
half at gallery 1,000 and 1,559). Only two things vary:

* the **embedding** of every image (gallery and probe alike):

  - ``base``: pack ``sface``, ``normalise(feature(aligned))``;
  - ``flip``: pack ``sface-flip``, ``normalise(feature(aligned) + feature(cv2.flip(aligned, 1)))``
    (raw features summed; the unit-sum variant ``flipn`` of the first run is not a pack and was
    dropped);

* the **subject score** (the distance a gallery subject gets for a probe):

  - ``min``: the closest sample (what facedb does);
  - ``top2``: the mean of the 2 closest samples when the subject has >= 2 gallery samples;
  - ``centroid``: distance to the normalised mean of the subject's samples;
  - ``min+cen``: mean of ``min`` and ``centroid``;
  - ``snorm-K``: ``min`` minus ``beta`` x (mean of the 2nd..(K+1)th best subject distances - mu),
    i.e. a probe-side cohort normalisation (a soft, many-subject form of the margin rule); beta is
    chosen on the calibration half of seed 0 only.

Both embeddings come from facedb's pipeline through ``calibrate_threshold.embed_lfw``
(``facedb.evaluation.runner.embed``, its cache under ``--cache``: the same files as
``calibrate_threshold.py``), LFW read by ``facedb.evaluation.lfw``.

Usage::

    python scripts/experiments/open_set_tricks.py --json /tmp/open_set_tricks.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import calibrate_threshold as ct  # noqa: E402

from facedb.evaluation import lfw  # noqa: E402
from facedb.evaluation import metrics as M  # noqa: E402

#: The packs of the two embeddings.
PACKS = {"base": "sface", "flip": "sface-flip"}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# -- subject scores -------------------------------------------------------------------------


def make_scorer(kind: str, beta: float = 0.0, k_cohort: int = 10, mu: float = 0.0) -> Callable[..., M.SubjectScores]:
    """A drop-in for ``metrics.subject_scores`` with another per-subject aggregation."""

    def scorer(gallery_emb, gallery_labels, probe_emb, chunk: int = 1024) -> M.SubjectScores:
        g = M.l2_normalize(np.asarray(gallery_emb, dtype=np.float32))
        p = M.l2_normalize(np.asarray(probe_emb, dtype=np.float32))
        gl = M._labels(gallery_labels)
        index: dict[Any, int] = {}
        inv = np.array([index.setdefault(lab, len(index)) for lab in gl.tolist()], dtype=np.int64)
        subj = M._labels(list(index))
        order = np.argsort(inv, kind="stable")
        inv_s = inv[order]
        starts = np.searchsorted(inv_s, np.arange(len(index)))
        counts = np.bincount(inv_s, minlength=len(index))
        gs = g[order]
        if kind in ("centroid", "min+cen"):
            cen = np.add.reduceat(gs, starts, axis=0)
            cen = M.l2_normalize(cen)
        best_d = np.empty(p.shape[0])
        second_d = np.empty(p.shape[0])
        best_i = np.empty(p.shape[0], dtype=np.int64)
        for lo in range(0, p.shape[0], chunk):
            d = np.clip(1.0 - p[lo:lo + chunk] @ gs.T, 0.0, 2.0)  # (c, n_gallery), as metrics does
            dmin = np.minimum.reduceat(d, starts, axis=1)
            if kind in ("min", "snorm"):
                s = dmin
            elif kind == "top2":
                # second-closest sample per subject: mask one argmin per segment, min again
                is_min = d == np.repeat(dmin, counts, axis=1)
                # cumulative count of minima within each segment; keep only the first one
                cs = np.cumsum(is_min, axis=1)
                base = np.concatenate([np.zeros((d.shape[0], 1), dtype=cs.dtype), cs[:, starts[1:] - 1]], axis=1)
                am = is_min & ((cs - np.repeat(base, counts, axis=1)) == 1)
                d2 = np.where(am, np.inf, d)
                dsec = np.minimum.reduceat(d2, starts, axis=1)
                s = np.where(counts[None, :] >= 2, (dmin + dsec) / 2, dmin)
            elif kind == "centroid":
                s = 1.0 - p[lo:lo + chunk] @ cen.T
            elif kind == "min+cen":
                s = (dmin + (1.0 - p[lo:lo + chunk] @ cen.T)) / 2
            else:
                raise ValueError(kind)
            kk = min(s.shape[1] - 1, max(2, k_cohort + 1))
            part = np.partition(s, kk, axis=1)[:, :kk + 1]
            part.sort(axis=1)
            bi = np.argmin(s, axis=1)
            b = s[np.arange(s.shape[0]), bi]
            sec = part[:, 1]
            if kind == "snorm":
                coh = part[:, 1:k_cohort + 1].mean(axis=1)
                adj = beta * (coh - mu)
                b = b - adj
                sec = sec - adj  # gap unchanged
            best_i[lo:lo + chunk] = bi
            best_d[lo:lo + chunk] = b
            second_d[lo:lo + chunk] = sec
        return M.SubjectScores(subjects=subj, best_label=subj[best_i], best_d=best_d, second_d=second_d)

    return scorer


# -- the protocol of calibrate_threshold.main (robustness + recommendation) ------------------


def protocol(E: ct.Embeddings, lfw: Path, seeds: list[int], target: float, margins: list[float],
             scorer: Callable[..., M.SubjectScores] | None, do_verification: bool) -> dict[str, Any]:
    scoring: ct.Scoring = scorer if scorer is not None else "best"
    S = ct.make_split(E, seeds[0], 0)
    D = ct.run_design("full", E, S, [1000, "max"], target, margins, {}, scoring)
    base = D["recommended"]["threshold"]
    fixed = sorted({round(base + k / 100, 2) for k in range(-3, 4)})
    rb = ct.seed_robustness(E, seeds, target, 0, margins, fixed, scoring, [1000, "max"])
    rec = ct.floor2(rb["threshold_median"])
    if f"fixed_{rec:.2f}" not in rb["per_seed"][0]["report"]["1000"]:
        rb = ct.seed_robustness(E, seeds, target, 0, margins, sorted(set(fixed) | {rec}), scoring, [1000, "max"])
    rows = rb["per_seed"]
    out = {
        "threshold": rec,
        "threshold_median": rb["threshold_median"], "threshold_min": rb["threshold_min"],
        "threshold_max": rb["threshold_max"],
        "margin_gain_calib_fnir": float(np.mean([r["calib_fnir"] - r["calib_fnir_with_margin"] for r in rows])),
        "report": {size: ct.summarise(rows, size, f"fixed_{rec:.2f}") for size in rb["gallery_sizes"]},
        "report_exact": {size: ct.summarise(rows, size, "exact") for size in rb["gallery_sizes"]},
        "report_exact_margin": {size: ct.summarise(rows, size, "exact_with_margin") for size in rb["gallery_sizes"]},
        "calib_fnir_mean": float(np.mean([r["calib_fnir"] for r in rows])),
        "gallery_sizes": rb["gallery_sizes"],
        "per_seed": rows,
    }
    if do_verification:
        v = ct.verification(E, lfw)
        out["verification"] = {k: v[k] for k in ("accuracy_mean", "accuracy_std", "best_threshold_all_pairs",
                                                 "accuracy_mean_detected_pairs_only", "eer", "tar_at_far_1e-3")}
    return out


def choose_snorm(E: ct.Embeddings, seed: int, target: float, k_cohort: int) -> tuple[float, float, list]:
    """beta (and mu) for the cohort normalisation, picked on the calibration half of one seed."""
    S = ct.make_split(E, seed, 0)
    gal = S.people_multi
    g_idx = [i for p in gal for i in S.enroll_of[p]]
    g_lab = [E.people[i] for i in g_idx]
    p_idx = [S.probe_of[p] for p in gal if S.half_of[p] == 0] + \
            [S.single_img[p] for p in S.singles if S.half_of[p] == 0]
    lab = [E.people[i] for i in p_idx]
    # mu: mean cohort distance over these calibration probes (centres the adjustment)
    sc0 = make_scorer("snorm", beta=1.0, k_cohort=k_cohort, mu=0.0)(E.emb[g_idx], g_lab, E.emb[p_idx])
    plain = make_scorer("min")(E.emb[g_idx], g_lab, E.emb[p_idx])
    mu = float(np.mean(plain.best_d - sc0.best_d))
    grid = []
    for beta in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0):
        sc = make_scorer("snorm", beta=beta, k_cohort=k_cohort, mu=mu)(E.emb[g_idx], g_lab, E.emb[p_idx])
        c = M.threshold_for_fpir_from_scores(sc, lab, target, None)
        grid.append((beta, c.fnir))
    best = min(grid, key=lambda g: (g[1], g[0]))
    return best[0], mu, grid


def pct(x: float) -> str:
    return f"{100 * x:5.2f}%"


def fmt(s: dict[str, float]) -> str:
    return (f"FPIR {pct(s['fpir_mean'])} ({pct(s['fpir_min'])}..{pct(s['fpir_max'])})  "
            f"FNIR {pct(s['fnir_mean'])} ({pct(s['fnir_min'])}..{pct(s['fnir_max'])})")


def timing_bench(root: Path, pack: str, n: int, seed: int) -> dict[str, float]:
    """Single-process, single-thread timing on n random LFW images: base analyze vs + flip."""
    import cv2

    from facedb.analysis import imaging
    from facedb.analysis.engines import load_engine

    cv2.setNumThreads(1)
    eng = load_engine(pack)
    rel = lfw.list_images(root)
    pick = np.random.default_rng(seed).choice(len(rel), size=n, replace=False)
    ims = [imaging.load(str(root / rel[i])).pixels for i in pick]
    t_det, t_feat, t_flip, n_f = [], [], [], 0
    for bgr in ims:
        a = time.perf_counter()
        rows = eng.detect(bgr)
        b = time.perf_counter()
        tf = tfl = 0.0
        for row in rows:
            c0 = time.perf_counter()
            al = eng.align(bgr, row)
            eng.features([al])
            c1 = time.perf_counter()
            eng.features([cv2.flip(al, 1)])
            c2 = time.perf_counter()
            tf += c1 - c0
            tfl += c2 - c1
            n_f += 1
        t_det.append(b - a)
        t_feat.append(tf)
        t_flip.append(tfl)
    t_det, t_feat, t_flip = (np.array(v) * 1000 for v in (t_det, t_feat, t_flip))
    return {"n_images": n, "n_faces": n_f, "detect_ms_median": float(np.median(t_det)),
            "align_feature_ms_median": float(np.median(t_feat)), "flip_feature_ms_median": float(np.median(t_flip)),
            "detect_ms_mean": float(t_det.mean()), "align_feature_ms_mean": float(t_feat.mean()),
            "flip_feature_ms_mean": float(t_flip.mean()),
            "base_ms_mean": float((t_det + t_feat).mean()), "flip_extra_ms_mean": float(t_flip.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=ct.DEFAULT_LFW)
    ap.add_argument("--cache", type=Path, default=ct.DEFAULT_CACHE, help="calibrate_threshold's embedding cache")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--target-fpir", type=float, default=0.01)
    ap.add_argument("--margins", default="0,0.01,0.02,0.03,0.04,0.05,0.06,0.08,0.10,0.12,0.15,0.20")
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument("--bench", type=int, default=300, help="images for the single-process timing (0: skip)")
    ap.add_argument("--variants", default="", help="comma list to run only some variants")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    t_run = time.perf_counter()

    variants: list[tuple[str, str, str]] = [  # name, embedding, scorer
        ("baseline (min)", "base", "min"),
        ("(c) top2 mean", "base", "top2"),
        ("(d) centroid", "base", "centroid"),
        ("(d) min+centroid", "base", "min+cen"),
        ("(d) snorm-10", "base", "snorm"),
        ("(a) flip", "flip", "min"),
        ("(a)+(c) flip+top2", "flip", "top2"),
        ("(a)+(d) flip+centroid", "flip", "centroid"),
        ("(a)+(d) flip+min+centroid", "flip", "min+cen"),
        ("(a)+(d) flip+snorm-10", "flip", "snorm"),
    ]
    if a.variants:
        keep = {v.strip() for v in a.variants.split(",")}
        variants = [v for v in variants if v[0] in keep or v[0].split(" ", 1)[-1] in keep]
    root = lfw.require_lfw(a.lfw)
    need_flip = a.embed_only or any(ek != "base" for _, ek, _ in variants)
    E0 = ct.embed_lfw(root, a.cache, PACKS["base"], a.workers, None)
    F = ct.embed_lfw(root, a.cache, PACKS["flip"], a.workers, None) if need_flip else None
    if a.embed_only:
        return 0

    embs = {"base": E0.emb}
    check: dict[str, Any] = {}
    if F is not None:
        same_det = bool(np.array_equal(E0.detected, F.detected))
        print(f"[check] same detected set: {same_det}", flush=True)
        check = {"same_detected_set": same_det}
        embs["flip"] = F.emb
        det = E0.detected & F.detected
        check["cos_base_vs_flip_mean"] = float(np.sum(E0.emb[det] * F.emb[det], axis=1).mean())
    seeds = list(range(a.seeds))
    margins = [float(m) for m in a.margins.split(",") if m]
    R: dict[str, Any] = {"check": check, "target_fpir": a.target_fpir, "seeds": seeds, "variants": {}}
    verif_done: dict[str, dict] = {}
    for name, ek, sk in variants:
        t0 = time.perf_counter()
        E = E0.with_emb(embs[ek])
        extra: dict[str, Any] = {}
        if sk == "min":
            scorer = None  # the untouched metrics.subject_scores
        elif sk == "snorm":
            beta, mu, grid = choose_snorm(E, seeds[0], a.target_fpir, 10)
            extra = {"beta": beta, "mu": mu, "beta_grid_calib_fnir_seed0": grid}
            scorer = make_scorer("snorm", beta=beta, k_cohort=10, mu=mu)
        else:
            scorer = make_scorer(sk)
        res = protocol(E, root, seeds, a.target_fpir, margins, scorer, ek not in verif_done)
        if ek in verif_done:
            res["verification"] = verif_done[ek]
        else:
            verif_done[ek] = res["verification"]
        res.update(extra)
        res["embedding"], res["scorer"] = ek, sk
        R["variants"][name] = res
        v = res["verification"]
        print(f"\n== {name}  [{time.perf_counter() - t0:.0f}s]  recommended threshold {res['threshold']:.2f} "
              f"(calibrated median {res['threshold_median']:.4f}, {res['threshold_min']:.4f}..{res['threshold_max']:.4f})"
              + (f"  beta {extra['beta']}" if extra else ""), flush=True)
        print(f"   LFW pairs 10-fold {100 * v['accuracy_mean']:.2f} % ± {100 * v['accuracy_std']:.2f}", flush=True)
        for size in res["gallery_sizes"]:
            print(f"   gallery {size:>5} @ {res['threshold']:.2f}: {fmt(res['report'][size])}", flush=True)
            print(f"   gallery {size:>5} own thr: {fmt(res['report_exact'][size])}; +margin: "
                  f"{fmt(res['report_exact_margin'][size])}", flush=True)
        print(f"   margin rule calib FNIR gain {100 * res['margin_gain_calib_fnir']:.2f} points", flush=True)

    if F is not None:
        R["timing_flip_pass"] = {"workers": F.workers, "wall_seconds": F.wall_seconds, "cached": F.cached,
                                 "base_wall_seconds": E0.wall_seconds}
    if a.bench:
        R["timing_bench"] = timing_bench(root, PACKS["base"], a.bench, 0)
    R["run_seconds"] = time.perf_counter() - t_run

    print("\n=== summary: REPORT half, recommended (median-calibrated, floored) threshold, mean (min..max) over "
          f"{len(seeds)} seeds ===")
    print(f"{'variant':<28} {'thr':>5} {'pairs acc':>9} | {'gallery 1000: FPIR / FNIR':<50} | gallery max: FPIR / FNIR")
    for name, res in R["variants"].items():
        sz = res["gallery_sizes"]
        c = [f"{pct(res['report'][s]['fpir_mean'])} ({pct(res['report'][s]['fpir_min'])}..{pct(res['report'][s]['fpir_max'])})"
             f" / {pct(res['report'][s]['fnir_mean'])} ({pct(res['report'][s]['fnir_min'])}..{pct(res['report'][s]['fnir_max'])})"
             for s in sz]
        print(f"{name:<28} {res['threshold']:>5.2f} {100 * res['verification']['accuracy_mean']:>8.2f}% | {c[0]:<50} | {c[1]}")
    tf = R.get("timing_flip_pass")
    if tf:
        print(f"\nembedding passes ({tf['workers']} workers, every face): sface {tf['base_wall_seconds']:.0f} s, "
              f"sface-flip {tf['wall_seconds']:.0f} s" + (" (cached: the times of the original passes)"
                                                           if tf["cached"] else ""))
    if "timing_bench" in R:
        tb = R["timing_bench"]
        print(f"timing, 1 process / 1 thread, {tb['n_images']} images: detect {tb['detect_ms_mean']:.1f} ms, "
              f"align+feature {tb['align_feature_ms_mean']:.1f} ms, extra flip+feature {tb['flip_feature_ms_mean']:.1f} "
              f"ms (medians {tb['detect_ms_median']:.1f} / {tb['align_feature_ms_median']:.1f} / "
              f"{tb['flip_feature_ms_median']:.1f})")
    print(f"run {R['run_seconds']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps(ct._jsonable(R), indent=1, allow_nan=False))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
