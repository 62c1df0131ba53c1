"""Single faces: list a subject's faces with their distance to its template, remove faces, move
faces to another subject, merge two subjects, and search with an enrolled face as the probe
(what Rekognition's SearchFaces and Azure's FindSimilar do).

The writes follow the two-store write order of ``facedb.store.face_edits`` (the same journal as
a subject delete). Decisions a user can rely on:

- a subject whose last face is removed or moved **stays**, empty (``facedb delete`` removes a
  subject: nothing is deleted that was not asked for);
- a face moves with its photo (a photo belongs to one subject), and with the photo's faces of
  other packs;
- ``merge SOURCE TARGET``: SOURCE's photos, faces, failure records and audit entries become
  TARGET's, and SOURCE is deleted; metadata: TARGET's values win, keys only SOURCE had are added;
- ``search --face-id``: the face itself is never an answer (``excluded`` says so), and its own
  subject is scored without it, so the answer is what the *other* enrolled faces say.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..catalog.face_edits import StoredFace
from ..contract.faces import (
    FaceInfo,
    FaceSearchReport,
    FacesRemoveReport,
    FacesReport,
    MergeReport,
    MoveReport,
)
from ..contract.models import Match
from ..errors import ModelError
from ..index.chroma_index import Neighbour
from ..index.templates import unit_rows
from ..store import face_edits
from ..store.stores import Store
from .collections import CollectionPack
from .search import By, Scoring, Searcher, SubjectFaces, checked_options, ranked_hits, subject_matches


class FaceEditor:
    def __init__(self, store: Store, pack: CollectionPack, searcher: Searcher) -> None:
        self.store = store
        self.pack = pack
        self.searcher = searcher

    # -- reading ---------------------------------------------------------------------------
    def list_faces(self, subject: str) -> FacesReport:
        """Every face of ``subject`` with its distance to the subject's template (SQL only)."""
        faces, templates = self.store.catalog.subject_faces_with_templates(subject)
        pack = self.pack.name
        template = templates.get(pack)
        out = []
        for f in faces:
            d = None
            if template is not None and f.model == pack and f.indexed:
                d = round(max(0.0, 1.0 - float(f.embedding @ template)), 6)
            out.append(FaceInfo(face_id=f.face_id, image=f.image, image_id=f.image_id, bbox=f.bbox, score=f.score,
                                quality=_rounded(f.quality), pack=f.model, indexed=f.indexed, distance=d))
        n = sum(1 for f in faces if f.model == pack and f.indexed)
        name = faces[0].subject if faces else subject
        return FacesReport(subject=name, pack=pack, threshold=self.pack.threshold, template_faces=n, faces=out)

    # -- writes ------------------------------------------------------------------------------
    def remove(self, face_ids: Sequence[int]) -> FacesRemoveReport:
        with self.store.writing() as index:
            ids, n_images, per_subject = face_edits.remove_faces(self.store.journal, index, face_ids)
        return FacesRemoveReport(face_ids=ids, faces=len(ids), images=n_images, subjects=per_subject)

    def move(self, face_ids: Sequence[int], to: str) -> MoveReport:
        with self.store.writing() as index:
            moved = self.store.catalog.move_faces(face_ids, to)
            face_edits.relabel(self.store.journal, index, moved)
        return MoveReport(to=moved.target, moved=sorted(moved.moved), already=moved.already, subjects=moved.sources,
                          images=moved.images)

    def merge(self, source: str, target: str) -> MergeReport:
        with self.store.writing() as index:
            moved = self.store.catalog.merge_subjects(source, target)
            face_edits.relabel(self.store.journal, index, moved)
        return MergeReport(source=source, target=moved.target, images=moved.images, faces=len(moved.moved),
                           metadata=moved.metadata)

    # -- search by an enrolled face ------------------------------------------------------------
    def search_face(self, face_id: int, *, k: int, threshold: float | None, by: By,
                    scoring: Scoring) -> FaceSearchReport:
        scoring = checked_options(k, by, scoring)
        face = self.store.catalog.stored_face(face_id)
        pack = self.pack.name
        if face.model != pack:
            raise ModelError(f"face {face_id} was enrolled with pack {face.model!r}, not this collection's pack "
                             f"{pack!r}: its embedding cannot be compared (run `facedb reindex`)")
        thr = self.pack.threshold if threshold is None else float(threshold)
        if scoring == "template":
            matches = self._by_template(face, k, thr)
        else:
            matches = self._by_index(face, k, by, thr)
        identity = matches[0].subject if matches and matches[0].match else None
        return FaceSearchReport(face_id=face.face_id, subject=face.subject, image=face.image, bbox=face.bbox,
                                pack=pack, threshold=thr, by=by, k=k, scoring=scoring, excluded=[face.face_id],
                                identity=identity, matches=matches)

    def _by_index(self, face: StoredFace, k: int, by: By, thr: float) -> list[Match]:
        """Nearest faces (or subjects by their closest face) from the index, the probe left out."""
        probe = face.embedding[None, :]
        with self.store.reading() as index:
            info = self.pack.contract()
            total = self.searcher._require_consistent(index, info)

            def query(vectors: np.ndarray, n: int) -> list[list[Neighbour]]:
                rows = index.query(info, vectors, min(n + 1, total))
                return [[nb for nb in row if nb.face_id != face.face_id][:n] for row in rows]

            others = total - 1 if face.indexed else total
            ranked = ranked_hits(query, probe, k, by, others, self.store.catalog)[0]
        return [Match(subject=h.subject, distance=round(d, 6), match=d <= thr, face_id=h.face_id, image=h.image_path,
                      face_distance=round(d, 6)) for h, d in ranked]

    def _by_template(self, face: StoredFace, k: int, thr: float) -> list[Match]:
        """Subjects by their template, exactly; the probe's own subject by its template without the
        probe (recomputed from its other faces), so the face does not vote for itself."""
        catalog = self.store.catalog
        cache = self.searcher._templates(self.pack.name)
        cache.refresh()
        v = face.embedding
        ranked = [(sid, d) for sid, d in cache.query(v[None, :], k + 1)[0] if sid != face.subject_id][:k]
        wanted = sorted({sid for sid, _ in ranked} | {face.subject_id})
        faces: SubjectFaces = {}
        for fid, sid, name, emb, path in catalog.subject_faces(self.pack.name, wanted):
            if fid != face.face_id:
                faces.setdefault(sid, []).append((fid, name, emb, path))
        own = faces.get(face.subject_id)
        if own:
            template = unit_rows(np.stack([emb for _, _, emb, _ in own]).sum(axis=0, dtype=np.float64)[None, :])[0]
            ranked.append((face.subject_id, max(0.0, 1.0 - float(template @ v))))
            ranked.sort(key=lambda x: (x[1], x[0]))
            ranked = ranked[:k]
        return subject_matches(v, ranked, faces, thr)


def _rounded(quality: dict[str, float] | None) -> dict[str, float] | None:
    return None if quality is None else {k: round(float(v), 4) for k, v in quality.items()}
