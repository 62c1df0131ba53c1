"""Measuring ``facedb discover``'s clustering: quality on LFW (BCubed) and speed on synthetic faces.

``scripts/bench/cluster_lfw.py`` and ``scripts/bench/cluster_speed.py`` are the command lines;
docs/benchmarks/discover.md is their report.

* **Quality.** Every LFW image is embedded once with the pack (``calibration.embed_lfw``, cached
  outside the repository), and the face nearest the image centre (LFW's labelled face: the crops
  are centred on it) is clustered with nobody enrolled. BCubed precision, recall and F are scored
  per labelled face against the person of its folder, for several linkage rules and thresholds.
  Images where no face is found are left out (their count is reported).
* **Speed.** ``n`` synthetic unit vectors (128-d) in clusters of power-law sizes (many people
  seen once, a few seen hundreds of times), each face its person's direction plus Gaussian noise
  sized so that two faces of one person sit at cosine distance about 0.35, like real faces of one
  person. Wall time and peak memory (RSS) of ``clustering.cluster``, the BCubed scores against
  the planted people, and the recall of the approximate kNN graph against the exact one on a
  sample.
"""
from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..analysis import clustering

# -- BCubed ----------------------------------------------------------------------------------------


def bcubed(truth: Sequence[Any] | NDArray[Any], predicted: Sequence[Any] | NDArray[Any]) -> dict[str, float]:
    """BCubed precision, recall and F1 of a clustering (Amigó et al. 2009).

    Per item: precision = the share of its cluster with its label, recall = the share of its
    label in its cluster; both averaged over items. Linear time (a contingency count)."""
    t = np.unique(np.asarray(truth), return_inverse=True)[1].ravel()
    p = np.unique(np.asarray(predicted), return_inverse=True)[1].ravel()
    if len(t) != len(p):
        raise ValueError("truth and predicted must have one label per item")
    if len(t) == 0:
        return {"precision": 1.0, "recall": 1.0, "f": 1.0, "n": 0}
    pair = t.astype(np.int64) * (int(p.max()) + 1) + p
    _, inv, joint = np.unique(pair, return_inverse=True, return_counts=True)
    both = joint[inv.ravel()].astype(np.float64)
    prec = float(np.mean(both / np.bincount(p)[p]))
    rec = float(np.mean(both / np.bincount(t)[t]))
    f = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f": f, "n": int(len(t))}


# -- LFW -----------------------------------------------------------------------------------------

#: The rules and thresholds ``cluster_lfw`` compares by default (linkage, cosine distance).
DEFAULT_GRID: tuple[tuple[str, float], ...] = tuple(
    [("average", t) for t in (0.40, 0.42, 0.44, 0.45, 0.46, 0.48, 0.50, 0.52)]
    + [("single", t) for t in (0.30, 0.35, 0.40)]
    + [("mutual", t) for t in (0.35, 0.40, 0.45)])


def lfw_faces(root: Path, pack: str, workers: int, cache: Path | None) -> tuple[NDArray[np.float32], list[str], int]:
    """(labelled-face embeddings, their people, images without a face) of every LFW image."""
    from . import calibration

    E = calibration.embed_lfw(root, cache, pack, workers, central=True)
    found = E.detected
    people = [p for p, ok in zip(E.people, found) if ok]
    return E.emb_central[found].astype(np.float32), people, int((~found).sum())


def score_rules(X: NDArray[np.float32], people: list[str], grid: Sequence[tuple[str, float]],
                k: int = 20) -> list[dict[str, Any]]:
    """BCubed of every (linkage, threshold) of ``grid`` on ``X`` against ``people``."""
    rows = []
    for linkage, thr in grid:
        t0 = time.perf_counter()
        labels = clustering.cluster(X, clustering.ClusterSettings(threshold=thr, k=k, linkage=linkage))
        sec = time.perf_counter() - t0
        b = bcubed(people, labels)
        rows.append({"linkage": linkage, "threshold": thr, "k": k, "clusters": int(labels.max() + 1) if len(labels)
                     else 0, "seconds": round(sec, 3), **{x: round(b[x], 4) for x in ("precision", "recall", "f")}})
    return rows


# -- synthetic faces -----------------------------------------------------------------------------

