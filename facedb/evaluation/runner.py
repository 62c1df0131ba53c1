"""``facedb eval``: measure a model pack on a labelled folder, away from the user's database.

Every image is embedded once (largest face) with the pack; all protocols then run on those
embeddings with exact cosine search, the same answers facedb's search gives (its reference
mode checks Chroma against exactly this). For small datasets the tutorial protocol is also run
end to end through a scratch FaceDB in a temporary home, deleted afterwards.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..analysis import imaging
from ..analysis.engines import Face
from ..analysis.pipeline import Analyzer
from ..errors import FacedbError, ImageError
from . import lfw, metrics

ProgressFn = Callable[[int], None]


@dataclass
class Dataset:
    """Labelled images: ``labels[i]`` is the subject of ``paths[i]``."""

    paths: list[Path]
    labels: list[str]


#: The quality signals of ``Face.quality`` kept per embedded image (columns of ``Embedded.quality``).
QUALITY_SIGNALS = ("det_score", "face_px", "eye_px", "blur", "raw_norm")
#: Which face of an image with several is used: ``largest`` (what enrollment does: the largest
#: visible face) or ``central`` (the face whose box centre is nearest the image centre: the one
#: LFW labels).
Pick = Literal["largest", "central"]
PICKS: tuple[Pick, ...] = ("largest", "central")
#: Where ``embed(cache=True)`` keeps its files (never in the repository).
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "facedb-embeddings"
_CACHE_VERSION = 1


@dataclass
class Embedded:
    """The embeddings of a dataset's images where a face was found (one face per image)."""

    paths: list[Path]
    labels: list[str]
    vectors: np.ndarray  # (n, dim) for the images where a face was found, face chosen by ``pick``
    failures: dict[str, str] = field(default_factory=dict)  # path -> reason
    seconds_per_image: float = 0.0  # wall clock of the embedding pass / images (0 when cached)
    #: (n, len(QUALITY_SIGNALS)): the chosen face's quality signals (NaN when the pack has none)
    quality: np.ndarray | None = None
    n_faces: np.ndarray | None = None  # (n,) faces detected in each image
    pick: str = "largest"
    #: the vectors of the same images chosen by the other pickers asked for (``embed(picks=...)``)
    alternatives: dict[str, np.ndarray] = field(default_factory=dict)
    pack: str = ""
    fingerprint: str = ""
    workers: int = 1
    wall_seconds: float = 0.0
    cached: bool = False
    cache_file: str | None = None

    def with_pick(self, pick: str) -> Embedded:
        """The same images with the vectors of another picker (one of ``embed``'s ``picks``)."""
        if pick == self.pick:
            return self
        if pick not in self.alternatives:
            raise FacedbError(f"face picker {pick!r} was not computed (picks: {self.pick}, "
                              f"{', '.join(self.alternatives) or '-'})")
        alt = dict(self.alternatives)
        alt[self.pick] = self.vectors
        vec = alt.pop(pick)
        return replace(self, vectors=vec, pick=pick, alternatives=alt)

    def quality_of(self, signal: str) -> np.ndarray:
        """One column of ``quality`` (NaN everywhere when the pack gives no quality)."""
        if self.quality is None or signal not in QUALITY_SIGNALS:
            return np.full(len(self.paths), np.nan)
        return self.quality[:, QUALITY_SIGNALS.index(signal)]


def load_dataset(root: Path, name_from: str = "dir", limit: int | None = None) -> Dataset:
    """``root/<subject>/<images>`` or, with ``name_from='prefix'``, a flat folder."""
    from ..contract.names import subject_from_filename

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


def lfw_dataset(root: Path, limit: int | None = None) -> Dataset:
    """LFW as a ``Dataset``, in ``lfw.list_images`` order (person = folder)."""
    rel = lfw.list_images(root)[:limit] if limit else lfw.list_images(root)
    if not rel:
        raise FacedbError(f"{root}: no LFW images found")
    return Dataset([Path(root) / r for r in rel], [lfw.person_of(r) for r in rel])


