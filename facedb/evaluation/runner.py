"""``facedb eval``: measure a model pack on a labelled folder, away from the user's database.

Every image is embedded once (largest face) with the pack; all protocols then run on those
embeddings with exact cosine search, the same answers facedb's search gives (its reference
mode checks Chroma against exactly this). For small datasets the tutorial protocol is also run
end to end through a scratch FaceDB in a temporary home, deleted afterwards.
"""
from __future__ import annotations

import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from .. import imaging
from ..errors import FacedbError
from ..pipeline import Analyzer
from . import metrics

ProgressFn = Callable[[int], None]


@dataclass
class Dataset:
    paths: list[Path]
    labels: list[str]


@dataclass
class Embedded:
    paths: list[Path]
    labels: list[str]
    vectors: np.ndarray  # (n, dim) for the images where a face was found
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    seconds_per_image: float = 0.0


def load_dataset(root: Path, name_from: str = "dir", limit: int | None = None) -> Dataset:
    """``root/<subject>/<images>`` or, with ``name_from='prefix'``, a flat folder."""
    from ..names import subject_from_filename

    if not root.is_dir():
        raise FacedbError(f"{root}: not a directory")
    paths: list[Path] = []
    labels: list[str] = []
    if name_from == "dir":
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for p in imaging.iter_image_files([sub]):
                paths.append(p)
                labels.append(sub.name)
    elif name_from == "prefix":
        for p in imaging.iter_image_files([root]):
            if p.suffix.lower() in (".txt", ".md", ".json", ".csv"):
                continue
            paths.append(p)
            labels.append(subject_from_filename(p.name))
    else:
        raise FacedbError(f"name_from must be 'dir' or 'prefix', not {name_from!r}")
    if limit:
        paths, labels = paths[:limit], labels[:limit]
    if not paths:
        raise FacedbError(f"{root}: no images found")
    return Dataset(paths, labels)


def embed(ds: Dataset, pack: str, models_dir: Path | None, workers: int,
          progress: ProgressFn | None = None) -> Embedded:
    vecs: list[np.ndarray] = []
    keep_p: list[Path] = []
    keep_l: list[str] = []
    failures: dict[str, str] = {}
    start = time.perf_counter()

    def read_all() -> Iterator[tuple[int, bytes, str]]:  # lazily: the pool pulls as it goes
        for i, p in enumerate(ds.paths):
            try:
                yield i, imaging.read_bytes(p), str(p)
            except imaging.ImageError as exc:
                failures[str(p)] = exc.reason
                if progress:
                    progress(1)

    with Analyzer(pack, models_dir, workers) as analyzer:
        for res in analyzer.run(read_all(), len(ds.paths), max_faces=1):
            p = ds.paths[res.key]
            if res.reason or not res.faces:
                failures[str(p)] = res.reason or "no_face"
            else:
                vecs.append(res.faces[0].embedding)
                keep_p.append(p)
                keep_l.append(ds.labels[res.key])
            if progress:
                progress(1)
    elapsed = time.perf_counter() - start
    dim = vecs[0].size if vecs else 0
    return Embedded(keep_p, keep_l, np.stack(vecs) if vecs else np.zeros((0, dim), np.float32), failures,
                    elapsed / max(1, len(ds.paths)))


# -- protocols -------------------------------------------------------------------------------

def tutorial_protocol(e: Embedded, splits: int, seed: int) -> dict[str, Any]:
    """One random probe per subject, the rest enrolled; precision@1 and @2 over splits."""
    out: dict[str, Any] = {"splits": splits}
    for k in (1, 2):
        vals = [metrics.precision_at_k(e.vectors, e.labels, k=k, seed=seed + s) for s in range(splits)]
        out[f"precision_at_{k}"] = float(np.mean(vals))
        out[f"precision_at_{k}_std"] = float(np.std(vals))
    return out


