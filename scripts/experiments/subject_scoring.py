#!/usr/bin/env python
"""Which subject score names fewer people wrong and misses fewer? (LFW open set, sface pack)

Protocol: exactly the split of ``facedb.evaluation.calibration`` (``scripts/calibrate_threshold.py``) (design ``full``, its
``make_split``): the gallery is every LFW person with >= 2 detected photos, one photo each held
out as the mated probe and the others enrolled; the people with a single photo are strangers;
probes and strangers are split by person into a calibration half and a report half, for 10 seeds.
Nested galleries of 100 / 1,000 / all people are prefixes of a seeded order (the held-out probes
of multi-photo people outside a smaller gallery are strangers to it). For every rule and seed the
threshold with FPIR <= 1 % on the calibration half of the largest gallery is found, and FNIR /
FPIR are measured on the report half at every gallery size with (1) that seed's calibrated
threshold and (2) one fixed default (the median of the 10 calibrated thresholds).

Embeddings, both from the package's own pipeline (``facedb.evaluation.calibration`` (``scripts/calibrate_threshold.py``)'s
``embed_lfw``, i.e. ``facedb.evaluation.runner.embed``: ``facedb.analysis.pipeline.Analyzer`` workers,
largest face), cached under ``--cache`` (the calibration's cache, never in the repository):
``base`` = the ``sface`` pack; ``flip`` = the ``sface-flip`` pack, ``normalise(f + f_mirrored)``
of the same aligned crop, for gallery and probes alike; ``flipG`` = flip for the gallery only.
Quality signals are the faces' ``Face.quality`` (YuNet score, visible box size, inter-ocular
distance, variance of the Laplacian of the aligned crop, raw feature norm).

(The report in ``docs/experiments/subject_scoring.md`` was made at commit 0ef24ed by an earlier
version of this script, which also computed ``flipn`` = the sum of the two unit features and a
``flip_cos`` quality signal in a private worker pool; they need the raw mirrored feature, which
the pipeline does not return, and are no longer computed.)

Scores (a distance-like number per probe and gallery subject; smaller is more alike, a probe is
named when the best one is <= threshold):

* ``best``: the subject's closest sample (facedb today);
* ``template``: distance to the renormalised mean of the subject's unit embeddings;
  ``template_qw``: the mean weighted by each sample's raw feature norm;
* ``min(best,template)`` and ``blend a``: ``a * best + (1 - a) * template``;
* ``tnorm`` (probe-side cohort): ``(s - mean_p) / std_p`` over the probe's scores against every
  gallery subject; ``tnorm-topK``: ``s - mean`` of the probe's 2nd..(K+1)th best subject scores
  (the probe's nearest impostor cohort);
* ``znorm`` (subject-side cohort from the gallery itself): ``(s - mu_S) / sd_S`` where mu_S, sd_S
  are the scores of subject S against every *other* gallery subject's enrolled samples;
  ``znorm-topK``: ``s - mean`` of S's K smallest impostor scores in the gallery;
* ``snorm``: mean of the tnorm and znorm z-scores.

Quality floor (f): at enrollment, gallery samples whose signal is below the q-quantile of that
signal over all LFW faces are rejected (a subject left without samples is not enrolled, and its
probe becomes a stranger); probes are not filtered.

Usage::

    python scripts/experiments/subject_scoring.py --json /tmp/facedb-subject-scoring/result.json \\
        --md /tmp/facedb-subject-scoring/result.md
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation import calibration as ct
from facedb.evaluation import lfw, runner
from facedb.evaluation import metrics as M

DEFAULT_YALE = lfw.find_yale()
#: The quality signals of every face (``Face.quality``, as ``runner.embed`` records them).
QUALITY = runner.QUALITY_SIGNALS


# -- embedding passes ----------------------------------------------------------------------------


@dataclass
class Data:
    """One dataset embedded by the ``sface`` pack (``base``) and the ``sface-flip`` pack (``flip``:
    ``normalise(f + f_mirrored)``), both through ``facedb.evaluation.runner.embed``; rows in
    ``lfw.list_images`` / ``runner.load_dataset`` order, NaN where no face."""

    name: str
    rel: list[str]
    people: list[str]
    base: np.ndarray  # (n, 128) unit; NaN rows where no face
    flip: np.ndarray  # (n, 128) unit, the same faces embedded with their mirror image
    quality: np.ndarray  # (n, len(QUALITY)) of the largest face (the sface pass)
    n_faces: np.ndarray
    seconds: dict[str, float]  # embedding pass wall seconds, per pack
    fingerprint: str
    embedder: str
    flip_quality: np.ndarray | None = None

    @property
    def detected(self) -> np.ndarray:
        return np.isfinite(self.base[:, 0])

    def emb(self, kind: str) -> np.ndarray:
        if kind == "base":
            return self.base
        if kind == "flip":
            return self.flip
        raise ValueError(kind)

    def as_ct(self, kind: str = "base") -> ct.Embeddings:
        e = self.emb(kind).astype(np.float32)
        return ct.Embeddings(self.rel, self.people, e, e, self.n_faces, self.seconds.get(kind, 0.0), 2,
                             self.fingerprint, True, "sface-flip" if kind == "flip" else "sface", self.quality)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _rows(e: runner.Embedded, ds: runner.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = {str(p): i for i, p in enumerate(ds.paths)}
    n, dim = len(ds.paths), e.vectors.shape[1]
    emb = np.full((n, dim), np.nan, np.float32)
    q = np.full((n, len(QUALITY)), np.nan)
    nf = np.zeros(n, np.int64)
    idx = np.array([index[str(p)] for p in e.paths], np.int64)
    if len(idx):
        emb[idx], q[idx], nf[idx] = e.vectors, e.quality, e.n_faces
    return emb, q, nf


def embed_dataset(name: str, root: Path, name_from: str, cache: Path, workers: int) -> Data:
    """Both packs through the package's pipeline (cached under ``cache``: the same files as
    ``facedb.evaluation.calibration`` (``scripts/calibrate_threshold.py``) for LFW)."""
    from facedb.analysis.engines import load_engine

    eng = load_engine("sface")
    if name_from == "dir":  # LFW: exactly calibrate_threshold's pass and cache
        out = {pack: ct.embed_lfw(root, cache, pack, workers) for pack in ("sface", "sface-flip")}
        b, f = out["sface"], out["sface-flip"]
        return Data(name, b.rel_paths, b.people, b.emb, f.emb, b.quality, b.n_faces,
                    {"base": b.wall_seconds, "flip": f.wall_seconds}, eng.info.fingerprint, eng.embedder,
                    f.quality)
    ds = runner.load_dataset(root, name_from)
    rel = [str(p.relative_to(root)) for p in ds.paths]
    e = {pack: runner.embed(ds, pack, None, workers, cache=cache) for pack in ("sface", "sface-flip")}
    base, q, nf = _rows(e["sface"], ds)
    flip, fq, _ = _rows(e["sface-flip"], ds)
    return Data(name, rel, ds.labels, base, flip, q, nf,
                {"base": e["sface"].wall_seconds, "flip": e["sface-flip"].wall_seconds},
                eng.info.fingerprint, eng.embedder, fq)


def check_passes(D: Data) -> dict[str, Any]:
    """The two packs found the same faces (same detector, same crops): same images, and the same
    quality signals of the unflipped crop."""
    a, b = D.detected, np.isfinite(D.flip[:, 0])
    same = bool(np.array_equal(a, b))
    dev = float(np.nanmax(np.abs(D.quality[a & b] - D.flip_quality[a & b]))) \
        if D.flip_quality is not None and (a & b).any() else float("nan")
    return {"same_detected_set": same, "max_abs_dev_quality_sface_vs_flip": dev,
            "n_detected": int(a.sum()), "n_images": len(a)}


# -- subject scores ------------------------------------------------------------------------------


@dataclass
class Gallery:
    """One gallery: samples sorted by subject, plus what every rule needs."""

    subjects: np.ndarray  # object labels, one per subject
    G: np.ndarray  # (m, d) unit samples, grouped by subject
    starts: np.ndarray
    counts: np.ndarray
    sub_of_sample: np.ndarray  # (m,) subject index
    weights: np.ndarray  # (m,) raw feature norm of each sample
    _cache: dict[str, Any]


def make_gallery(X: np.ndarray, labels: list[str], weights: np.ndarray) -> Gallery:
    index: dict[str, int] = {}
    inv = np.array([index.setdefault(lab, len(index)) for lab in labels], np.int64)
    order = np.argsort(inv, kind="stable")
    inv_s = inv[order]
    subj = np.empty(len(index), dtype=object)
    for lab, j in index.items():
        subj[j] = lab
    starts = np.searchsorted(inv_s, np.arange(len(index)))
    counts = np.bincount(inv_s, minlength=len(index))
    return Gallery(subj, X[order], starts, counts, inv_s, weights[order], {})


#: A sample farther than this (cosine distance) from the template of its subject's *other*
#: samples is left out of the robust template: LFW's best 1:1 verification threshold (README), so
#: a sample that would not even verify against the rest of its subject.
OUTLIER_DISTANCE = 0.677


def templates(g: Gallery, weighted: bool = False, robust: bool = False) -> np.ndarray:
    key = f"tmpl:{weighted}:{robust}"
    if key not in g._cache:
        w = g.weights[:, None].astype(np.float32) if weighted else np.ones((len(g.G), 1), np.float32)
        if robust:
            sums = np.add.reduceat(g.G, g.starts, axis=0)
            loo = sums[g.sub_of_sample] - g.G  # the subject's other samples, summed
            n_other = g.counts[g.sub_of_sample] - 1
            d_loo = 1.0 - np.sum(unit(loo + (n_other[:, None] == 0)) * g.G, axis=1)
            drop = (g.counts[g.sub_of_sample] >= 3) & (d_loo > OUTLIER_DISTANCE)
            w = np.where(drop[:, None], 0.0, w).astype(np.float32)
            g._cache["robust_dropped"] = int(drop.sum())
        g._cache[key] = unit(np.add.reduceat(g.G * w, g.starts, axis=0))
    return g._cache[key]


def base_scores(g: Gallery, P: np.ndarray, kind: str, pkey: str | None = None) -> np.ndarray:
    """(n_probe, n_subject) distance-like scores of the plain rules (cached per probe set ``pkey``)."""
    if pkey is not None:
        key = f"base:{pkey}:{kind}"
        if key not in g._cache:
            g._cache[key] = base_scores(g, P, kind).astype(np.float32)
        return g._cache[key]
    if kind in ("template", "template_qw", "template_robust"):
        return np.clip(1.0 - P @ templates(g, kind == "template_qw", kind == "template_robust").T, 0.0, 2.0)
    if kind == "mean":  # mean of the sample distances = 1 - p . (unnormalised mean)
        mean = np.add.reduceat(g.G, g.starts, axis=0) / g.counts[:, None]
        return np.clip(1.0 - P @ mean.T, 0.0, 2.0)
    D = np.clip(1.0 - P @ g.G.T, 0.0, 2.0)
    dmin = np.minimum.reduceat(D, g.starts, axis=1)
    if kind == "best":
        return dmin
    dt = np.clip(1.0 - P @ templates(g).T, 0.0, 2.0)
    if kind == "min_bt":
        return np.minimum(dmin, dt)
    if kind.startswith("blend"):
        a = float(kind[5:])
        return a * dmin + (1 - a) * dt
    raise ValueError(kind)


def gallery_impostor_scores(g: Gallery, kind: str) -> np.ndarray:
    """(m, n_subject): scores of every enrolled sample against every subject, own subject = NaN."""
    key = f"imp:{kind}"
    if key not in g._cache:
        s = base_scores(g, g.G, kind).astype(np.float64)
        s[np.arange(len(g.G)), g.sub_of_sample] = np.nan
        g._cache[key] = s
    return g._cache[key]


def znorm_stats(g: Gallery, kind: str, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    key = f"z:{kind}:{k}"
    if key not in g._cache:
        s = gallery_impostor_scores(g, kind)
        if k is None:
            mu, sd = np.nanmean(s, axis=0), np.nanstd(s, axis=0)
        else:
            filled = np.where(np.isnan(s), np.inf, s)
            kk = min(k, filled.shape[0] - 1)
            part = np.partition(filled, kk - 1, axis=0)[:kk]
            mu, sd = part.mean(axis=0), part.std(axis=0)
        g._cache[key] = (mu, np.maximum(sd, 1e-6))
    return g._cache[key]


def tnorm_full(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(axis=1, keepdims=True)) / np.maximum(s.std(axis=1, keepdims=True), 1e-6)


def tnorm_topk_shift(s: np.ndarray, k: int) -> np.ndarray:
    kk = min(k + 1, s.shape[1] - 1)
    part = np.sort(np.partition(s, kk, axis=1)[:, :kk + 1], axis=1)
    return s - part[:, 1:kk + 1].mean(axis=1, keepdims=True)


def rule_scores(rule: str, g: Gallery, P: np.ndarray, pkey: str | None = None) -> np.ndarray:
    """Score matrix of ``rule`` = "<base>" or "<base>|<norm>"."""
    base, _, norm = rule.partition("|")
    s = base_scores(g, P, base, pkey)
    if not norm:
        return s
    if norm == "tnorm":
        return tnorm_full(s)
    if norm.startswith("tnorm-top"):
        return tnorm_topk_shift(s, int(norm[9:]))
    if norm == "znorm":
        mu, sd = znorm_stats(g, base, None)
        return (s - mu) / sd
    if norm.startswith("znorm-top"):
        mu, _ = znorm_stats(g, base, int(norm[9:]))
        return s - mu
    if norm == "snorm":
        mu, sd = znorm_stats(g, base, None)
        return 0.5 * ((s - mu) / sd + tnorm_full(s))
    raise ValueError(rule)


def to_subject_scores(g: Gallery, s: np.ndarray) -> M.SubjectScores:
    bi = np.argmin(s, axis=1)
    r = np.arange(s.shape[0])
    best = s[r, bi]
    if s.shape[1] > 1:
        s2 = s.copy()
        s2[r, bi] = np.inf
        second = s2.min(axis=1)
    else:
        second = np.full(len(best), np.inf)
    return M.SubjectScores(subjects=g.subjects, best_label=g.subjects[bi], best_d=best.astype(np.float64),
                           second_d=second.astype(np.float64))


def closed_form_check(g: Gallery, P: np.ndarray) -> dict[str, float]:
    """The full-gallery T-norm and Z-norm statistics of the template rule from running sums only
    (what an index can maintain: sum and 128x128 second moment of the templates and of the
    samples, plus each subject's own sums), against the brute-force statistics used above."""
    T = templates(g).astype(np.float64)
    Pd = P.astype(np.float64)
    s = 1.0 - Pd @ T.T
    tbar, C = T.mean(axis=0), T.T @ T / len(T)
    pt = Pd @ tbar
    t_mu = 1.0 - pt
    t_sd = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", Pd, C, Pd) - pt ** 2, 0.0))
    G = g.G.astype(np.float64)
    sum_all, Q_all = G.sum(axis=0), G.T @ G
    n = len(G)
    mu_cf, sd_cf = np.empty(len(T)), np.empty(len(T))
    for j, (a, c) in enumerate(zip(g.starts, g.counts)):
        Gs = G[a:a + c]
        m = n - c
        mean_sim = T[j] @ (sum_all - Gs.sum(axis=0)) / m
        second = T[j] @ ((Q_all - Gs.T @ Gs) / m) @ T[j]
        mu_cf[j], sd_cf[j] = 1.0 - mean_sim, math.sqrt(max(second - mean_sim ** 2, 0.0))
    imp = gallery_impostor_scores(g, "template")
    return {"tnorm_mean_max_abs_err": float(np.abs(t_mu - s.mean(axis=1)).max()),
            "tnorm_std_max_abs_err": float(np.abs(t_sd - s.std(axis=1)).max()),
            "znorm_mean_max_abs_err": float(np.abs(mu_cf - np.nanmean(imp, axis=0)).max()),
            "znorm_std_max_abs_err": float(np.abs(sd_cf - np.nanstd(imp, axis=0)).max())}


# -- the protocol --------------------------------------------------------------------------------


@dataclass
class SeedSetup:
    seed: int
    split: ct.Split
    probe_idx: dict[str, list[int]]  # calib / report
    probe_lab: dict[str, list[str]]


def seed_setup(E: ct.Embeddings, seed: int, max_enroll: int = 0) -> SeedSetup:
    S = ct.make_split(E, seed, max_enroll)
    idx, lab = {}, {}
    for h, part in ((0, "calib"), (1, "report")):
        pi = [S.probe_of[p] for p in S.people_multi if S.half_of[p] == h] + \
             [S.single_img[p] for p in S.singles if S.half_of[p] == h]
        idx[part] = pi
        lab[part] = [E.people[i] for i in pi]
    return SeedSetup(seed, S, idx, lab)


def enrolled_indices(E: ct.Embeddings, st: SeedSetup, n_people: int, keep: np.ndarray | None,
                     fallback: np.ndarray | None = None) -> list[int]:
    """Enrolled samples of the first ``n_people``; with ``keep``, only those kept, except that with
    ``fallback`` (a quality per image) a person whose samples all fail keeps the best one."""
    out = []
    for p in st.split.people_multi[:n_people]:
        idx = st.split.enroll_of[p]
        kept = [i for i in idx if keep is None or keep[i]]
        if not kept and fallback is not None:
            kept = [max(idx, key=lambda i: fallback[i])]
        out += kept
    return out


def evaluate(rules: list[str], X: np.ndarray, E: ct.Embeddings, weights: np.ndarray, setups: list[SeedSetup],
             sizes: list[int], target: float, keep: np.ndarray | None = None,
             fixed_extra: dict[str, list[float]] | None = None, Xp: np.ndarray | None = None,
             fallback: np.ndarray | None = None) -> dict[str, Any]:
    """Per rule: per-seed calibrated thresholds and report-half FPIR/FNIR at every size.

    ``X`` embeds the gallery, ``Xp`` (default ``X``) the probes."""
    out: dict[str, Any] = {}
    raw: dict[str, list[dict[str, Any]]] = defaultdict(list)
    big = max(sizes)
    Xp = X if Xp is None else Xp
    for st in setups:
        gal = {}
        for n in sizes:
            gi = enrolled_indices(E, st, n, keep, fallback)
            gal[n] = make_gallery(X[gi], [E.people[i] for i in gi], weights[gi])
        P = {part: Xp[st.probe_idx[part]] for part in ("calib", "report")}
        for rule in rules:
            rec: dict[str, Any] = {"seed": st.seed, "report": {}, "scores": {}, "calib": {}}
            sc_cal = to_subject_scores(gal[big], rule_scores(rule, gal[big], P["calib"], "calib"))
            c = M.threshold_for_fpir_from_scores(sc_cal, st.probe_lab["calib"], target)
            rec["threshold"], rec["calib_fnir"], rec["calib_fpir"] = c.threshold, c.fnir, c.fpir
            for n in sizes:
                scc = sc_cal if n == big else to_subject_scores(gal[n], rule_scores(rule, gal[n], P["calib"], "calib"))
                rc = M.open_set_from_scores(scc, st.probe_lab["calib"], c.threshold)
                rec["calib"][n] = {"fpir": rc.fpir, "fnir": rc.fnir}
            rec["robust_dropped"] = gal[big]._cache.get("robust_dropped")
            for n in sizes:
                sc = to_subject_scores(gal[n], rule_scores(rule, gal[n], P["report"], "report"))
                rec["scores"][n] = sc
                r = M.open_set_from_scores(sc, st.probe_lab["report"], c.threshold)
                rec["report"][n] = {"fpir": r.fpir, "fnir": r.fnir, "misnamed": r.n_mated_misnamed,
                                    "unknown": r.n_mated_unknown, "n_mated": r.n_mated,
                                    "n_strangers": r.n_nonmated, "gallery_people": len(gal[n].subjects),
                                    "gallery_samples": int(len(gal[n].G))}
            raw[rule].append(rec)
    for rule, rows in raw.items():
        thr = np.array([r["threshold"] for r in rows])
        fixed = float(np.median(thr))
        res: dict[str, Any] = {"threshold_median": fixed, "threshold_min": float(thr.min()),
                               "threshold_max": float(thr.max()),
                               "calib_fnir_mean": float(np.mean([r["calib_fnir"] for r in rows])),
                               "calib_fpir_mean_by_size": {n: float(np.mean([r["calib"][n]["fpir"] for r in rows]))
                                                           for n in sizes},
                               "calib_fnir_mean_by_size": {n: float(np.mean([r["calib"][n]["fnir"] for r in rows]))
                                                           for n in sizes},
                               "robust_dropped_seed0": rows[0].get("robust_dropped"),
                               "per_seed_calibrated": {}, "fixed_median": {}, "fixed_grid": {}}
        for n in sizes:
            res["per_seed_calibrated"][n] = summarise([r["report"][n] for r in rows], target)
            fx = []
            for st, r in zip(setups, rows):
                o = M.open_set_from_scores(r["scores"][n], st.probe_lab["report"], fixed)
                fx.append({"fpir": o.fpir, "fnir": o.fnir, "misnamed": o.n_mated_misnamed, "unknown": o.n_mated_unknown})
            res["fixed_median"][n] = summarise(fx, target)
            for t in (fixed_extra or {}).get(rule, []):
                gx = []
                for st, r in zip(setups, rows):
                    o = M.open_set_from_scores(r["scores"][n], st.probe_lab["report"], t)
                    gx.append({"fpir": o.fpir, "fnir": o.fnir, "misnamed": o.n_mated_misnamed,
                               "unknown": o.n_mated_unknown})
                res["fixed_grid"].setdefault(f"{t:.4f}", {})[n] = summarise(gx, target)
        res["gallery_people"] = {n: rows[0]["report"][n]["gallery_people"] for n in sizes}
        res["gallery_samples"] = {n: rows[0]["report"][n]["gallery_samples"] for n in sizes}
        res["_rows"] = rows
        out[rule] = res
    return out


def summarise(rows: list[dict[str, Any]], target: float, fnir_target: float = 0.04) -> dict[str, Any]:
    f = np.array([r["fpir"] for r in rows])
    n = np.array([r["fnir"] for r in rows])
    return {"fpir_mean": float(f.mean()), "fpir_min": float(f.min()), "fpir_max": float(f.max()),
            "fnir_mean": float(n.mean()), "fnir_min": float(n.min()), "fnir_max": float(n.max()),
            "misnamed_mean": float(np.mean([r["misnamed"] for r in rows])),
            "unknown_mean": float(np.mean([r["unknown"] for r in rows])),
            "seeds_meeting": int(np.sum((f <= target + 1e-12) & (n <= fnir_target + 1e-12))),
            "seeds": len(rows)}


def fnir_by_enrolled(E: ct.Embeddings, setups: list[SeedSetup], res: dict[str, Any], size: int) -> dict[str, Any]:
    """FNIR at the per-seed calibrated threshold, by how many photos the person has enrolled."""
    buckets = ((1, 1), (2, 3), (4, 9), (10, 10 ** 9))
    miss = defaultdict(int)
    tot = defaultdict(int)
    for st, row in zip(setups, res["_rows"]):
        sc = row["scores"][size]
        thr = row["threshold"]
        enrolled = set(sc.subjects.tolist())
        for j, lab in enumerate(st.probe_lab["report"]):
            if lab not in enrolled:
                continue
            k = len(st.split.enroll_of[lab])
            b = next(f"{lo}-{hi}" if hi < 10 ** 9 else f"{lo}+" for lo, hi in buckets if lo <= k <= hi)
            tot[b] += 1
            if not (sc.best_d[j] <= thr and sc.best_label[j] == lab):
                miss[b] += 1
    return {b: {"probes": tot[b], "fnir": miss[b] / tot[b] if tot[b] else None} for b in sorted(tot)}


# -- other protocols -----------------------------------------------------------------------------


def yale_precision(D: Data, kind: str, splits: int) -> dict[str, float]:
    X, lab = D.emb(kind)[D.detected], [p for p, ok in zip(D.people, D.detected) if ok]
    out = {}
    for k in (1, 2):
        v = [M.precision_at_k(X, lab, k=k, seed=s) for s in range(splits)]
        out[f"precision_at_{k}"] = float(np.mean(v))
        out[f"precision_at_{k}_min"] = float(np.min(v))
    return out


def timing_bench(root: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """One process, one thread (OpenCV and onnxruntime): detect / align+embed / embed mirror, ms."""
    import cv2

    from facedb.analysis import imaging
    from facedb.analysis.engines.sface import SFaceEngine

    cv2.setNumThreads(1)
    eng = SFaceEngine(embedder="onnxruntime", threads=1)
    cv_eng = SFaceEngine(embedder="opencv")
    rel = lfw.list_images(root)
    pick = np.random.default_rng(seed).choice(len(rel), size=n, replace=False)
    ims = [imaging.load(str(root / rel[i])).pixels for i in pick]
    td, te, tf, tq, tcv = [], [], [], [], []
    for bgr in ims:
        a = time.perf_counter()
        rows = eng.detect(bgr)
        b = time.perf_counter()
        if len(rows) == 0:
            continue
        crop = eng.align(bgr, rows[0])
        eng.features([crop])
        c = time.perf_counter()
        eng.features([cv2.flip(crop, 1)])
        d = time.perf_counter()
        cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()
        e = time.perf_counter()
        cv_eng.features([cv_eng.align(bgr, rows[0])])  # today's OpenCV embedder, same moment
        f = time.perf_counter()
        for acc, dt in ((td, b - a), (te, c - b), (tf, d - c), (tq, e - d), (tcv, f - e)):
            acc.append(dt)
    ms = lambda v: float(np.median(v) * 1000)  # noqa: E731
    td_, te_, tf_, tcv_ = (np.array(v) for v in (td, te, tf, tcv))
    return {"images": len(td), "embedder": eng.embedder, "detect_ms": ms(td), "align_embed_ms": ms(te),
            "flip_embed_ms": ms(tf), "blur_ms": ms(tq), "opencv_align_embed_ms": ms(tcv),
            "detect_plus_embed_ms": ms(td_ + te_),
            "flip_extra_fraction_of_image": float(np.median(tf_ / (td_ + te_))),
            "ort_flip_vs_opencv_noflip": float(np.median((td_ + te_ + tf_) / (td_ + tcv_))),
            "ort_noflip_vs_opencv_noflip": float(np.median((td_ + te_) / (td_ + tcv_)))}


# -- report --------------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.2f}"


def row_text(name: str, r: dict[str, Any], sizes: list[int], key: str) -> str:
    cells = []
    for n in sizes:
        s = r[key][n]
        cells.append(f"{pct(s['fpir_mean'])} / {pct(s['fnir_mean'])} ({pct(s['fnir_min'])}–{pct(s['fnir_max'])}) "
                     f"[{s['seeds_meeting']}/{s['seeds']}]")
    return f"| {md_name(name)} | {r['threshold_median']:.4f} | {pct(r['calib_fnir_mean'])} | " + " | ".join(cells) + " |"


def md_name(rule: str) -> str:
    """A rule name for a markdown cell ("template|snorm" -> "template \\| snorm")."""
    return rule.replace("|", " \\| ")


def table(title: str, R: dict[str, Any], sizes: list[int], key: str, people: dict[int, int]) -> str:
    hdr = (f"\n{title}\n\n| rule | thr (median) | calib FNIR % | "
           + " | ".join(f"{people[n]} people: FPIR / FNIR % (min–max) [seeds ok]" for n in sizes) + " |\n"
           + "|---|---|---|" + "---|" * len(sizes))
    return hdr + "\n" + "\n".join(row_text(k, v, sizes, key) for k, v in R.items())


def strip_rows(R: Any) -> Any:
    if isinstance(R, dict):
        return {k: strip_rows(v) for k, v in R.items() if k != "_rows"}
    return R


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=ct.default_lfw())
    ap.add_argument("--yale", type=Path, default=DEFAULT_YALE)
    ap.add_argument("--cache", type=Path, default=ct.DEFAULT_CACHE, help="embedding cache folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--target-fpir", type=float, default=0.01)
    ap.add_argument("--sizes", default="100,1000,max")
    ap.add_argument("--timing", type=int, default=300, help="images for the 1-thread timing (0: skip)")
    ap.add_argument("--yale-splits", type=int, default=5)
    ap.add_argument("--embed-only", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    a = ap.parse_args(argv)
    t_run = time.perf_counter()

    a.lfw = lfw.require_lfw(a.lfw)
    L = embed_dataset("lfw", a.lfw, "dir", a.cache, a.workers)
    Y = embed_dataset("yale", a.yale, "prefix", a.cache, a.workers) if a.yale and a.yale.is_dir() else None
    R: dict[str, Any] = {"embedder": L.embedder, "fingerprint": L.fingerprint,
                         "checks": {"lfw": check_passes(L), **({"yale": check_passes(Y)} if Y else {})},
                         "embed_seconds": L.seconds}
    print(json.dumps(R["checks"]), flush=True)
    if a.embed_only:
        return 0
    seeds = list(range(a.seeds))
    E = L.as_ct("base")
    setups = [seed_setup(E, s) for s in seeds]
    n_multi = len(setups[0].split.people_multi)
    sizes = sorted({n_multi if s == "max" else min(int(s), n_multi) for s in a.sizes.split(",")})
    big = max(sizes)
    weights = L.quality[:, QUALITY.index("raw_norm")]
    md: list[str] = [f"# Subject scoring on LFW (sface, {L.embedder} embedder)",
                     f"\n`{' '.join(sys.argv)}`; {len(seeds)} seeds, target FPIR {a.target_fpir:.0%}; cells: "
                     "FPIR mean / FNIR mean (FNIR min–max over seeds) [seeds with FPIR <= 1 % and FNIR <= 4 %]"]

    # embeddings of (gallery, probes): flipG = mirror-averaged at enrollment only (no search cost)
    EMB = {"base": (L.emb("base"), L.emb("base")), "flip": (L.emb("flip"), L.emb("flip")),
           "flipG": (L.emb("flip"), L.emb("base"))}

    def ev(rules_: list[str], ek: str, setups_: list[SeedSetup] | None = None, sizes_: list[int] | None = None,
           **kw: Any) -> dict[str, Any]:
        g_, p_ = EMB[ek]
        return evaluate(rules_, g_, E, weights, setups if setups_ is None else setups_,
                        sizes if sizes_ is None else sizes_, a.target_fpir, Xp=p_, **kw)

    # (a)-(d): every rule on the pipeline's embeddings, (e): the main ones on flip embeddings
    rules = ["best", "mean", "template", "template_qw", "template_robust", "min_bt", "blend0.25", "blend0.5",
             "blend0.75",
             "best|tnorm", "best|tnorm-top10", "best|tnorm-top50", "best|znorm", "best|znorm-top10",
             "best|znorm-top50", "best|snorm",
             "template|tnorm", "template|tnorm-top10", "template|znorm", "template|znorm-top10", "template|snorm",
             "min_bt|znorm-top10", "blend0.5|tnorm-top10", "blend0.5|znorm-top10"]
    t0 = time.perf_counter()
    res = {"base": ev(rules, "base")}
    print(f"[rules] base embeddings {time.perf_counter() - t0:.0f} s", flush=True)
    flip_rules = ["best", "template", "template_robust", "min_bt", "blend0.5", "best|znorm-top10",
                  "template|znorm-top10", "template|tnorm-top10", "best|tnorm-top10", "template|znorm",
                  "template|snorm", "template_robust|znorm"]
    res["flip"] = ev(flip_rules, "flip")
    res["flipG"] = ev(["best", "template", "template_robust"], "flipG")
    people = res["base"]["best"]["gallery_people"]
    for emb_kind, rr in res.items():
        for key, title in (("per_seed_calibrated", "threshold calibrated per seed"),
                           ("fixed_median", "one fixed threshold: the median of the 10 calibrated")):
            md.append(table(f"## embeddings `{emb_kind}`, {title}", rr, sizes, key, people))
    for emb_kind, rr in res.items():
        for rule, r in rr.items():
            s = r["fixed_median"][big]
            print(f"{emb_kind:>5} {rule:<24} thr {r['threshold_median']:.4f}  calib FNIR {pct(r['calib_fnir_mean'])}  "
                  f"@{big}: FPIR {pct(s['fpir_mean'])} FNIR {pct(s['fnir_mean'])} ({pct(s['fnir_min'])}-"
                  f"{pct(s['fnir_max'])}) ok {s['seeds_meeting']}/{s['seeds']}", flush=True)

    gi0 = enrolled_indices(E, setups[0], big, None)
    g0 = make_gallery(L.emb("flip")[gi0], [E.people[i] for i in gi0], weights[gi0])
    R["closed_form_check_flip_seed0"] = closed_form_check(g0, L.emb("flip")[setups[0].probe_idx["report"]])
    print(json.dumps(R["closed_form_check_flip_seed0"]), flush=True)
    md.append("\nS-norm statistics from running sums vs brute force (flip, seed 0, largest gallery): max abs error "
              + ", ".join(f"{k} {v:.1e}" for k, v in R["closed_form_check_flip_seed0"].items()))

    # the winner on the calibration halves (never the report halves): lowest FNIR at the largest
    # gallery among the rules whose threshold also keeps FPIR <= target at every smaller gallery
    def stable(r: dict[str, Any]) -> bool:
        return all(v <= a.target_fpir + 1e-12 for v in r["calib_fpir_mean_by_size"].values())

    cands = sorted((r["calib_fnir_mean"], ek, rule, stable(r)) for ek, rr in res.items() for rule, r in rr.items())
    R["ranking_by_calib_fnir"] = [{"embedding": ek, "rule": rule, "calib_fnir_mean": c, "fpir_ok_all_sizes": ok,
                                   "calib_fpir_mean_by_size": res[ek][rule]["calib_fpir_mean_by_size"]}
                                  for c, ek, rule, ok in cands]
    unconstrained = cands[0]
    win_fnir, win_emb, win_rule, _ = next(c for c in cands if c[3])
    best_base = min((r["calib_fnir_mean"], rule) for rule, r in res["base"].items() if stable(r))
    R["winner"] = {"embedding": win_emb, "rule": win_rule, "calib_fnir_mean": win_fnir,
                   "best_without_flip": best_base[1], "lowest_calib_fnir_any": unconstrained[1:3]}
    md.append("\n## ranking on the calibration halves\n\n| embedding | rule | calib FNIR % at the largest gallery | "
              "calib FPIR % by gallery size | FPIR <= 1 % at every size |\n|---|---|---|---|---|")
    for x in R["ranking_by_calib_fnir"]:
        md.append(f"| {x['embedding']} | {md_name(x['rule'])} | {pct(x['calib_fnir_mean'])} | "
                  + " / ".join(pct(v) for v in x["calib_fpir_mean_by_size"].values()) + f" | {x['fpir_ok_all_sizes']} |")
    md.append(f"\nlowest calibration-half FNIR with FPIR <= 1 % at every size: `{win_emb}` + `{win_rule}` "
              f"({pct(win_fnir)} %); without flip: `{best_base[1]}` ({pct(best_base[0])} %); any: "
              f"`{unconstrained[1]}` + `{unconstrained[2]}` ({pct(unconstrained[0])} %)")

    # threshold table for the winner and for the simplest good rules
    tabled = []
    for pair in ((win_emb, win_rule), ("base", best_base[1]), ("base", "best"), ("flip", "template"),
                 ("base", "template")):
        if pair not in tabled and pair[1] in res[pair[0]]:
            tabled.append(pair)
    for ek, rule in tabled:
        med = res[ek][rule]["threshold_median"]
        zscore = rule.endswith(("|tnorm", "|znorm", "|snorm"))  # thresholds in standard deviations
        scale = 0.1 if zscore else 0.01
        if zscore:
            grid = sorted({round(med + d * scale, 4) for d in range(-3, 4)})
        else:  # round thresholds a user would set, and the calibrated median
            grid = sorted({round(0.47 + 0.01 * d, 2) for d in range(8)} | {round(med, 4)})
        rr = ev([rule], ek, fixed_extra={rule: grid})[rule]
        R.setdefault("threshold_tables", {})[f"{ek}:{rule}"] = strip_rows(rr["fixed_grid"])
        lines = [f"\n## threshold table, `{ek}` + `{rule}` (report halves, mean (min–max) over seeds; "
                 "[seeds with FPIR <= 1 % and FNIR <= 4 %])\n",
                 "| threshold | " + " | ".join(f"{people[n]} people: FPIR % | FNIR %" for n in sizes) + " |",
                 "|---|" + "---|---|" * len(sizes)]
        for t, by in rr["fixed_grid"].items():
            lines.append(f"| {float(t):.4f} | " + " | ".join(
                f"{pct(by[n]['fpir_mean'])} ({pct(by[n]['fpir_min'])}–{pct(by[n]['fpir_max'])}) | "
                f"{pct(by[n]['fnir_mean'])} ({pct(by[n]['fnir_min'])}–{pct(by[n]['fnir_max'])}) [{by[n]['seeds_meeting']}]"
                for n in sizes) + " |")
        md += lines

    # FNIR by enrolled photos per person, and fewer enrolled photos (max_enroll)
    R["fnir_by_enrolled"] = {}
    for ek, rule in dict.fromkeys((("base", "best"), ("base", "template"), ("base", best_base[1]),
                                   ("flip", "best"), (win_emb, win_rule))):
        R["fnir_by_enrolled"][f"{ek}:{rule}"] = fnir_by_enrolled(E, setups, res[ek][rule], big)
    md.append("\n## FNIR by photos enrolled per person (largest gallery, per-seed threshold, all seeds pooled)\n")
    md.append("| rule | " + " | ".join(R["fnir_by_enrolled"]["base:best"]) + " |")
    md.append("|---|" + "---|" * len(R["fnir_by_enrolled"]["base:best"]))
    for k, v in R["fnir_by_enrolled"].items():
        md.append(f"| {md_name(k)} | " + " | ".join(f"{pct(x['fnir'])} % of {x['probes']}" for x in v.values()) + " |")
    R["max_enroll"] = {}
    md.append("\n## at most k photos enrolled per person (largest gallery, per-seed threshold)\n")
    md.append("| k | rule | FPIR % | FNIR % (min–max) | seeds ok |\n|---|---|---|---|---|")
    for k in (1, 2, 3, 5):
        st_k = [seed_setup(E, s, k) for s in seeds]
        for ek, rule in dict.fromkeys((("base", "best"), ("base", "template"), ("base", best_base[1]),
                                       (win_emb, win_rule))):
            r = ev([rule], ek, st_k, [big])[rule]
            s = r["per_seed_calibrated"][big]
            R["max_enroll"][f"{k}:{ek}:{rule}"] = s
            md.append(f"| {k} | {ek}:{md_name(rule)} | {pct(s['fpir_mean'])} | {pct(s['fnir_mean'])} ({pct(s['fnir_min'])}–"
                      f"{pct(s['fnir_max'])}) | {s['seeds_meeting']}/{s['seeds']} |")

    # (f) quality floors at enrollment
    det = L.detected
    qd = {q: L.quality[det, i] for i, q in enumerate(QUALITY)}
    R["quality_distribution"] = {q: {f"p{p}": float(np.percentile(v, p)) for p in (1, 2, 5, 10, 50)}
                                 for q, v in qd.items()}
    gi_all = sorted({i for st in setups for p in st.split.people_multi for i in st.split.enroll_of[p]})
    R["quality_floor"] = {}
    md.append("\n## (f) quality floor at enrollment (gallery samples below the floor rejected; largest gallery,"
              " per-seed threshold)\n")
    md.append("`drop`: a person whose samples all fail is not enrolled (their probe is then a stranger); "
              "`keep1`: such a person keeps their best sample by that signal.\n")
    md.append("| signal | floor (LFW quantile) | gallery samples rejected | people lost | mode | rule | FPIR % | "
              "FNIR % (min–max) | seeds ok |\n|---|---|---|---|---|---|---|---|---|")
    floor_rules = list(dict.fromkeys([("base", "best"), ("base", best_base[1]), (win_emb, win_rule)]))
    for ek, rule in floor_rules:
        s = res[ek][rule]["per_seed_calibrated"][big]
        md.append(f"| none | – | 0 | 0 | – | {ek}:{md_name(rule)} | {pct(s['fpir_mean'])} | {pct(s['fnir_mean'])} "
                  f"({pct(s['fnir_min'])}–{pct(s['fnir_max'])}) | {s['seeds_meeting']}/{s['seeds']} |")
    for q in QUALITY:
        col = L.quality[:, QUALITY.index(q)]
        for pq in (1, 2, 5, 10):
            floor = float(np.percentile(qd[q], pq))
            keep = det & (col >= floor)
            n_rej = int(sum(1 for i in gi_all if not keep[i]))
            lost = [p for p in setups[0].split.people_multi
                    if not any(keep[i] for i in setups[0].split.enroll_of[p])]
            for mode in ("drop", "keep1"):
                for ek, rule in floor_rules:
                    r = ev([rule], ek, None, [big], keep=keep, fallback=col if mode == "keep1" else None)[rule]
                    s = r["per_seed_calibrated"][big]
                    R["quality_floor"][f"{q}:p{pq}:{mode}:{ek}:{rule}"] = {
                        "floor": floor, "rejected": n_rej, "people_lost_seed0": len(lost) if mode == "drop" else 0, **s}
                    md.append(f"| {q} | {floor:.4g} (p{pq}) | {n_rej} | {len(lost) if mode == 'drop' else 0} | {mode} | "
                              f"{ek}:{md_name(rule)} | {pct(s['fpir_mean'])} | {pct(s['fnir_mean'])} ({pct(s['fnir_min'])}–"
                              f"{pct(s['fnir_max'])}) | {s['seeds_meeting']}/{s['seeds']} |")
        print(f"[floor] {q} done", flush=True)

    # verification and the tutorial protocol must not drop with flip
    R["lfw_pairs"] = {}
    for ek in ("base", "flip"):
        v = ct.verification(L.as_ct(ek), a.lfw)
        R["lfw_pairs"][ek] = {k: v[k] for k in ("accuracy_mean", "accuracy_std", "accuracy_mean_detected_pairs_only",
                                                "eer", "tar_at_far_1e-3", "best_threshold_all_pairs")}
    md.append("\n## LFW pairs 10-fold and Yale tutorial protocol\n\n| embedding | LFW pairs % (± std) | EER % | "
              "TAR@FAR1e-3 % | Yale precision@1 | Yale precision@2 (min over splits) |\n|---|---|---|---|---|---|")
    R["yale"] = {}
    for ek in ("base", "flip"):
        v = R["lfw_pairs"][ek]
        y = yale_precision(Y, ek, a.yale_splits) if Y else {}
        R["yale"][ek] = y
        md.append(f"| {ek} | {100 * v['accuracy_mean']:.2f} ± {100 * v['accuracy_std']:.2f} | {pct(v['eer'])} | "
                  f"{pct(v['tar_at_far_1e-3'])} | {y.get('precision_at_1', float('nan')):.3f} | "
                  f"{y.get('precision_at_2', float('nan')):.3f} ({y.get('precision_at_2_min', float('nan')):.3f}) |")

    # cost
    if a.timing:
        R["timing"] = timing_bench(a.lfw, a.timing)
        t = R["timing"]
        md.append(f"\n## cost\n\n1 process, 1 thread, {t['images']} LFW images ({t['embedder']}): detect "
                  f"{t['detect_ms']:.1f} ms, align+embed {t['align_embed_ms']:.1f} ms, embed of the mirrored crop "
                  f"{t['flip_embed_ms']:.1f} ms (+{100 * t['flip_extra_fraction_of_image']:.0f} % of detect+embed), "
                  f"blur measure {t['blur_ms']:.2f} ms (medians); OpenCV's embedder in the same loop "
                  f"{t['opencv_align_embed_ms']:.1f} ms. Per image, detect + ORT embed + ORT mirrored embed vs "
                  f"detect + OpenCV embed: x{t['ort_flip_vs_opencv_noflip']:.2f}; without the mirror: "
                  f"x{t['ort_noflip_vs_opencv_noflip']:.2f} (medians of per-image ratios).")
    gp, gs = res["base"]["best"]["gallery_people"][big], res["base"]["best"]["gallery_samples"][big]
    R["index_cost"] = {"gallery_people": gp, "gallery_samples": gs,
                       "template_vectors_extra": gp, "template_extra_fraction": gp / gs,
                       "bytes_per_vector_f32": 128 * 4}
    md.append(f"\nindex: {gs} enrolled faces of {gp} people (seed 0); a template collection adds {gp} vectors "
              f"(+{100 * gp / gs:.0f} %), 512 bytes each as float32; a Z-norm adds 2 floats per subject.")
    R["results"] = strip_rows(res)
    R["run_seconds"] = time.perf_counter() - t_run
    text = "\n".join(md) + "\n"
    print(text)
    if a.md:
        a.md.write_text(text)
    if a.json:
        a.json.write_text(json.dumps(ct.jsonable(R), indent=1, allow_nan=False, default=str))
    print(f"run {R['run_seconds']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