def synthetic_faces(n: int, dim: int = 128, *, seed: int = 0, pair_distance: float = 0.35,
                    max_size: int = 2000, alpha: float = 1.6) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``n`` unit vectors in people of power-law sizes (Pareto ``alpha``, capped at ``max_size``),
    faces of one person at cosine distance about ``pair_distance``; (vectors, person of each).

    Faces are shuffled, so a person's faces are not adjacent."""
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    total = 0
    while total < n:
        s = int(min(max_size, np.floor(rng.pareto(alpha) + 1)))
        s = min(s, n - total)
        sizes.append(s)
        total += s
    person = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    centres = rng.standard_normal((len(sizes), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # cos(a, b) of two faces ~ 1 / (1 + sigma^2) when the noise has norm sigma.
    sigma = float(np.sqrt(1.0 / (1.0 - pair_distance) - 1.0))
    X = centres[person] + rng.standard_normal((n, dim)).astype(np.float32) * (sigma / np.sqrt(dim))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    order = rng.permutation(n)
    return X[order].astype(np.float32), person[order]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def knn_recall(X: NDArray[np.float32], k: int, max_distance: float, sample: int = 2000, seed: int = 0) -> float:
    """Share of the exact graph's edges (from ``sample`` faces) that the approximate graph has."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(X), min(sample, len(X)), replace=False))
    r, c, _ = clustering.knn_graph(X, k, max_distance, exact=False)
    have = set(zip(r.tolist(), c.tolist()))
    S = X[rows] @ X.T
    S[np.arange(len(rows)), rows] = -np.inf
    idx = np.argpartition(S, S.shape[1] - k, axis=1)[:, -k:]
    sims = np.take_along_axis(S, idx, axis=1)
    want = [(int(rows[i]), int(j)) for i in range(len(rows)) for j, s in zip(idx[i], sims[i])
            if 1.0 - s <= max_distance]
    return sum(1 for e in want if e in have) / len(want) if want else 1.0


def speed_run(n: int, settings: clustering.ClusterSettings, seed: int = 0, recall_sample: int = 0
              ) -> dict[str, Any]:
    """Cluster ``synthetic_faces(n)``: seconds, peak RSS, BCubed, and optionally kNN recall."""
    X, person = synthetic_faces(n, seed=seed)
    rss_before = peak_rss_mb()
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    labels = clustering.cluster(X, settings)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    out: dict[str, Any] = {
        "faces": n, "people": int(person.max() + 1), "largest_person": int(np.bincount(person).max()),
        "clusters": int(labels.max() + 1), "seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1), "peak_rss_mb_before": round(rss_before, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **{f"bcubed_{k}": round(v, 4) for k, v in bcubed(person, labels).items() if k != "n"},
        "settings": {"threshold": settings.threshold, "k": settings.k, "linkage": settings.linkage,
                     "probes": settings.probes},
    }
    if recall_sample:
        out["knn_recall"] = round(knn_recall(X, settings.k, settings.max_edge, recall_sample), 4)
    return out


# -- the report ------------------------------------------------------------------------------------

def write_section(md: Path, js: Path, name: str, data: dict[str, Any]) -> None:
    """Store ``data`` as section ``name`` (``quality`` or ``speed``) of the JSON report and rewrite
    the Markdown from the whole JSON; the hand-written ``<!-- section:analysis -->`` is kept."""
    import json

    from . import bench

    whole: dict[str, Any] = json.loads(js.read_text()) if js.is_file() else {}
    whole[name] = data
    bench.write_text(js, json.dumps(whole, indent=2) + "\n")
    bench.write_report(md, markdown(whole))


def markdown(whole: dict[str, Any]) -> str:
    """docs/benchmarks/discover.md from the JSON report."""
    from . import bench

    out = ["# `facedb discover`: clustering quality and speed", "",
           "Generated by `scripts/bench/cluster_lfw.py` (quality) and `scripts/bench/cluster_speed.py` (speed); "
           "the numbers are in [discover.json](discover.json). The method is in "
           "`facedb/analysis/clustering.py`; the targets of issue 17: BCubed precision >= 0.995 and F >= 0.98 "
           "on LFW with nobody enrolled; 100,000 faces clustered in <= 2 minutes in <= 2 GB on 2 cores.", ""]
    q = whole.get("quality")
    if q:
        out += ["## Quality on LFW (BCubed, nobody enrolled)", "",
                f"- Command: `{q['command']}` (facedb commit {q['commit']}); pack `{q['pack']}`",
                f"- {q['faces']:,} labelled faces (the face nearest the centre of each image) of {q['people']:,} "
                f"people; {q['images_without_face']} images without a face left out.",
                "- Only the labelled face of each image is clustered and scored (the other faces of the "
                "photos are not in the embedding cache).", "",
                bench.md_table(["linkage", "threshold", "k", "clusters", "precision", "recall", "F", "seconds"],
                               [[r["linkage"], f"{r['threshold']:.2f}", r["k"], r["clusters"],
                                 f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f']:.4f}", r["seconds"]]
                                for r in q["rows"]]), ""]
    s = whole.get("speed")
    if s:
        out += ["## Speed (synthetic embeddings given)", "",
                f"- Command: `{s['command']}` (facedb commit {s['commit']})",
                f"- Machine: {s['machine']['cpu_model']}, {s['machine']['cores']} cores, {s['machine']['ram_gb']} GB; "
                f"load average {s['load_at_start']} at start, {s['load_at_end']} at the end (shared machine).", "",
                bench.md_table(["faces", "people", "largest person", "clusters", "wall s", "CPU s",
                                "peak RSS MB", "BCubed P", "BCubed F", "kNN recall"],
                               [[f"{s['faces']:,}", f"{s['people']:,}", s["largest_person"], f"{s['clusters']:,}",
                                 s["seconds"], s["cpu_seconds"], s["peak_rss_mb"], s["bcubed_precision"],
                                 s["bcubed_f"], s.get("knn_recall", "-")]]), "",
                f"Settings: {s['settings']}.", ""]
    return "\n".join(out)
