"""``facedb review``: which enrolled faces look like somebody else, with the evidence.

Nothing here compares every face with every other face. Everything rests on the subject
templates (the normalised sum of a subject's unit embeddings, ``facedb.catalog.templates``),
computed once from the faces read in one pass:

- **outliers**, per face: ``distance_own``, the cosine distance to its own subject's template
  *without it* (leave-one-out: the mean of the subject's OTHER faces, so a wrong face cannot pull
  its own template towards itself), and the nearest *other* subject's template (faces x templates,
  in blocks). A face is ``far_from_own`` when its own subject would not match it
  (``distance_own`` above ``OUTLIER_FACTOR`` x the threshold), and ``closer_to_other`` when
  another subject matches it (``distance_other`` within the threshold) better than its own does.
  A subject with one face has no leave-one-out template: only the second rule applies to it.
- **look_alikes**: template pairs closer than ``LOOK_ALIKE_FACTOR`` x the threshold (templates x
  templates, in blocks: subjects, not faces). An outlier explained by a look-alike pair (its
  nearest other subject is the other name of that pair) is not listed again as an outlier.
- **duplicates**: the same photo under two names. Byte-identical copies never reach the catalog
  (enrollment refuses them as ``enrolled_as_other``); a copy in other bytes (re-saved, resized)
  does, with nearly the same vector. The face index (HNSW) gives each face's few nearest faces:
  one under another subject within ``DUPLICATE_FACTOR`` x the threshold is a duplicate.

The factors were chosen by measurement (``scripts/bench/review_planted.py``, reported in
docs/benchmarks/review.md) and scale with the collection's threshold, so a pack (or collection)
with another threshold keeps the same meaning: "would not be matched", "would be matched".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..catalog.review import ReviewFaces
from ..contract.review import ReviewDuplicate, ReviewLookAlike, ReviewOutlier, ReviewReport
from ..index.templates import unit_rows
from ..store.stores import Store
from .collections import CollectionPack

#: ``far_from_own``: distance to the subject's other faces above this many thresholds.
OUTLIER_FACTOR = 1.4
#: ``look_alikes``: two subjects' templates closer than this many thresholds.
LOOK_ALIKE_FACTOR = 0.7
#: ``duplicates``: two faces of different subjects closer than this many thresholds.
DUPLICATE_FACTOR = 0.1
#: Faces (or templates) per block of the faces x templates products: bounds memory at
#: BLOCK x subjects floats.
BLOCK = 1024
#: Nearest faces asked of the index per face when looking for duplicates.
DUPLICATE_K = 4


@dataclass(frozen=True)
class Evidence:
    """Per face (in ``ReviewFaces`` order): distance to its own leave-one-out template (NaN for a
    subject's only face), and the nearest other subject (-1 when there is none) with its distance."""

    own: np.ndarray
    other: np.ndarray
    other_subject: np.ndarray
    #: subject ids and their unit templates (rows in the same order)
    subject_ids: np.ndarray
    templates: np.ndarray


def evidence(faces: ReviewFaces) -> Evidence:
    """The distances every rule reads: O(faces x subjects), in blocks."""
    n = len(faces.face_ids)
    if n == 0:
        empty = np.zeros(0)
        return Evidence(empty, empty, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
    emb = unit_rows(faces.embeddings).astype(np.float64)
    sids, row_of = np.unique(faces.subject_ids, return_inverse=True)
    sums = np.zeros((len(sids), emb.shape[1]), np.float64)
    np.add.at(sums, row_of, emb)
    counts = np.bincount(row_of, minlength=len(sids))
    templates = unit_rows(sums)
    # Leave-one-out: the subject's sum without this face, normalised.
    rest = sums[row_of] - emb
    norms = np.linalg.norm(rest, axis=1)
    alone = (counts[row_of] < 2) | (norms <= 1e-9)
    own = np.full(n, np.nan)
    own[~alone] = 1.0 - np.einsum("ij,ij->i", emb[~alone], rest[~alone]) / norms[~alone]
    other = np.full(n, np.nan)
    other_subject = np.full(n, -1, np.int64)
    if len(sids) > 1:
        t32, e32 = templates.astype(np.float32), emb.astype(np.float32)
        for start in range(0, n, BLOCK):
            block = slice(start, min(n, start + BLOCK))
            rows = np.arange(block.stop - start)
            sim = e32[block] @ t32.T  # cosine similarity; the nearest template has the largest
            sim[rows, row_of[block]] = -np.inf  # not its own subject
            best = np.argmax(sim, axis=1)
            other[block] = 1.0 - sim[rows, best].astype(np.float64)
            other_subject[block] = sids[best]
    return Evidence(np.maximum(own, 0.0), np.maximum(other, 0.0), other_subject, sids, templates.astype(np.float32))


def outlier_reason(own: float, other: float, threshold: float) -> str | None:
    """The rule a face breaks, if any (``own`` is NaN for a subject's only face, ``other`` NaN
    when there is no other subject)."""
    has_own, has_other = not np.isnan(own), not np.isnan(other)
    if has_other and other <= threshold and (not has_own or other < own):
        return "closer_to_other"
    if has_own and own > OUTLIER_FACTOR * threshold:
        return "far_from_own"
    return None


def look_alike_pairs(ev: Evidence, cutoff: float) -> list[tuple[int, int, float]]:
    """(subject id, subject id, distance) of template pairs closer than ``cutoff``, closest first."""
    out: list[tuple[int, int, float]] = []
    t = ev.templates
    for start in range(0, len(t), BLOCK):
        # Only the pairs (i, j) with j > i: each pair once, never a subject with itself.
        sim = t[start:start + BLOCK] @ t[start:].T
        rows, cols = np.nonzero(sim > 1.0 - cutoff)
        for r, c in zip(rows, cols):
            i, j = start + int(r), start + int(c)
            if i < j:
                out.append((int(ev.subject_ids[i]), int(ev.subject_ids[j]), max(0.0, 1.0 - float(sim[r, c]))))
    out.sort(key=lambda p: (p[2], p[0], p[1]))
    return out


class Reviewer:
    def __init__(self, store: Store, pack: CollectionPack) -> None:
        self.store = store
        self.pack = pack

    def review(self) -> ReviewReport:
        info = self.pack.contract()
        threshold = float(self.pack.threshold)
        faces = self.store.catalog.review_faces(info.name)
        ev = evidence(faces)
        names = faces.names
        report = ReviewReport(pack=info.name, threshold=threshold, subjects=len(ev.subject_ids),
                              faces=len(faces.face_ids), outlier_distance=round(OUTLIER_FACTOR * threshold, 6),
                              look_alike_distance=round(LOOK_ALIKE_FACTOR * threshold, 6),
                              duplicate_distance=round(DUPLICATE_FACTOR * threshold, 6))
        pairs = look_alike_pairs(ev, LOOK_ALIKE_FACTOR * threshold)
        paired = {frozenset((a, b)) for a, b, _ in pairs}
        report.look_alikes = [ReviewLookAlike(a=names[a], b=names[b], distance=round(d, 6)) for a, b, d in pairs]
        for i, fid in enumerate(faces.face_ids):
            own, other = float(ev.own[i]), float(ev.other[i])
            reason = outlier_reason(own, other, threshold)
            sid, osid = int(faces.subject_ids[i]), int(ev.other_subject[i])
            if reason is None or frozenset((sid, osid)) in paired:
                continue
            report.outliers.append(ReviewOutlier(
                subject=names[sid], face_id=int(fid), image=faces.images[int(fid)],
                distance_own=None if np.isnan(own) else round(own, 6),
                nearest_other=names.get(osid) if osid >= 0 else None,
                distance_other=None if np.isnan(other) else round(other, 6), reason=reason))
        # The most telling first: matched by someone else, then the farthest from their own.
        report.outliers.sort(key=lambda o: (o.reason != "closer_to_other",
                                            -(o.distance_own if o.distance_own is not None else 0.0), o.face_id))
        report.duplicates = self._duplicates(faces, DUPLICATE_FACTOR * threshold)
        return report

    def _duplicates(self, faces: ReviewFaces, cutoff: float) -> list[ReviewDuplicate]:
        """Faces of different subjects with nearly the same vector, from the face index's nearest
        neighbours of every face (each pair once)."""
        n = len(faces.face_ids)
        if n < 2:
            return []
        subject_of = dict(zip(faces.face_ids.tolist(), faces.subject_ids.tolist()))
        info = self.pack.contract()
        found: dict[tuple[int, int], float] = {}
        with self.store.reading() as index:
            for start in range(0, n, BLOCK):
                ids = faces.face_ids[start:start + BLOCK]
                for fid, hits in zip(ids.tolist(), index.query(info, faces.embeddings[start:start + BLOCK],
                                                               min(DUPLICATE_K, n))):
                    for hit in hits:
                        other = subject_of.get(hit.face_id)
                        if hit.distance < cutoff and other is not None and other != subject_of[fid]:
                            found.setdefault((min(fid, hit.face_id), max(fid, hit.face_id)), hit.distance)
        out = []
        for (a, b), dist in sorted(found.items(), key=lambda kv: (kv[1], kv[0])):
            sa, sb = subject_of[a], subject_of[b]
            out.append(ReviewDuplicate(subject=faces.names[sa], face_id=a, image=faces.images[a],
                                       other_subject=faces.names[sb], other_face_id=b, other_image=faces.images[b],
                                       distance=round(float(dist), 6)))
        return out
