"""Face-recognition metrics in plain numpy: verification (1:1) and open-set identification (1:N).

Conventions used everywhere in this module:

* Scores are **cosine distances** ``d = 1 - cos(a, b)`` in ``[0, 2]``; smaller means more alike.
* A comparison is **accepted** (called "same person" / "match") when ``d <= threshold``.
* ``genuine_d`` are distances of same-person comparisons, ``impostor_d`` of different-person ones.
* TAR = fraction of genuine accepted, FAR = fraction of impostors accepted, FRR = 1 - TAR.
* Open-set identification (ISO/IEC 19795-1 style, as in NIST FRVT 1:N):
  FNIR = fraction of *enrolled* probes not named correctly (named as someone else, or as unknown);
  FPIR = fraction of *stranger* probes (label not in the gallery) named as anyone.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "l2_normalize",
    "cosine_distance",
    "pairwise_cosine_distances",
    "RocPoints",
    "roc_points",
    "tar_at_far",
    "eer",
    "FoldAccuracy",
    "best_accuracy_threshold",
    "lfw_10fold_accuracy",
    "SubjectScores",
    "subject_scores",
    "template_scores",
    "SCORINGS",
    "OpenSetResult",
    "open_set_from_scores",
    "open_set_identification",
    "ThresholdChoice",
    "threshold_for_fpir_from_scores",
    "threshold_for_fpir",
    "precision_at_k",
]

FloatArray = NDArray[np.float64]


# -- cosine distance helpers ----------------------------------------------------------------


def l2_normalize(x: ArrayLike, axis: int = -1) -> NDArray[np.float32]:
    """Rows (or vectors along ``axis``) scaled to unit L2 norm; all-zero vectors stay zero."""
    a = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(a, axis=axis, keepdims=True)
    return (a / np.where(n == 0, 1, n)).astype(np.float32)


def cosine_distance(a: ArrayLike, b: ArrayLike) -> FloatArray | float:
    """``1 - cos`` between ``a`` and ``b`` row by row (broadcasting); a float for two vectors."""
    a_ = l2_normalize(a).astype(np.float64)
    b_ = l2_normalize(b).astype(np.float64)
    d = 1.0 - np.sum(a_ * b_, axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def pairwise_cosine_distances(a: ArrayLike, b: ArrayLike, assume_normalized: bool = False) -> NDArray[np.float32]:
    """Matrix ``D[i, j] = 1 - cos(a[i], b[j])`` for ``a`` (n, dim) and ``b`` (m, dim)."""
    a_ = np.asarray(a, dtype=np.float32)
    b_ = np.asarray(b, dtype=np.float32)
    if not assume_normalized:
        a_, b_ = l2_normalize(a_), l2_normalize(b_)
    d = 1.0 - a_ @ b_.T
    out: NDArray[np.float32] = np.clip(d, 0.0, 2.0).astype(np.float32)
    return out


# -- verification (1:1) ---------------------------------------------------------------------


def _finite(x: ArrayLike) -> FloatArray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    return a[np.isfinite(a)]


@dataclass(frozen=True)
class RocPoints:
    """One ROC point per candidate threshold (ascending); accept when ``d <= threshold``."""

    thresholds: FloatArray
    far: FloatArray
    tar: FloatArray

    @property
    def frr(self) -> FloatArray:
        return 1.0 - self.tar


def roc_points(genuine_d: ArrayLike, impostor_d: ArrayLike) -> RocPoints:
    """ROC over every distinct observed distance, plus ``-inf`` (nothing accepted).

    NaN distances are ignored. Both inputs must hold at least one finite value.
    """
    g = np.sort(_finite(genuine_d))
    i = np.sort(_finite(impostor_d))
    if g.size == 0 or i.size == 0:
        raise ValueError("roc_points needs at least one genuine and one impostor distance")
    thr = np.concatenate([[-np.inf], np.unique(np.concatenate([g, i]))])
    tar = np.searchsorted(g, thr, side="right") / g.size
    far = np.searchsorted(i, thr, side="right") / i.size
    return RocPoints(thresholds=thr, far=far, tar=tar)


def tar_at_far(genuine_d: ArrayLike, impostor_d: ArrayLike, far: float) -> tuple[float, float]:
    """``(TAR, threshold)`` at the largest threshold whose FAR is <= ``far``.

    The threshold is an observed distance (or ``-inf`` if even the smallest one breaks the
    FAR budget), so ``d <= threshold`` reproduces exactly the returned TAR on this data.
    """
    roc = roc_points(genuine_d, impostor_d)
    ok = np.flatnonzero(roc.far <= far + 1e-12)
    k = int(ok[-1])  # far is non-decreasing and far[0] == 0, so ok is a non-empty prefix
    return float(roc.tar[k]), float(roc.thresholds[k])


def eer(genuine_d: ArrayLike, impostor_d: ArrayLike) -> tuple[float, float]:
    """Equal error rate ``(EER, threshold)``: the threshold where FAR and FRR are closest.

    EER is reported as ``(FAR + FRR) / 2`` at that threshold (exact when they cross on an
    observed distance); ties go to the smallest such threshold.
    """
    roc = roc_points(genuine_d, impostor_d)
    gap = np.abs(roc.far - roc.frr)
    k = int(np.argmin(gap))
    return float((roc.far[k] + roc.frr[k]) / 2.0), float(roc.thresholds[k])


def best_accuracy_threshold(distances: ArrayLike, is_same: ArrayLike) -> tuple[float, float]:
    """``(threshold, accuracy)`` maximising pair accuracy (same iff ``d <= threshold``).

    Candidates are the midpoints between consecutive distinct distances plus one value below
    and one above all of them; among equally good candidates the middle one is taken.
    NaN distances are ignored here.
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(is_same, dtype=bool).reshape(-1)
    keep = np.isfinite(d)
    d, s = d[keep], s[keep]
    if d.size == 0:
        raise ValueError("no finite distances to choose a threshold from")
    u = np.unique(d)
    cands = np.concatenate([[u[0] - 1e-6], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1e-6]])
    order = np.argsort(d, kind="stable")
    ds, ss = d[order], s[order]
    n_acc = np.searchsorted(ds, cands, side="right")  # how many accepted at each candidate
    cum_same = np.concatenate([[0], np.cumsum(ss)])
    tp = cum_same[n_acc]  # same pairs accepted
    fp = n_acc - tp  # different pairs accepted
    tn = (~ss).sum() - fp
    acc = (tp + tn) / d.size
    best = np.flatnonzero(acc == acc.max())
    k = int(best[len(best) // 2])
    return float(cands[k]), float(acc[k])


@dataclass(frozen=True)
class FoldAccuracy:
    """Cross-validated verification accuracy."""

    mean: float
    std: float
    accuracies: FloatArray  # per test fold
    thresholds: FloatArray  # chosen on the other folds, per test fold
    folds: NDArray[np.int64]  # fold id of each entry above
    n_nan: int = 0  # pairs with a NaN distance, all counted as errors


def lfw_10fold_accuracy(distances: ArrayLike, is_same: ArrayLike, fold_ids: ArrayLike) -> FoldAccuracy:
    """LFW protocol: for each fold, pick the best-accuracy threshold on the other folds, test on it.

    ``std`` is the population standard deviation over folds (``np.std``), as in most LFW code.
    A NaN distance (e.g. a face not detected) is left out when choosing thresholds and counted
    as **wrong** in its test fold, which gives a conservative accuracy.
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    s = np.asarray(is_same, dtype=bool).reshape(-1)
    f = np.asarray(fold_ids).reshape(-1)
    if not (d.size == s.size == f.size):
        raise ValueError("distances, is_same and fold_ids must have the same length")
    folds = np.unique(f)
    if folds.size < 2:
        raise ValueError("need at least two folds")
    accs, thrs = [], []
    for fold in folds:
        test = f == fold
        t, _ = best_accuracy_threshold(d[~test], s[~test])
        dt, st = d[test], s[test]
        correct = np.isfinite(dt) & ((dt <= t) == st)
        accs.append(correct.mean())
        thrs.append(t)
    a = np.asarray(accs)
    return FoldAccuracy(
        mean=float(a.mean()),
        std=float(a.std()),
        accuracies=a,
        thresholds=np.asarray(thrs),
        folds=folds.astype(np.int64),
        n_nan=int((~np.isfinite(d)).sum()),
    )


# -- open-set identification (1:N) ----------------------------------------------------------


@dataclass(frozen=True)
class SubjectScores:
    """Per probe: nearest subject and distances to the nearest and second-nearest subjects.

    A subject's distance is the minimum over its gallery samples. ``second_d`` is ``inf``
    when the gallery holds a single subject.
    """

    subjects: NDArray[np.object_]  # distinct gallery labels, in order of first appearance
    best_label: NDArray[np.object_]  # per probe
    best_d: FloatArray
    second_d: FloatArray

    @property
    def gap(self) -> FloatArray:
        """``second_d - best_d`` per probe (the margin the best subject wins by)."""
        return self.second_d - self.best_d


def _labels(x: Sequence[Hashable] | ArrayLike) -> NDArray[np.object_]:
    items = list(x)  # type: ignore[arg-type]
    out = np.empty(len(items), dtype=object)
    for i, v in enumerate(items):
        out[i] = v.item() if isinstance(v, np.generic) else v
    return out


#: Subject scoring rules, as ``facedb.operations.search`` names them: ``best`` = a subject's distance is that
#: of its closest sample; ``template`` = the distance to the normalised mean of its unit samples.
SCORINGS = ("best", "template")


def subject_scores(
    gallery_emb: ArrayLike,
    gallery_labels: Sequence[Hashable] | ArrayLike,
    probe_emb: ArrayLike,
    chunk: int = 2048,
    scoring: str = "best",
) -> SubjectScores:
    """Best and second-best subject distance of each probe against a labelled gallery.

    ``scoring="best"``: a subject's distance is the minimum over its samples;
    ``scoring="template"``: see ``template_scores``."""
    if scoring == "template":
        return template_scores(gallery_emb, gallery_labels, probe_emb, chunk)
    if scoring != "best":
        raise ValueError(f"scoring must be one of {SCORINGS}, not {scoring!r}")
    g = l2_normalize(np.asarray(gallery_emb, dtype=np.float32))
    p = l2_normalize(np.asarray(probe_emb, dtype=np.float32))
    gl = _labels(gallery_labels)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[0] != gl.size:
        raise ValueError("gallery_emb must be (n, dim) with n >= 1 and one label per row")
    if p.ndim != 2 or p.shape[1] != g.shape[1]:
        raise ValueError("probe_emb must be (m, dim) with the gallery's dim")
    index: dict[Hashable, int] = {}
    inv = np.array([index.setdefault(lab, len(index)) for lab in gl.tolist()], dtype=np.int64)
    subj_objs = _labels(list(index))
    order = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[order], np.arange(len(index)))
    g_sorted = g[order]
    n_s = subj_objs.size
    best_d = np.empty(p.shape[0])
    second_d = np.full(p.shape[0], np.inf)
    best_i = np.empty(p.shape[0], dtype=np.int64)
    for lo in range(0, p.shape[0], chunk):
        d = pairwise_cosine_distances(p[lo:lo + chunk], g_sorted, assume_normalized=True)
        per_subject = np.minimum.reduceat(d, starts, axis=1)  # (chunk, n_subjects)
        if n_s >= 2:
            two = np.argpartition(per_subject, 1, axis=1)[:, :2]
            v = np.take_along_axis(per_subject, two, axis=1)
            swap = v[:, 1] < v[:, 0]
            v[swap] = v[swap][:, ::-1]
            two[swap] = two[swap][:, ::-1]
            best_i[lo:lo + chunk] = two[:, 0]
            best_d[lo:lo + chunk] = v[:, 0]
            second_d[lo:lo + chunk] = v[:, 1]
        else:
            best_i[lo:lo + chunk] = 0
            best_d[lo:lo + chunk] = per_subject[:, 0]
    return SubjectScores(
        subjects=subj_objs, best_label=subj_objs[best_i] if p.shape[0] else _labels([]),
        best_d=best_d, second_d=second_d,
    )


def template_scores(
    gallery_emb: ArrayLike,
    gallery_labels: Sequence[Hashable] | ArrayLike,
    probe_emb: ArrayLike,
    chunk: int = 2048,
) -> SubjectScores:
    """Like ``subject_scores``, but a subject's distance is ``1 - cos(probe, template)``, where
    the template is the normalised sum of the subject's unit samples (facedb's default search,
    ``scoring="template"``)."""
    g = l2_normalize(np.asarray(gallery_emb, dtype=np.float32))
    gl = _labels(gallery_labels)
    if g.ndim != 2 or g.shape[0] == 0 or g.shape[0] != gl.size:
        raise ValueError("gallery_emb must be (n, dim) with n >= 1 and one label per row")
    index: dict[Hashable, int] = {}
    inv = np.array([index.setdefault(lab, len(index)) for lab in gl.tolist()], dtype=np.int64)
    sums = np.zeros((len(index), g.shape[1]), dtype=np.float64)
    np.add.at(sums, inv, g.astype(np.float64))
    templates = l2_normalize(sums)
    labels = _labels(list(index))
    # one template per subject: the per-sample minimum over it is its own distance
    return subject_scores(templates, labels, probe_emb, chunk=chunk, scoring="best")


@dataclass(frozen=True)
class OpenSetResult:
    """Outcome of open-set identification at one operating point."""

    threshold: float
    margin: float | None
    fnir: float  # enrolled probes not named correctly (wrong person or unknown)
    fpir: float  # stranger probes named as anyone
    n_mated: int
    n_nonmated: int
    n_mated_misnamed: int  # enrolled probes named as a *different* enrolled person
    n_mated_unknown: int  # enrolled probes called unknown
    n_nonmated_named: int
    predicted: NDArray[np.object_] = field(repr=False)  # per probe; None = unknown


def _accepts(scores: SubjectScores, threshold: float, margin: float | None) -> NDArray[np.bool_]:
    ok = scores.best_d <= threshold
    if margin is not None:
        ok &= scores.gap >= margin
    return ok


def open_set_from_scores(
    scores: SubjectScores,
    probe_labels: Sequence[Hashable] | ArrayLike,
    threshold: float,
    margin: float | None = None,
) -> OpenSetResult:
    """FNIR / FPIR from precomputed ``subject_scores`` (cheap: use it to sweep thresholds)."""
    pl = _labels(probe_labels)
    if pl.size != scores.best_d.size:
        raise ValueError("one probe label per scored probe is needed")
    enrolled = set(scores.subjects.tolist())
    mated = np.array([lab in enrolled for lab in pl.tolist()], dtype=bool)
    ok = _accepts(scores, threshold, margin)
    predicted = np.where(ok, scores.best_label, np.array(None, dtype=object))
    correct = ok & (scores.best_label == pl)
    n_m, n_n = int(mated.sum()), int((~mated).sum())
    misnamed = int((mated & ok & ~correct).sum())
    unknown = int((mated & ~ok).sum())
    named = int((~mated & ok).sum())
    return OpenSetResult(
        threshold=float(threshold),
        margin=None if margin is None else float(margin),
        fnir=(misnamed + unknown) / n_m if n_m else float("nan"),
        fpir=named / n_n if n_n else float("nan"),
        n_mated=n_m,
        n_nonmated=n_n,
        n_mated_misnamed=misnamed,
        n_mated_unknown=unknown,
        n_nonmated_named=named,
        predicted=predicted,
    )


def open_set_identification(
    gallery_emb: ArrayLike,
    gallery_labels: Sequence[Hashable] | ArrayLike,
    probe_emb: ArrayLike,
    probe_labels: Sequence[Hashable] | ArrayLike,
    threshold: float,
    margin: float | None = None,
    scoring: str = "best",
) -> OpenSetResult:
    """Open-set 1:N identification with subject-level decisions.

    Each probe is compared with every gallery sample; a subject's distance is its closest
    sample. The probe is named as the closest subject if that distance is ``<= threshold``
    and, when ``margin`` is given, the second-closest subject is at least ``margin`` farther;
    otherwise it is unknown. Probes whose label is not in the gallery are strangers.
    ``scoring="template"`` scores subjects by their template instead (``template_scores``).
    """
    scores = subject_scores(gallery_emb, gallery_labels, probe_emb, scoring=scoring)
    return open_set_from_scores(scores, probe_labels, threshold, margin)


@dataclass(frozen=True)
class ThresholdChoice:
    """The largest threshold meeting an FPIR budget, and what it gives."""

    threshold: float
    margin: float | None
    fpir: float
    fnir: float


def threshold_for_fpir_from_scores(
    scores: SubjectScores,
    probe_labels: Sequence[Hashable] | ArrayLike,
    target_fpir: float,
    margin: float | None = None,
) -> ThresholdChoice:
    """Largest threshold with FPIR <= ``target_fpir`` (hence the lowest FNIR for that margin).

    FPIR can only grow and FNIR only shrink as the threshold grows, so the largest admissible
    threshold is the best one. It is returned just below the stranger distance that would
    break the budget (``inf`` if no stranger can ever be accepted under ``margin``).
    """
    pl = _labels(probe_labels)
    enrolled = set(scores.subjects.tolist())
    mated = np.array([lab in enrolled for lab in pl.tolist()], dtype=bool)
    n_n = int((~mated).sum())
    if n_n == 0:
        raise ValueError("no stranger probes: FPIR is undefined")
    cand = scores.best_d[~mated]
    if margin is not None:
        cand = cand[scores.gap[~mated] >= margin]
    cand = np.sort(cand)
    allowed = int(np.floor(target_fpir * n_n + 1e-9))  # strangers we may accept
    if allowed >= cand.size:
        thr = float("inf")
    else:
        thr = float(np.nextafter(cand[allowed], -np.inf))
    r = open_set_from_scores(scores, pl, thr, margin)
    return ThresholdChoice(threshold=thr, margin=margin, fpir=r.fpir, fnir=r.fnir)


def threshold_for_fpir(
    gallery_emb: ArrayLike,
    gallery_labels: Sequence[Hashable] | ArrayLike,
    probe_emb: ArrayLike,
    probe_labels: Sequence[Hashable] | ArrayLike,
    target_fpir: float,
    margin: float | None = None,
    scoring: str = "best",
) -> ThresholdChoice:
    """Threshold giving FPIR <= ``target_fpir`` with the lowest FNIR, and that FNIR."""
    scores = subject_scores(gallery_emb, gallery_labels, probe_emb, scoring=scoring)
    return threshold_for_fpir_from_scores(scores, probe_labels, target_fpir, margin)


# -- closed-set retrieval (the tutorial's protocol) -----------------------------------------


def precision_at_k(
    embeddings: ArrayLike,
    labels: Sequence[Hashable] | ArrayLike,
    k: int = 2,
    seed: int = 0,
    probe_indices: Sequence[int] | None = None,
) -> float:
    """Mean precision@k: one probe per subject, every other sample enrolled.

    For each probe, the ``k`` nearest enrolled samples (cosine distance, ties by index) are
    taken and the fraction of them carrying the probe's label is its precision; the result is
    the mean over probes. Probes are drawn at random (``seed``) among each subject's samples,
    or given explicitly by ``probe_indices`` (at most one per subject). Subjects with a
    single sample are enrolled and give no probe.
    """
    x = l2_normalize(np.asarray(embeddings, dtype=np.float32))
    lab = _labels(labels)
    if x.shape[0] != lab.size:
        raise ValueError("one label per embedding is needed")
    if k < 1:
        raise ValueError("k must be >= 1")
    if probe_indices is None:
        rng = np.random.default_rng(seed)
        by_subject: dict[Hashable, list[int]] = {}
        for i, l_ in enumerate(lab.tolist()):
            by_subject.setdefault(l_, []).append(i)
        probes = [int(rng.choice(idx)) for _, idx in sorted(by_subject.items(), key=lambda kv: str(kv[0]))
                  if len(idx) >= 2]
    else:
        probes = [int(i) for i in probe_indices]
        if len({lab[i] for i in probes}) != len(probes):
            raise ValueError("probe_indices must hold at most one probe per subject")
    if not probes:
        raise ValueError("no subject has two samples: nothing to probe")
    is_probe = np.zeros(lab.size, dtype=bool)
    is_probe[probes] = True
    enrolled = np.flatnonzero(~is_probe)
    if enrolled.size < k:
        raise ValueError(f"only {enrolled.size} enrolled samples, fewer than k={k}")
    d = pairwise_cosine_distances(x[probes], x[enrolled], assume_normalized=True)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
    hits = lab[enrolled][nearest] == lab[probes][:, None]
    return float(hits.mean())