def pick_face(faces: list[Face], width: int, height: int, pick: str) -> int:
    """Index in ``faces`` (largest first) of the face ``pick`` chooses."""
    if pick == "largest" or len(faces) == 1:
        return 0
    if pick == "central":
        cx, cy = width / 2, height / 2
        off = [math.hypot((f.bbox[0] + f.bbox[2]) / 2 - cx, (f.bbox[1] + f.bbox[3]) / 2 - cy) for f in faces]
        return int(np.argmin(off))  # the first of equals: the larger face
    raise FacedbError(f"face picker must be one of {', '.join(PICKS)}, not {pick!r}")


def _quality_row(face: Face) -> list[float]:
    q = face.quality or {}
    return [float(q.get(k, math.nan)) for k in QUALITY_SIGNALS]


def cache_key(pack: str, fingerprint: str, paths: list[Path], picks: tuple[str, ...]) -> str:
    """What an embedding cache file is keyed by: pack, fingerprint, face pickers and the file
    list (resolved path, size and modification time of every file)."""
    h = hashlib.sha256()
    h.update(json.dumps({"v": _CACHE_VERSION, "pack": pack, "fingerprint": fingerprint,
                         "picks": list(picks)}).encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{Path(p).resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


def _cache_path(folder: Path, pack: str, fingerprint: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in pack)
    return folder / f"{safe}-{fingerprint[:12]}-{key[:16]}.npz"


def _load_cache(file: Path, ds: Dataset, key: str, picks: tuple[str, ...]) -> Embedded | None:
    try:
        with np.load(file, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("key") != key:
                return None
            keep = z["keep"]
            vecs = {p: z[f"vec_{p}"] for p in picks}
            quality, n_faces = z["quality"], z["n_faces"]
    except (OSError, ValueError, KeyError):
        return None
    failures = {str(ds.paths[int(i)]): r for i, r in meta["failures"]}
    return Embedded([ds.paths[i] for i in keep], [ds.labels[i] for i in keep], vecs[picks[0]], failures,
                    0.0, quality, n_faces, picks[0], {p: vecs[p] for p in picks[1:]}, meta["pack"],
                    meta["fingerprint"], meta["workers"], meta["wall_seconds"], True, str(file))


def _save_cache(file: Path, key: str, e: Embedded, keep: list[int], failures: list[tuple[int, str]],
                picks: tuple[str, ...]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    meta = {"key": key, "pack": e.pack, "fingerprint": e.fingerprint, "workers": e.workers,
            "wall_seconds": e.wall_seconds, "failures": failures, "picks": list(picks)}
    arrays: dict[str, Any] = {f"vec_{p}": (e.vectors if p == e.pick else e.alternatives[p]) for p in picks}
    arrays.update(meta=np.array(json.dumps(meta)), keep=np.array(keep, dtype=np.int64),
                  quality=e.quality if e.quality is not None else np.zeros((0, len(QUALITY_SIGNALS))),
                  n_faces=e.n_faces if e.n_faces is not None else np.zeros(0, np.int64))
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, file)


def _cache_entry(ds: Dataset, pack: str, models_dir: Path | None, pick: str, also: tuple[str, ...],
                 cache: Path | bool | None) -> tuple[tuple[str, ...], str, Path | None, str]:
    """(pickers, fingerprint, cache file or None, key) of an ``embed`` call."""
    from ..analysis.engines import load_engine

    picks = tuple(dict.fromkeys((pick, *also)))
    for p in picks:
        if p not in PICKS:
            raise FacedbError(f"face picker must be one of {', '.join(PICKS)}, not {p!r}")
    fingerprint = load_engine(pack, models_dir).info.fingerprint
    if not cache:
        return picks, fingerprint, None, ""
    folder = DEFAULT_CACHE if cache is True else Path(cache)
    key = cache_key(pack, fingerprint, ds.paths, picks)
    return picks, fingerprint, _cache_path(folder, pack, fingerprint, key), key


def load_cached(ds: Dataset, pack: str, models_dir: Path | None = None, *, pick: str = "largest",
                also: tuple[str, ...] = (), cache: Path | bool = True) -> Embedded | None:
    """What ``embed`` with these arguments would read from its cache, or None (nothing embedded)."""
    picks, _, file, key = _cache_entry(ds, pack, models_dir, pick, also, cache)
    return _load_cache(file, ds, key, picks) if file is not None and file.is_file() else None


def embed(ds: Dataset, pack: str, models_dir: Path | None, workers: int,
          progress: ProgressFn | None = None, *, pick: str = "largest", also: tuple[str, ...] = (),
          cache: Path | bool | None = None) -> Embedded:
    """Embed one face per image through facedb's pipeline (``pipeline.Analyzer``).

    ``pick`` chooses the face of a multi-face image (``PICKS``); ``also`` computes the other
    pickers' vectors in the same pass (``Embedded.with_pick``). Only the largest face is
    embedded when it is the only picker, else every face is. ``cache``: a folder (or True for
    ``DEFAULT_CACHE``) holding one ``.npz`` per pack, fingerprint, pickers and file list; a
    later call with the same key reads it instead of embedding."""
    picks, fingerprint, file, key = _cache_entry(ds, pack, models_dir, pick, also, cache)
    if file is not None and file.is_file():
        hit = _load_cache(file, ds, key, picks)
        if hit is not None:
            if progress:
                progress(len(ds.paths))
            return hit
    vecs: dict[str, list[np.ndarray]] = {p: [] for p in picks}
    quality: list[list[float]] = []
    n_faces: list[int] = []
    keep: list[int] = []
    failed: list[tuple[int, str]] = []
    start = time.perf_counter()

    def read_all() -> Iterator[tuple[int, bytes, str]]:  # lazily: the pool pulls as it goes
        for i, p in enumerate(ds.paths):
            try:
                yield i, imaging.read_bytes(p), str(p)
            except ImageError as exc:
                failed.append((i, exc.reason))
                if progress:
                    progress(1)

    max_faces = 1 if picks == ("largest",) else None
    with Analyzer(pack, models_dir, workers) as analyzer:
        for res in analyzer.run(read_all(), len(ds.paths), max_faces=max_faces):
            if res.reason or not res.faces:
                failed.append((res.key, res.reason or "no_face"))
            else:
                chosen = {p: res.faces[pick_face(res.faces, res.width, res.height, p)] for p in picks}
                if any(f.embedding is None for f in chosen.values()):
                    failed.append((res.key, "analysis_error"))
                else:
                    for p, f in chosen.items():
                        assert f.embedding is not None
                        vecs[p].append(f.embedding)
                    quality.append(_quality_row(chosen[pick]))
                    n_faces.append(len(res.faces))
                    keep.append(res.key)
            if progress:
                progress(1)
    elapsed = time.perf_counter() - start
    dim = vecs[pick][0].size if vecs[pick] else 0
    arrays = {p: np.stack(v).astype(np.float32) if v else np.zeros((0, dim), np.float32) for p, v in vecs.items()}
    failed.sort()
    e = Embedded([ds.paths[i] for i in keep], [ds.labels[i] for i in keep], arrays[pick],
                 {str(ds.paths[i]): r for i, r in failed}, elapsed / max(1, len(ds.paths)),
                 np.array(quality, dtype=np.float64).reshape(-1, len(QUALITY_SIGNALS)),
                 np.array(n_faces, dtype=np.int64), pick, {p: arrays[p] for p in picks[1:]}, pack, fingerprint,
                 max(1, workers), elapsed)
    if file is not None:
        _save_cache(file, key, e, keep, failed, picks)
        e.cache_file = str(file)
    return e


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
    """The LFW pairs protocol: 10-fold accuracy, threshold chosen on the other 9 folds.

    Pairs are read by ``lfw.read_pairs`` (strict: a malformed file is an error). A pair with an
    image where no face was found, or that is not in the dataset, counts as an error."""
    pairs = lfw.read_pairs(pairs_file)
    index: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for i, p in enumerate(e.paths):
        try:
            index[p.relative_to(root).as_posix()] = i
        except ValueError:
            pass
        by_name.setdefault(p.name, i)
    def rel(f: Path) -> str:
        return f.relative_to(root).as_posix() if f.is_relative_to(root) else f.name

    listed = {rel(f) for f in e.paths} | {rel(Path(f)) for f in e.failures}
    dist = []
    missing = not_listed = 0
    for pr in pairs.pairs:
        ia = index.get(pr.a, by_name.get(pr.a.rsplit("/", 1)[-1]))
        ib = index.get(pr.b, by_name.get(pr.b.rsplit("/", 1)[-1]))
        if ia is None or ib is None:
            missing += 1
            not_listed += (pr.a not in listed) or (pr.b not in listed)
            dist.append(np.nan)
        else:
            dist.append(float(1.0 - e.vectors[ia] @ e.vectors[ib]))
    acc = metrics.lfw_10fold_accuracy(np.array(dist), pairs.same, pairs.fold_ids)
    return {"folds": pairs.folds, "pairs": len(pairs), "pairs_without_face": missing,
            "pairs_with_image_not_in_dataset": not_listed,
            "accuracy_mean": acc.mean, "accuracy_std": acc.std,
            "fold_accuracies": [float(a) for a in acc.accuracies],
            "fold_thresholds": [float(t) for t in acc.thresholds],
            "note": "pairs with an image where no face was found count as errors"}


def below_floor(e: Embedded, floor: Mapping[str, float] | None) -> np.ndarray:
    """Per embedded image: is its face below the quality ``floor`` (what enrollment refuses with
    reason ``low_quality``)? A signal the pack does not give is never below."""
    return rows_below_floor(e.quality, floor, len(e.paths))


def rows_below_floor(quality: np.ndarray | None, floor: Mapping[str, float] | None, n: int | None = None
                     ) -> np.ndarray:
    """Per row of ``quality`` (columns ``QUALITY_SIGNALS``): below ``floor``? NaN (no signal, or no
    face) is never below; a floor on a signal that is not a column is ignored."""
    rows = n if n is not None else (0 if quality is None else len(quality))
    out = np.zeros(rows, dtype=bool)
    if quality is None or not len(quality):
        return out
    for key, value in (floor or {}).items():
        if key in QUALITY_SIGNALS:
            col = quality[:, QUALITY_SIGNALS.index(key)]
            with np.errstate(invalid="ignore"):
                out |= np.isfinite(col) & (col < value)
    return out


def _scored(g: np.ndarray, gl: list[str], p: np.ndarray, pl: list[str], threshold: float, target_fpir: float,
            scoring: str) -> dict[str, Any]:
    scores = metrics.subject_scores(g, gl, p, scoring=scoring)
    at = metrics.open_set_from_scores(scores, pl, threshold)
    choice = metrics.threshold_for_fpir_from_scores(scores, pl, target_fpir)
    return {"at_threshold": {"threshold": threshold, "fnir": at.fnir, "fpir": at.fpir,
                             "mated_misnamed": at.n_mated_misnamed, "mated_unknown": at.n_mated_unknown,
                             "strangers_named": at.n_nonmated_named},
            f"at_fpir_{target_fpir:g}": {"threshold": choice.threshold, "fnir": choice.fnir, "fpir": choice.fpir}}


def open_set(e: Embedded, threshold: float, sizes: list[int | None], target_fpir: float, seed: int,
             scoring: str = "template", quality_floor: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Enrolled vs never-enrolled subjects; FNIR/FPIR at the threshold in force and at FPIR=target.

    Every gallery is scored both ways (``by_scoring``: ``template`` and ``best``; the row's
    ``at_threshold`` is ``scoring``'s), and again with the gallery faces below ``quality_floor``
    left out, as enrollment would refuse them (a subject left without faces is not enrolled:
    their probe is then a stranger)."""
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
    low = below_floor(e, quality_floor)
    rows = []
    done: set[int] = set()
    for size in sizes:
        people = enrolled_pool if size is None else enrolled_pool[:size]
        if not people or not stranger_idx or len(people) in done:
            continue
        done.add(len(people))
        g_idx: list[int] = []
        p_idx: list[int] = []
        for lab in people:
            idx = by[lab]
            probe = rng.choice(idx)
            p_idx.append(probe)
            g_idx.extend(i for i in idx if i != probe)
        probes = p_idx + stranger_idx
        pv, pl = e.vectors[probes], [e.labels[i] for i in probes]
        gl = [e.labels[i] for i in g_idx]
        scored = {sc: _scored(e.vectors[g_idx], gl, pv, pl, threshold, target_fpir, sc) for sc in metrics.SCORINGS}
        row: dict[str, Any] = {"gallery_subjects": len(people), "gallery_images": len(g_idx),
                               "mated_probes": len(p_idx), "stranger_probes": len(stranger_idx),
                               "scoring": scoring, **scored[scoring], "by_scoring": scored}
        if quality_floor:
            kept = [i for i in g_idx if not low[i]]
            kept_people = {e.labels[i] for i in kept}
            qf: dict[str, Any] = {"gallery_images_below_floor": len(g_idx) - len(kept),
                                  "subjects_left_out": len(people) - len(kept_people)}
            if kept:
                kl = [e.labels[i] for i in kept]
                qf["by_scoring"] = {sc: _scored(e.vectors[kept], kl, pv, pl, threshold, target_fpir, sc)
                                    for sc in metrics.SCORINGS}
            row["quality_floor"] = qf
        rows.append(row)
    return {"enrolled_pool": len(enrolled_pool), "strangers": len(stranger_idx), "scoring": scoring,
            "quality_floor": dict(quality_floor) if quality_floor else None,
            "faces_below_floor": int(low.sum()), "rows": rows,
            "note": "gallery: all but one image of enrolled subjects (the other is the mated probe); "
                    "strangers: every single-image subject, or when there are none, one image of each "
                    "subject of a never-enrolled half; scoring 'template': distance to the normalised mean "
                    "of a subject's faces (facedb's default search), 'best': to its closest face; "
                    "quality_floor: the same with the gallery faces below the enrollment floor left out"}


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
             via_database: bool | None = None, progress: ProgressFn | None = None,
             scoring: str = "template", quality_floor: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Every protocol on one embedding pass of ``root`` (see the module docstring).

    ``scoring``: the subject scoring of the open-set headline (both are reported);
    ``quality_floor``: the enrollment floor whose effect on the open set is reported
    (``facedb.analysis.quality.DEFAULT_QUALITY_FLOOR`` when None; pass ``{}`` for none)."""
    from ..analysis.quality import DEFAULT_QUALITY_FLOOR

    if scoring not in metrics.SCORINGS:
        raise FacedbError(f"scoring must be one of {', '.join(metrics.SCORINGS)}, not {scoring!r}")
    floor = DEFAULT_QUALITY_FLOOR if quality_floor is None else quality_floor
    ds = load_dataset(root, name_from, limit)
    e = embed(ds, pack, models_dir, workers, progress)
    if len(e.vectors) < 2:
        raise FacedbError(f"{root}: fewer than two faces found; nothing to evaluate")
    genuine, impostor = all_pairs(e, max_impostors, seed)
    report: dict[str, Any] = {
        "dataset": str(root), "pack": pack, "threshold": threshold, "scoring": scoring,
        "images": len(ds.paths), "subjects": len(set(ds.labels)), "faces_found": len(e.vectors),
        "failures": dict(Counter(e.failures.values())), "seconds_per_image": e.seconds_per_image,
        "workers": workers,
        "tutorial": tutorial_protocol(e, splits, seed),
        "leave_one_out": leave_one_out_rank1(e),
        "verification": verification(genuine, impostor, threshold),
        "open_set": open_set(e, threshold, gallery_sizes or [100, 500, 1000, None], target_fpir, seed,
                             scoring, floor),
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
