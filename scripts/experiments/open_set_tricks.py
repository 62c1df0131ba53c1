#!/usr/bin/env python
"""Do cheap test-time tricks bring the sface pack to FNIR <= 5 % at FPIR <= 1 % (1:N, LFW)?

Same protocol and code as ``scripts/calibrate_threshold.py`` (design ``full``: one gallery of
every person with >= 2 detected images, held-out probes and single-image strangers split by
person into a calibration and a report half; threshold calibrated for FPIR <= 1 % at the largest
gallery, recommended threshold = median over 10 seeds floored to 0.01, reported on the report
half at gallery 1,000 and 1,559). Only two things vary:

* the **embedding** of every image (gallery and probe alike):

  - ``base``: ``normalise(feature(aligned))`` -- what ``facedb/engine/sface.py`` does;
  - ``flip``: ``normalise(feature(aligned) + feature(cv2.flip(aligned, 1)))`` (raw features summed);
  - ``flipn``: ``normalise(normalise(f) + normalise(f_flip))`` (unit features summed);

* the **subject score** (the distance a gallery subject gets for a probe):

  - ``min``: the closest sample (what facedb does);
  - ``top2``: the mean of the 2 closest samples when the subject has >= 2 gallery samples;
  - ``centroid``: distance to the normalised mean of the subject's samples;
  - ``min+cen``: mean of ``min`` and ``centroid``;
  - ``snorm-K``: ``min`` minus ``beta`` x (mean of the 2nd..(K+1)th best subject distances - mu),
    i.e. a probe-side cohort normalisation (a soft, many-subject form of the margin rule); beta is
    chosen on the calibration half of seed 0 only.

The flip pass re-runs detection + alignment exactly like ``SFaceEngine.analyze`` and records for
the largest face the raw feature of the aligned crop and of its mirror image, plus the time of
each step, into ``--cache`` (default /tmp/facedb-lfw-cache-flip). ``base`` uses the cache of
``calibrate_threshold.py`` (checked to be identical to the re-computed unflipped features).

Usage::

    python scripts/experiments/open_set_tricks.py --json /tmp/open_set_tricks.json
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
for p in (ROOT, ROOT / "scripts"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import calibrate_threshold as ct  # noqa: E402
from facedb.evaluation import metrics as M  # noqa: E402

# -- flip embedding pass --------------------------------------------------------------------

_ENGINE: Any = None


def _init_worker(pack: str) -> None:
    import cv2

    cv2.setNumThreads(1)
    global _ENGINE
    from facedb.engine import load_engine

    _ENGINE = load_engine(pack)


def _embed_flip(path: str) -> tuple[np.ndarray | None, np.ndarray | None, int, np.ndarray, str]:
    """Largest face: (raw feature, raw feature of the mirrored crop, n faces,
    [load s, detect s, align+feature s (all faces), flip+feature s (all faces)], error)."""
    import cv2

    from facedb import imaging
    from facedb.errors import ImageError

    eng = _ENGINE
    t = np.zeros(4)
    t0 = time.perf_counter()
    try:
        im = imaging.load(path)
    except ImageError as exc:
        return None, None, 0, t, str(exc)
    t1 = time.perf_counter()
    t[0] = t1 - t0
    bgr = im.pixels
    rows = eng.detect(bgr)
    t[1] = time.perf_counter() - t1
    h, w = bgr.shape[:2]
    faces = []
    for row in rows:
        a0 = time.perf_counter()
        aligned = eng.align(bgr, row)
        f = eng.features([aligned]).reshape(-1).astype(np.float32).copy()
        a1 = time.perf_counter()
        ff = eng.features([cv2.flip(aligned, 1)]).reshape(-1).astype(np.float32).copy()
        a2 = time.perf_counter()
        t[2] += a1 - a0
        t[3] += a2 - a1
        x, y, bw, bh = (float(v) for v in row[:4])
        x1, y1, x2, y2 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
        faces.append((max(0.0, x2 - x1) * max(0.0, y2 - y1), f, ff))
    if not faces:
        return None, None, 0, t, ""
    faces = sorted(faces, key=lambda r: r[0], reverse=True)  # == sort_largest_first (stable)
    return faces[0][1], faces[0][2], len(faces), t, ""


def flip_pass(lfw: Path, cache: Path, pack: str, workers: int) -> dict[str, Any]:
    rel = ct.list_images(lfw)
    tag = f"{pack}-n{len(rel)}"
    cache.mkdir(parents=True, exist_ok=True)
    f_npz, f_meta = cache / f"{tag}-flip.npz", cache / f"{tag}-flip-meta.json"
    if f_npz.is_file() and f_meta.is_file():
        meta = json.loads(f_meta.read_text())
        if meta.get("rel_paths") == rel:
            print(f"[flip] using cached {f_npz}", flush=True)
            z = np.load(f_npz)
            return {"rel_paths": rel, "feat": z["feat"], "feat_flip": z["feat_flip"], "n_faces": z["n_faces"],
                    "times": z["times"], "wall_seconds": meta["wall_seconds"], "workers": meta["workers"],
                    "cached": True}
    from facedb.engine import load_engine

    dim = load_engine(pack).info.dim
    n = len(rel)
    feat = np.full((n, dim), np.nan, dtype=np.float32)
    feat_flip = feat.copy()
    n_faces = np.zeros(n, dtype=np.int64)
    times = np.zeros((n, 4))
    errors: dict[str, str] = {}
    print(f"[flip] {n} images with {workers} worker(s)...", flush=True)
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(pack,)) as pool:
        for i, (f, ff, nf, t, err) in enumerate(pool.imap(_embed_flip, [str(lfw / r) for r in rel], chunksize=16)):
            if f is not None:
                feat[i], feat_flip[i] = f, ff
            n_faces[i], times[i] = nf, t
            if err:
                errors[rel[i]] = err
            if (i + 1) % 1000 == 0:
                el = time.perf_counter() - t0
                print(f"[flip] {i + 1}/{n}  {el:.0f}s", flush=True)
    wall = time.perf_counter() - t0
    np.savez(f_npz, feat=feat, feat_flip=feat_flip, n_faces=n_faces, times=times)
    f_meta.write_text(json.dumps({"rel_paths": rel, "pack": pack, "wall_seconds": wall, "workers": workers,
                                  "errors": errors}))
    return {"rel_paths": rel, "feat": feat, "feat_flip": feat_flip, "n_faces": n_faces, "times": times,
            "wall_seconds": wall, "workers": workers, "cached": False}


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


class _MetricsShim:
    """``metrics`` with ``subject_scores`` swapped, handed to calibrate_threshold as its ``M``."""

    def __init__(self, scorer: Callable[..., M.SubjectScores]) -> None:
        self.subject_scores = scorer

    def __getattr__(self, name: str) -> Any:
        return getattr(M, name)


def with_scorer(scorer: Callable[..., M.SubjectScores] | None, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    old = ct.M
    ct.M = _MetricsShim(scorer) if scorer is not None else M
    try:
        return fn(*args, **kw)
    finally:
        ct.M = old


# -- the protocol of calibrate_threshold.main (robustness + recommendation) ------------------


def protocol(E: ct.Embeddings, lfw: Path, seeds: list[int], target: float, margins: list[float],
             scorer: Callable[..., M.SubjectScores] | None, do_verification: bool) -> dict[str, Any]:
    S = ct.make_split(E, seeds[0], 0)
    D = with_scorer(scorer, ct.run_design, "full", E, S, [1000, "max"], target, margins, {})
    base = D["recommended"]["threshold"]
    fixed = sorted({round(base + k / 100, 2) for k in range(-3, 4)})
    rb = with_scorer(scorer, ct.seed_robustness, E, seeds, target, 0, margins, fixed)
    rec = ct.floor2(rb["threshold_median"])
    if f"fixed_{rec:.2f}" not in rb["per_seed"][0]["report"]["1000"]:
        rb = with_scorer(scorer, ct.seed_robustness, E, seeds, target, 0, margins, sorted(set(fixed) | {rec}))
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


def timing_bench(lfw: Path, pack: str, n: int, seed: int) -> dict[str, float]:
    """Single-process, single-thread timing on n random LFW images: base analyze vs + flip."""
    import cv2

    from facedb import imaging
    from facedb.engine import load_engine

    cv2.setNumThreads(1)
    eng = load_engine(pack)
    rel = ct.list_images(lfw)
    pick = np.random.default_rng(seed).choice(len(rel), size=n, replace=False)
    ims = [imaging.load(str(lfw / rel[i])).pixels for i in pick]
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
    ap.add_argument("--cache", type=Path, default=Path("/tmp/facedb-lfw-cache"), help="calibrate_threshold's cache")
    ap.add_argument("--flip-cache", type=Path, default=Path("/tmp/facedb-lfw-cache-flip"))
    ap.add_argument("--pack", default="sface")
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
        ("(a') flip, unit sum", "flipn", "min"),
        ("(a)+(c) flip+top2", "flip", "top2"),
        ("(a)+(d) flip+centroid", "flip", "centroid"),
        ("(a)+(d) flip+min+centroid", "flip", "min+cen"),
        ("(a)+(d) flip+snorm-10", "flip", "snorm"),
    ]
    if a.variants:
        keep = {v.strip() for v in a.variants.split(",")}
        variants = [v for v in variants if v[0] in keep or v[0].split(" ", 1)[-1] in keep]
    need_flip = a.embed_only or any(ek != "base" for _, ek, _ in variants)
    F = flip_pass(a.lfw, a.flip_cache, a.pack, a.workers) if need_flip else None
    if a.embed_only:
        return 0
    E0 = ct.embed_lfw(a.lfw, a.cache, a.pack, a.workers, None)

    def E_with(emb: np.ndarray) -> ct.Embeddings:
        return ct.Embeddings(E0.rel_paths, E0.people, emb.astype(np.float32), E0.emb_central, E0.n_faces,
                             E0.seconds, E0.wall_seconds, E0.workers, E0.fingerprint, True)

    embs = {"base": E0.emb}
    check: dict[str, Any] = {}
    if F is not None:
        assert F["rel_paths"] == E0.rel_paths
        det1 = np.isfinite(F["feat"][:, 0])
        same_det = bool(np.array_equal(E0.detected, det1))
        dev = float(np.nanmax(np.abs(unit(F["feat"][det1]) - E0.emb[det1]))) if same_det else float("nan")
        print(f"[check] same detected set: {same_det}; max |unflipped - cached| = {dev:.2e}", flush=True)
        check = {"same_detected_set": same_det, "max_abs_dev_unflipped_vs_cache": dev}
        feat, fflip = F["feat"], F["feat_flip"]
        embs["flip"], embs["flipn"] = unit(feat + fflip), unit(unit(feat) + unit(fflip))
        cos = np.sum(unit(feat[det1]) * unit(fflip[det1]), axis=1)
        check["cos_feature_vs_flipped_feature_mean"] = float(cos.mean())
        for k in ("flip", "flipn"):
            embs[k][~det1] = np.nan
    seeds = list(range(a.seeds))
    margins = [float(m) for m in a.margins.split(",") if m]
    R: dict[str, Any] = {"check": check, "target_fpir": a.target_fpir, "seeds": seeds, "variants": {}}
    verif_done: dict[str, dict] = {}
    for name, ek, sk in variants:
        t0 = time.perf_counter()
        E = E_with(embs[ek])
        extra: dict[str, Any] = {}
        if sk == "min":
            scorer = None  # the untouched metrics.subject_scores
        elif sk == "snorm":
            beta, mu, grid = choose_snorm(E, seeds[0], a.target_fpir, 10)
            extra = {"beta": beta, "mu": mu, "beta_grid_calib_fnir_seed0": grid}
            scorer = make_scorer("snorm", beta=beta, k_cohort=10, mu=mu)
        else:
            scorer = make_scorer(sk)
        res = protocol(E, a.lfw, seeds, a.target_fpir, margins, scorer, ek not in verif_done)
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
        tt = F["times"][np.isfinite(F["feat"][:, 0])] * 1000
        R["timing_flip_pass"] = {
            "workers": F["workers"], "wall_seconds": F["wall_seconds"], "cached": F["cached"],
            "load_ms_mean": float(tt[:, 0].mean()), "detect_ms_mean": float(tt[:, 1].mean()),
            "align_feature_ms_mean": float(tt[:, 2].mean()), "flip_feature_ms_mean": float(tt[:, 3].mean()),
            "align_feature_ms_median": float(np.median(tt[:, 2])),
            "flip_feature_ms_median": float(np.median(tt[:, 3])),
        }
    if a.bench:
        R["timing_bench"] = timing_bench(a.lfw, a.pack, a.bench, 0)
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
        print(f"\ntiming in the 2-worker pass (busy machine): load {tf['load_ms_mean']:.1f} ms, detect {tf['detect_ms_mean']:.1f} ms, "
              f"align+feature {tf['align_feature_ms_mean']:.1f} ms, extra flip+feature {tf['flip_feature_ms_mean']:.1f} "
              f"ms (median {tf['flip_feature_ms_median']:.1f}) per image")
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