def leave_one_out_rank1(e: Embedded) -> dict[str, Any]:
    labels = np.asarray(e.labels, dtype=object)
    counts = Counter(e.labels)
    usable = np.array([counts[lab] >= 2 for lab in e.labels])
    correct = 0
    x = e.vectors
    for start in range(0, len(x), 1024):
        sims = x[start:start + 1024] @ x.T
        for r in range(sims.shape[0]):
            sims[r, start + r] = -np.inf
        nn = np.argmax(sims, axis=1)
        ok = labels[nn] == labels[start:start + 1024]
        correct += int(np.sum(ok & usable[start:start + 1024]))
    n = int(usable.sum())
    return {"probes": n, "rank1_accuracy": correct / n if n else None}


def all_pairs(e: Embedded, max_impostors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances of every genuine pair and of (up to ``max_impostors``) impostor pairs."""
    labels = np.asarray(e.labels, dtype=object)
    by: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(e.labels):
        by[lab].append(i)
    genuine = []
    for idx in by.values():
        if len(idx) > 1:
            v = e.vectors[idx]
            d = 1.0 - v @ v.T
            iu = np.triu_indices(len(idx), 1)
            genuine.append(d[iu])
    n = len(e.vectors)
    total_impostor = n * (n - 1) // 2 - sum(len(i) * (len(i) - 1) // 2 for i in by.values())
    rng = np.random.default_rng(seed)
    if total_impostor <= max_impostors:
        imp = []
        for start in range(0, n, 512):
            d = 1.0 - e.vectors[start:start + 512] @ e.vectors.T
            for r in range(d.shape[0]):
                i = start + r
                row = d[r, i + 1:]
                imp.append(row[labels[i + 1:] != labels[i]])
        impostor = np.concatenate(imp) if imp else np.zeros(0)
    else:
        a = rng.integers(0, n, size=max_impostors * 2)
        b = rng.integers(0, n, size=max_impostors * 2)
        keep = (a != b) & (labels[a] != labels[b])
        a, b = a[keep][:max_impostors], b[keep][:max_impostors]
        impostor = 1.0 - np.einsum("ij,ij->i", e.vectors[a], e.vectors[b])
    g = np.concatenate(genuine) if genuine else np.zeros(0)
    return g.astype(np.float64), impostor.astype(np.float64)


def verification(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> dict[str, Any]:
    if not genuine.size or not impostor.size:
        return {"genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size)}
    out: dict[str, Any] = {"genuine_pairs": int(genuine.size), "impostor_pairs": int(impostor.size)}
    for far in (1e-3, 1e-2):
        tar, thr = metrics.tar_at_far(genuine, impostor, far)
        out[f"tar_at_far_{far:g}"] = tar
        out[f"threshold_at_far_{far:g}"] = thr
    rate, thr = metrics.eer(genuine, impostor)
    out["eer"], out["eer_threshold"] = rate, thr
    out["at_threshold"] = {"threshold": threshold, "tar": float(np.mean(genuine <= threshold)),
                           "far": float(np.mean(impostor <= threshold))}
    return out


def lfw_pairs(e: Embedded, root: Path, pairs_file: Path) -> dict[str, Any]:
    """The LFW pairs protocol: 10-fold accuracy, threshold chosen on the other 9 folds."""
    index = {p.name: i for i, p in enumerate(e.paths)}
    lines = pairs_file.read_text().split("\n")
    n_folds, n_per = (int(x) for x in lines[0].split()[:2])
    dist, same, fold = [], [], []
    missing = 0
    rows = [ln.split("\t") if "\t" in ln else ln.split() for ln in lines[1:] if ln.strip()]
    for j, parts in enumerate(rows):
        if len(parts) == 3:
            a = f"{parts[0]}_{int(parts[1]):04d}.jpg"
            b = f"{parts[0]}_{int(parts[2]):04d}.jpg"
            is_same = True
        else:
            a = f"{parts[0]}_{int(parts[1]):04d}.jpg"
            b = f"{parts[2]}_{int(parts[3]):04d}.jpg"
            is_same = False
        ia, ib = index.get(a), index.get(b)
        if ia is None or ib is None:
            missing += 1
            dist.append(np.nan)
        else:
            dist.append(float(1.0 - e.vectors[ia] @ e.vectors[ib]))
        same.append(is_same)
        fold.append(j // (2 * n_per))
    acc = metrics.lfw_10fold_accuracy(np.array(dist), np.array(same), np.array(fold))
    return {"folds": n_folds, "pairs": len(dist), "pairs_without_face": missing,
            "accuracy_mean": acc.mean, "accuracy_std": acc.std,
            "fold_thresholds": [float(t) for t in acc.thresholds],
            "note": "pairs with an image where no face was found count as errors"}


def open_set(e: Embedded, threshold: float, sizes: list[int | None], target_fpir: float, seed: int
             ) -> dict[str, Any]:
    """Enrolled vs never-enrolled subjects; FNIR/FPIR at the threshold in force and at FPIR=target."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, lab in enumerate(e.labels):
        by[lab].append(i)
    rng = random.Random(seed)
    multi = sorted(lab for lab, idx in by.items() if len(idx) >= 2)
    single = sorted(lab for lab, idx in by.items() if len(idx) == 1)
    rng.shuffle(multi)
    if single:
        # LFW-like: every multi-image subject is enrolled; single-image subjects are strangers.
        enrolled_pool, held = multi, []
    else:
        # Yale-like: half of the subjects are enrolled, the other half are strangers.
        cut = len(multi) - len(multi) // 2
        enrolled_pool, held = multi[:cut], multi[cut:]
    stranger_idx = [by[lab][0] for lab in held] + [by[lab][0] for lab in single]
    rows = []
    done: set[int] = set()
    for size in sizes:
        people = enrolled_pool if size is None else enrolled_pool[:size]
        if not people or not stranger_idx or len(people) in done:
            continue
        done.add(len(people))
        g_idx, p_idx = [], []
        for lab in people:
            idx = by[lab]
            probe = rng.choice(idx)
            p_idx.append(probe)
            g_idx.extend(i for i in idx if i != probe)
        probes = p_idx + stranger_idx
        scores = metrics.subject_scores(e.vectors[g_idx], [e.labels[i] for i in g_idx], e.vectors[probes])
        plabels = [e.labels[i] for i in probes]
        at = metrics.open_set_from_scores(scores, plabels, threshold)
        choice = metrics.threshold_for_fpir_from_scores(scores, plabels, target_fpir)
        rows.append({"gallery_subjects": len(people), "gallery_images": len(g_idx),
                     "mated_probes": at.n_mated, "stranger_probes": at.n_nonmated,
                     "at_threshold": {"threshold": threshold, "fnir": at.fnir, "fpir": at.fpir},
                     f"at_fpir_{target_fpir:g}": {"threshold": choice.threshold, "fnir": choice.fnir,
                                                  "fpir": choice.fpir}})
    return {"enrolled_pool": len(enrolled_pool), "strangers": len(stranger_idx), "rows": rows,
            "note": "gallery: all but one image of enrolled subjects (the other is the mated probe); "
                    "strangers: every single-image subject, or when there are none, one image of each "
                    "subject of a never-enrolled half"}


def database_crosscheck(e: Embedded, pack: str, models_dir: Path | None, threshold: float, seed: int
                        ) -> dict[str, Any]:
    """The tutorial protocol (split ``seed``) end to end through a scratch FaceDB."""
    from ..api import FaceDB

    by: dict[str, list[Path]] = defaultdict(list)
    for p, lab in zip(e.paths, e.labels):
        by[lab].append(p)
    rng = random.Random(seed)
    probes = {lab: rng.choice(ps) for lab, ps in by.items() if len(ps) >= 2}
    with tempfile.TemporaryDirectory(prefix="facedb-eval-") as tmp:
        db = FaceDB(home=Path(tmp) / "home", pack=pack, models_dir=models_dir, workers=1, threshold=threshold)
        for lab, ps in by.items():
            db.enroll(lab, [p for p in ps if p != probes.get(lab)])
        rep = db.search(list(probes.values()), k=2, by="face", reference=True)
        db.close()
    hits = total = agree = 0
    for (lab, _), res in zip(probes.items(), rep.results):
        if res.faces:
            f = res.faces[0]
            hits += sum(m.subject == lab for m in f.matches)
            total += len(f.matches)
            agree += bool(f.reference_agrees)
    return {"probes": len(probes), "precision_at_2": hits / total if total else None,
            "reference_agrees": agree, "note": "scratch database in a temporary home, deleted afterwards"}


def evaluate(root: Path, *, pack: str, models_dir: Path | None, threshold: float, name_from: str = "dir",
             lfw_pairs_file: Path | None = None, splits: int = 5, seed: int = 0,
             gallery_sizes: list[int | None] | None = None, target_fpir: float = 0.01,
             workers: int = 1, limit: int | None = None, max_impostors: int = 5_000_000,
             via_database: bool | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    ds = load_dataset(root, name_from, limit)
    e = embed(ds, pack, models_dir, workers, progress)
    if len(e.vectors) < 2:
        raise FacedbError(f"{root}: fewer than two faces found; nothing to evaluate")
    genuine, impostor = all_pairs(e, max_impostors, seed)
    report: dict[str, Any] = {
        "dataset": str(root), "pack": pack, "threshold": threshold,
        "images": len(ds.paths), "subjects": len(set(ds.labels)), "faces_found": len(e.vectors),
        "failures": dict(Counter(e.failures.values())), "seconds_per_image": e.seconds_per_image,
        "workers": workers,
        "tutorial": tutorial_protocol(e, splits, seed),
        "leave_one_out": leave_one_out_rank1(e),
        "verification": verification(genuine, impostor, threshold),
        "open_set": open_set(e, threshold, gallery_sizes or [100, 500, 1000, None], target_fpir, seed),
    }
    if lfw_pairs_file is not None:
        report["lfw_pairs"] = lfw_pairs(e, root, lfw_pairs_file)
    if via_database if via_database is not None else len(ds.paths) <= 400:
        report["tutorial"]["database_crosscheck"] = database_crosscheck(e, pack, models_dir, threshold, seed)
    report["_distances"] = (genuine, impostor)
    return report


def require_matplotlib() -> None:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise FacedbError("--plot needs matplotlib: pip install 'facedb-service[plot]'")


def plot(report: dict[str, Any], path: Path) -> None:
    """Genuine/impostor histograms and the DET curve, marking the threshold in force."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    genuine, impostor = report["_distances"]
    thr = report["threshold"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    bins = np.linspace(0, 1.6, 161)
    ax1.hist(impostor, bins=bins, density=True, alpha=0.6, label=f"impostor ({impostor.size:,})")
    ax1.hist(genuine, bins=bins, density=True, alpha=0.6, label=f"genuine ({genuine.size:,})")
    ax1.axvline(thr, color="k", ls="--", label=f"threshold {thr:.3f}")
    ax1.set_xlabel("cosine distance")
    ax1.set_ylabel("density")
    ax1.legend()
    roc = metrics.roc_points(genuine, impostor)
    far = np.clip(roc.far, 1e-7, 1)
    ax2.loglog(far, np.clip(roc.frr, 1e-5, 1))
    at = report["verification"].get("at_threshold")
    if at:
        ax2.plot([max(at["far"], 1e-7)], [max(1 - at["tar"], 1e-5)], "ko", label=f"threshold {thr:.3f}")
    ax2.set_xlabel("false accept rate")
    ax2.set_ylabel("false reject rate")
    ax2.set_title("DET")
    ax2.legend()
    fig.suptitle(f"{report['pack']} on {Path(report['dataset']).name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
