"""One face at a time: a subject's faces, one stored face, and the SQL steps of removing faces,
moving them to another subject, and merging two subjects.

Every query is limited to the bound collection (``Catalog.scoped``): a face id of another
collection is "no such face" here, and nothing of it is read or changed.

The writes are step 1 of the two-store write order (``facedb.store.face_edits`` runs the rest):

- remove: one transaction deletes the faces (and the images left without a face), journals
  their ids in ``pending_deletes`` exactly as a subject delete does, and recomputes the
  templates of the subjects concerned; the vectors leave the index next.
- move / merge: one transaction gives the faces (with their images) to the target subject and
  marks them *not indexed*, recomputing both subjects' templates; the index metadata that names
  the subject is rewritten next, and the faces are marked indexed again. A process killed in
  between leaves faces "stored but not indexed": the journal replay re-adds them with
  ``may_exist``, which rewrites the metadata of vectors Chroma already holds. So a crash never
  leaves the index naming the old subject for a face SQL has moved.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from ..errors import NotFoundError, UsageError
from .models import AuditEntry, Face, Failure, Image, PendingDelete, Subject, SubjectTemplate
from .subjects import SubjectQueries

CHUNK = 500


@dataclass(frozen=True)
class StoredFace:
    """One enrolled face with what ``faces list`` shows and ``search --face-id`` needs."""

    face_id: int
    subject_id: int
    subject: str
    image_id: int
    image: str
    bbox: list[float]
    score: float
    quality: dict[str, float] | None
    model: str
    indexed: bool
    embedding: np.ndarray


@dataclass
class Moved:
    """What step 1 of a move or a merge did: the target, and the faces it took, per pack."""

    target_id: int
    target: str
    #: face ids per pack that changed subject and were indexed (their metadata must be rewritten)
    relabel: dict[str, list[int]]
    #: every face id that changed subject
    moved: list[int]
    #: faces asked for that were the target's already
    already: list[int]
    #: how many faces left each subject (by name)
    sources: dict[str, int]
    images: int = 0
    source_id: int | None = None
    metadata: dict[str, Any] | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (np.asarray(v, np.float64) / n).astype(np.float32) if n > 0 else np.zeros_like(v, np.float32)


def _clean_ids(face_ids: Sequence[int]) -> list[int]:
    ids = list(dict.fromkeys(int(f) for f in face_ids))
    if not ids:
        raise UsageError("give at least one face id (see `facedb faces list SUBJECT`)")
    return ids


class FaceEditQueries(SubjectQueries):
    # -- reading -----------------------------------------------------------------------
    def _stored(self, s: Session, face_ids: Sequence[int] | None = None, subject_id: int | None = None
                ) -> list[StoredFace]:
        q = (select(Face, Image.path, Subject.name).join(Image, Image.id == Face.image_id)
             .join(Subject, Subject.id == Face.subject_id).where(Face.collection_id == self.cid).order_by(Face.id))
        if subject_id is not None:
            q = q.where(Face.subject_id == subject_id)
        out: list[StoredFace] = []
        chunks = [None] if face_ids is None else [list(face_ids)[i:i + CHUNK] for i in range(0, len(face_ids), CHUNK)]
        for chunk in chunks:
            qq = q if chunk is None else q.where(Face.id.in_(chunk))
            for f, path, name in s.execute(qq):
                out.append(StoredFace(int(f.id), int(f.subject_id), name, int(f.image_id), path,
                                      [round(v, 1) for v in f.bbox], round(float(f.score), 4), f.quality, f.model,
                                      bool(f.indexed), np.frombuffer(f.embedding, dtype=np.float32)))
        return out

    def stored_face(self, face_id: int) -> StoredFace:
        """One face of the bound collection; ``NotFoundError`` when it has none with this id."""
        with self.session() as s:
            found = self._stored(s, [int(face_id)])
        if not found:
            raise NotFoundError(self._no_faces([int(face_id)]))
        return found[0]

    def subject_faces_with_templates(self, name: str) -> tuple[list[StoredFace], dict[str, np.ndarray]]:
        """A subject's faces (every pack, by id) and its unit templates per pack (read in one
        transaction, so the distances agree with the faces listed)."""
        with self.session() as s:
            sub = self.subject(s, name)
            faces = self._stored(s, subject_id=int(sub.id))
            templates = {m: _unit(np.frombuffer(v, dtype=np.float32)) for m, v, n in s.execute(
                select(SubjectTemplate.model, SubjectTemplate.vector, SubjectTemplate.n_faces)
                .where(SubjectTemplate.subject_id == sub.id)) if n}
        return faces, templates

    def _no_faces(self, ids: Sequence[int]) -> str:
        shown = ", ".join(str(i) for i in sorted(ids)[:10]) + (", ..." if len(ids) > 10 else "")
        what = "no face with id" if len(ids) == 1 else "no faces with ids"
        return f"{what} {shown} in collection {self.collection!r} (see `facedb faces list SUBJECT`)"

    def _require(self, s: Session, ids: list[int]) -> list[tuple[int, str, int, int, bool]]:
        """(face id, pack, subject id, image id, indexed) of these faces, all of this collection,
        or ``NotFoundError`` naming the missing ones (nothing is changed then)."""
        rows: list[tuple[int, str, int, int, bool]] = []
        for i in range(0, len(ids), CHUNK):
            rows += [(int(a), m, int(b), int(c), bool(d)) for a, m, b, c, d in s.execute(
                select(Face.id, Face.model, Face.subject_id, Face.image_id, Face.indexed)
                .where(Face.collection_id == self.cid, Face.id.in_(ids[i:i + CHUNK])))]
        missing = set(ids) - {r[0] for r in rows}
        if missing:
            raise NotFoundError(self._no_faces(sorted(missing)))
        return rows

    # -- remove ------------------------------------------------------------------------
    def remove_faces(self, face_ids: Sequence[int]) -> tuple[dict[str, list[int]], int, dict[str, int]]:
        """Step 1 of removing faces: delete them and the images they leave empty, journal their
        ids, recompute the templates of their subjects. A subject left without faces stays (empty:
        ``facedb delete`` removes a subject). Returns (face ids per pack, images removed, faces
        removed per subject name)."""
        ids = _clean_ids(face_ids)
        with self.session() as s:
            rows = self._require(s, ids)
            names = {int(i): n for i, n in s.execute(select(Subject.id, Subject.name)
                                                     .where(Subject.id.in_({r[2] for r in rows})))}
            s.add_all([PendingDelete(face_id=fid, model=model, collection_id=self.cid) for fid, model, *_ in rows])
            for i in range(0, len(ids), CHUNK):
                s.execute(delete(Face).where(Face.collection_id == self.cid, Face.id.in_(ids[i:i + CHUNK])))
            images = sorted({r[3] for r in rows})
            kept: set[int] = set()
            for i in range(0, len(images), CHUNK):
                kept.update(s.scalars(select(Face.image_id).where(Face.image_id.in_(images[i:i + CHUNK]))))
            empty = [i for i in images if i not in kept]
            for i in range(0, len(empty), CHUNK):
                s.execute(delete(Image).where(Image.id.in_(empty[i:i + CHUNK])))
            self.refresh_templates(s, {(sid, model) for _, model, sid, _, _ in rows})
        by_model: dict[str, list[int]] = {}
        per_subject: dict[str, int] = {}
        for fid, model, sid, _, _ in rows:
            by_model.setdefault(model, []).append(fid)
            per_subject[names[sid]] = per_subject.get(names[sid], 0) + 1
        return by_model, len(empty), per_subject

    # -- move and merge ------------------------------------------------------------------
    def move_faces(self, face_ids: Sequence[int], to: str) -> Moved:
        """Step 1 of moving faces to subject ``to`` (which must exist): the faces and their images
        (every face of an image goes with it: an image belongs to one subject) change subject and
        are marked not indexed until the index metadata names the new subject."""
        ids = _clean_ids(face_ids)
        with self.session() as s:
            target = self.subject(s, to)
            rows = self._require(s, ids)
            already = sorted(fid for fid, _, sid, _, _ in rows if sid == target.id)
            images = sorted({iid for _, _, sid, iid, _ in rows if sid != target.id})
            moved = self._give(s, images, int(target.id))
            return Moved(int(target.id), target.name, moved[0], moved[1], already, moved[2], len(images))

    def merge_subjects(self, source: str, target: str) -> Moved:
        """Step 1 of merging: every image and face of ``source`` goes to ``target``, its failure
        records and audit entries too; ``source`` is deleted. Metadata: ``target``'s values win,
        keys only ``source`` has are added."""
        with self.session() as s:
            src, dst = self.subject(s, source), self.subject(s, target)
            if src.id == dst.id:
                raise UsageError(f"cannot merge subject {source!r} into itself")
            images = sorted(s.scalars(select(Image.id).where(Image.subject_id == src.id)))
            relabel, moved, sources = self._give(s, images, int(dst.id))
            # Faces whose image row was not the subject's (never expected): moved as well.
            stray = [int(f) for f in s.scalars(select(Face.id).where(Face.subject_id == src.id))]
            if stray:
                r2, m2, _ = self._give_faces(s, stray, int(dst.id))
                for model, fids in r2.items():
                    relabel.setdefault(model, []).extend(fids)
                moved += m2
            s.execute(update(Failure).where(Failure.collection_id == self.cid, Failure.subject_name == src.name)
                      .values(subject_name=dst.name))
            # The source's history is the target's now: a later delete of the target scrubs it.
            same_name = (AuditEntry.subject == src.name) & (
                (AuditEntry.collection == self.collection) | AuditEntry.collection.is_(None))
            s.execute(update(AuditEntry).where(or_(AuditEntry.subject_id == src.id, same_name))
                      .values(subject=dst.name, subject_id=dst.id))
            if src.info:
                dst.info = {**src.info, **(dst.info or {})}
            self.drop_templates(s, int(src.id))
            sid = int(src.id)
            s.flush()
            s.delete(src)
            return Moved(int(dst.id), dst.name, relabel, moved, [], sources or {src.name: 0}, len(images),
                         source_id=sid, metadata=dst.info)

    def _give(self, s: Session, image_ids: list[int], target_id: int
              ) -> tuple[dict[str, list[int]], list[int], dict[str, int]]:
        """Give these images and every face of them to subject ``target_id``."""
        fids: list[int] = []
        for i in range(0, len(image_ids), CHUNK):
            chunk = image_ids[i:i + CHUNK]
            fids += [int(f) for f in s.scalars(select(Face.id).where(Face.image_id.in_(chunk)))]
            s.execute(update(Image).where(Image.id.in_(chunk)).values(subject_id=target_id))
        return self._give_faces(s, fids, target_id)

    def _give_faces(self, s: Session, face_ids: list[int], target_id: int
                    ) -> tuple[dict[str, list[int]], list[int], dict[str, int]]:
        rows: list[tuple[int, str, int, bool, str]] = []
        for i in range(0, len(face_ids), CHUNK):
            rows += [(int(a), m, int(b), bool(c), n) for a, m, b, c, n in s.execute(
                select(Face.id, Face.model, Face.subject_id, Face.indexed, Subject.name)
                .join(Subject, Subject.id == Face.subject_id).where(Face.id.in_(face_ids[i:i + CHUNK])))]
        rows = [r for r in rows if r[2] != target_id]
        ids = [r[0] for r in rows]
        for i in range(0, len(ids), CHUNK):
            s.execute(update(Face).where(Face.id.in_(ids[i:i + CHUNK])).values(subject_id=target_id, indexed=False))
        pairs = {(sid, model) for _, model, sid, _, _ in rows} | {(target_id, model) for _, model, *_ in rows}
        self.refresh_templates(s, pairs)
        relabel: dict[str, list[int]] = {}
        sources: dict[str, int] = {}
        for fid, model, _, indexed, name in rows:
            if indexed:
                relabel.setdefault(model, []).append(fid)
            sources[name] = sources.get(name, 0) + 1
        return relabel, ids, sources
