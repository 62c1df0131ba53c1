"""Exact subject search by template: every subject's normalised template in memory, brute force.

A subject's template is the normalised sum of the unit embeddings of its faces (the catalog
keeps the sums, see ``facedb.catalog.templates``). Scoring a probe against every template is one
matrix product: exact, and cheap next to the face index (100,000 faces of 20,000 people: a
20,000 x 128 product per probe). The cache reads from the catalog only the templates changed
since its last look (the catalog numbers each change), so other processes' writes reach it at
the next search.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import fasteners
import numpy as np

from .. import trace
from ..catalog.database import Catalog

#: (face id, subject name, embedding, image path): one face of a subject, as a search reports it
FaceRow = tuple[int, str, np.ndarray, str]
#: Subjects whose faces ``TemplateCache.subject_faces`` keeps at most, then it starts again (at 5
#: faces a subject: about 10 MiB at 128-d, 25 MiB at 512-d)
MAX_FACE_SUBJECTS = 2048


class TemplateCache:
    """The templates of one pack's subjects, refreshed from the catalog before each search."""

    def __init__(self, catalog: Catalog, pack: str) -> None:
        self.catalog = catalog
        self.pack = pack
        self._lock = fasteners.ReaderWriterLock()  # queries read the arrays while refresh edits them
        self._seq = 0
        self._row: dict[int, int] = {}  # subject id -> row
        self._n = 0  # rows in use; the arrays have room for more (grown by doubling)
        self._ids = np.zeros(0, dtype=np.int64)
        self._mat = np.zeros((0, 0), dtype=np.float32)  # unit templates; rows of removed subjects are 0
        self._live = np.zeros(0, dtype=bool)
        #: subject id -> number of its last change seen in the feed (a rename moves it too)
        self._seq_of: dict[int, int] = {}
        #: subject id -> (its number when they were read, its indexed faces): see ``subject_faces``
        self._faces: dict[int, tuple[int, list[FaceRow]]] = {}
        self._faces_lock = threading.Lock()

    def __len__(self) -> int:
        return int(self._live[:self._n].sum())

    def _grow(self, need: int, dim: int) -> None:
        cap = max(1024, len(self._ids))
        while cap < need:
            cap *= 2
        if cap == len(self._ids) and self._mat.shape[1:] == (dim,):
            return
        ids, mat, live = np.zeros(cap, np.int64), np.zeros((cap, dim), np.float32), np.zeros(cap, bool)
        ids[:self._n], live[:self._n] = self._ids[:self._n], self._live[:self._n]
        if self._n:
            mat[:self._n] = self._mat[:self._n]
        self._ids, self._mat, self._live = ids, mat, live

    @trace.traced("templates.refresh")
    def refresh(self) -> None:
        changes = self.catalog.template_changes(self.pack, self._seq)
        if not changes:
            return
        # Normalised in one vectorised step: a cold cache loads every subject's template at once.
        present = [i for i, (_, vec, _) in enumerate(changes) if vec is not None]
        vectors = [vec for _, vec, _ in changes if vec is not None]
        units: np.ndarray | None = unit_rows(np.stack(vectors)) if vectors else None
        unit_of = dict(zip(present, range(len(present))))
        with self._lock.write_lock():
            fresh: list[tuple[int, int]] = []  # (subject id, row of ``units``)
            for i, (sid, _, seq) in enumerate(changes):
                if seq <= self._seq and sid in self._row:  # another thread applied it meanwhile
                    continue
                self._seq = max(self._seq, seq)
                with self._faces_lock:
                    self._seq_of[sid] = max(seq, self._seq_of.get(sid, 0))
                    self._faces.pop(sid, None)
                j = unit_of.get(i)
                row = self._row.get(sid)
                if row is None:
                    if j is not None:
                        fresh.append((sid, j))
                elif j is None:
                    self._mat[row] = 0.0
                    self._live[row] = False
                else:
                    assert units is not None
                    self._mat[row] = units[j]
                    self._live[row] = True
            if fresh and units is not None:
                start, end = self._n, self._n + len(fresh)
                if end > len(self._ids) or self._mat.shape[1] != units.shape[1]:
                    self._grow(end, units.shape[1])
                self._ids[start:end] = [sid for sid, _ in fresh]
                self._mat[start:end] = units[[j for _, j in fresh]]
                self._live[start:end] = True
                self._row.update({sid: start + n for n, (sid, _) in enumerate(fresh)})
                self._n = end

    @trace.traced("templates.query")
    def query(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """The k nearest subjects of each probe: (subject id, cosine distance to its template)."""
        with self._lock.read_lock():
            used = self._n
            ids, live = self._ids[:used].copy(), self._live[:used].copy()
            n = int(live.sum())
            if n == 0 or len(vectors) == 0:
                return [[] for _ in range(len(vectors))]
            dist = 1.0 - np.asarray(vectors, dtype=np.float32) @ self._mat[:used].T
        dist[:, ~live] = np.inf
        k = min(k, n)
        out = []
        for row in dist:
            top = np.argpartition(row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.lexsort((ids[top], row[top]))]  # by distance, then subject id: deterministic
            out.append([(int(ids[j]), max(0.0, float(row[j]))) for j in top if np.isfinite(row[j])][:k])
        return out

    def subject_faces(self, subject_ids: Sequence[int]) -> dict[int, list[FaceRow]]:
        """subject id -> (face id, subject name, embedding, image path) of its indexed faces, for
        the subjects a search ranked (``catalog.subject_faces``). Kept in memory per subject, with
        the number of the subject's last change the feed had shown when they were read, and
        given out while that number has not moved: every change of a subject's indexed faces
        recomputes its template and a rename renumbers it (``facedb.catalog.templates``), so
        ``refresh`` sees each one. Call after ``refresh``. A subject the feed never showed is read
        every time."""
        out: dict[int, list[FaceRow]] = {}
        missing: dict[int, int | None] = {}
        with self._faces_lock:
            for sid in subject_ids:
                tag = self._seq_of.get(sid)
                got = self._faces.get(sid)
                if got is not None and got[0] == tag:
                    out[sid] = got[1]
                else:
                    missing[sid] = tag  # the number *before* the read: a change meanwhile moves it
        if not missing:
            return out
        fresh: dict[int, list[FaceRow]] = {sid: [] for sid in missing}
        for fid, sid, name, emb, path in self.catalog.subject_faces(self.pack, sorted(missing)):
            fresh[sid].append((fid, name, emb, path))
        with self._faces_lock:
            if len(self._faces) + len(fresh) > MAX_FACE_SUBJECTS:
                self._faces.clear()
            for sid, rows in fresh.items():
                tag = missing[sid]
                if tag is not None and self._seq_of.get(sid) == tag:
                    self._faces[sid] = (tag, rows)
        out.update(fresh)
        return out


def templates_from_faces(subject_ids: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(subject ids, unit templates) computed directly from face embeddings: the reference mode's
    own computation, independent of the catalog's stored sums."""
    order = np.argsort(subject_ids, kind="stable")
    sids, mat = subject_ids[order], embeddings[order]
    uniq, starts = np.unique(sids, return_index=True)
    sums = np.add.reduceat(mat.astype(np.float64), starts, axis=0) if len(uniq) else np.zeros((0, mat.shape[1]))
    return uniq, unit_rows(sums) if len(uniq) else np.zeros((0, mat.shape[1]), np.float32)


def unit_rows(mat: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (float64 arithmetic, float32 result); zero rows stay zero."""
    m = np.asarray(mat, dtype=np.float64)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    units: np.ndarray = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0).astype(np.float32)
    return units


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else np.zeros_like(v, dtype=np.float32)
