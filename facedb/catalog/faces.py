"""Image and face queries: storing an enrollment batch, the index flags, search hits, the
embeddings the index is rebuilt from, the delete journal, and reindexing."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from .. import trace
from .models import Face, Failure, Image, PendingDelete, Subject
from .subjects import SubjectQueries

#: Rows per ``IN (...)`` list: well under SQLite's and PostgreSQL's parameter limits.
CHUNK = 500


@dataclass(frozen=True)
class FaceHit:
    """A face row joined with what a search result needs to show."""

    face_id: int
    subject_id: int
    subject: str
    image_path: str
    image_id: int
    indexed: bool
    model: str


@dataclass
class StoredItem:
    """One analysed input of an enrollment batch, as ``store_batch`` needs it.

    Exactly one of ``face`` (the face to enroll) and ``failure`` ((reason, message)) is set;
    an unreadable file has a failure and no digest. ``path`` is what the image row records (an
    absolute file path, or an upload's label); ``label`` is the name failures are recorded by."""

    subject: str
    label: str
    path: str
    digest: str
    source: str = "file"
    size_bytes: int = 0
    width: int = 0
    height: int = 0
    face: Any = None
    failure: tuple[str, str] | None = None
    #: filled by ``store_batch``: "stored", "failed", or "duplicate" (with ``owner``)
    outcome: str = ""
    owner: str | None = None
    face_id: int | None = None
    subject_id: int | None = None


@dataclass(frozen=True)
class NewFace:
    """A face stored by ``store_batch`` and not yet indexed: what the index needs."""

    face_id: int
    embedding: np.ndarray
    subject_id: int
    subject: str


def face_row(face: Any, image_id: int, subject_id: int, model: str, collection_id: int) -> Face:
    x1, y1, x2, y2 = face.bbox
    return Face(image_id=image_id, subject_id=subject_id, collection_id=collection_id, model=model, x1=x1, y1=y1, x2=x2, y2=y2,
                score=face.score, landmarks=[list(p) for p in face.landmarks], dim=int(face.embedding.size),
                embedding=np.asarray(face.embedding, dtype=np.float32).tobytes(), indexed=False,
                quality=getattr(face, "quality", None))


class FaceQueries(SubjectQueries):
    """Builds on the subject queries (an enrollment creates subjects and clears failures)."""

    # -- enrollment --------------------------------------------------------------
    @trace.traced("sql.known_sha256")
    def known_sha256(self, digests: Sequence[str], s: Session | None = None) -> dict[str, str]:
        """Map each already-stored digest to the name of the subject that owns it."""
        if s is None:
            with self.session() as own:
                return self.known_sha256(digests, own)
        out: dict[str, str] = {}
        wanted = [d for d in dict.fromkeys(digests) if d]
        for i in range(0, len(wanted), CHUNK):
            q = select(Image.sha256, Subject.name).join(Subject).where(Image.collection_id == self.cid,
                                                                      Image.sha256.in_(wanted[i:i + CHUNK]))
            out.update({d: n for d, n in s.execute(q)})
        return out

    @trace.traced("sql.store_batch")
    def store_batch(self, items: Sequence[StoredItem], model: str,
                    metadata: dict[str, dict[str, Any]] | None = None) -> list[NewFace]:
        """Step 1 of the enrollment write order, in one transaction: failures are recorded, new
        images and faces stored *not indexed*; an image whose bytes were stored meanwhile (by
        another process) is a duplicate. Sets each item's ``outcome``; returns the new faces."""
        return self.retrying(lambda: self._store_batch(items, model, metadata))

    def _store_batch(self, items: Sequence[StoredItem], model: str,
                     metadata: dict[str, dict[str, Any]] | None) -> list[NewFace]:
        new: list[NewFace] = []
        with self.session() as s:
            known = self.known_sha256([it.digest for it in items], s)
            accepted: list[StoredItem] = []
            failed: list[StoredItem] = []
            for it in items:
                if it.digest and it.digest in known:
                    it.outcome, it.owner = "duplicate", known[it.digest]
                elif it.failure is not None or it.face is None:
                    it.outcome = "failed"
                    failed.append(it)
                else:
                    it.outcome = "stored"
                    known[it.digest] = it.subject
                    accepted.append(it)
            # A file stored now (as a face or as a failure) replaces its earlier failure record.
            self.forget_failures(s, [(it.label, it.subject) for it in failed + accepted])
            s.add_all([Failure(collection_id=self.cid, path=it.label, sha256=it.digest or None, subject_name=it.subject, model=model,
                               reason=(it.failure or ("no_face", ""))[0], detail=(it.failure or ("", ""))[1])
                       for it in failed])
            subjects = self.subjects_by_name(s, [it.subject for it in accepted], metadata)
            images = [Image(collection_id=self.cid, subject_id=subjects[it.subject].id, path=it.path, sha256=it.digest,
                            size_bytes=it.size_bytes, width=it.width, height=it.height, status="enrolled",
                            source=it.source) for it in accepted]
            s.add_all(images)
            s.flush()
            rows = [face_row(it.face, img.id, img.subject_id, model, self.cid) for img, it in zip(images, accepted)]
            s.add_all(rows)
            s.flush()
            for row, it in zip(rows, accepted):
                it.face_id, it.subject_id = row.id, row.subject_id
                new.append(NewFace(row.id, np.asarray(it.face.embedding, dtype=np.float32), row.subject_id,
                                   it.subject))
        return new

    @trace.traced("sql.mark_indexed")
    def mark_indexed(self, face_ids: Sequence[int]) -> set[int]:
        """Step 3 of the write order, with the templates of the subjects concerned in the same
        transaction. Returns the ids that are gone from the catalog (deleted by another process
        since they were stored): their vectors must leave the index too."""
        ids = list(face_ids)
        found: set[int] = set()
        pairs: set[tuple[int, str]] = set()
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                chunk = ids[i:i + CHUNK]
                s.execute(update(Face).where(Face.id.in_(chunk)).values(indexed=True))
                for fid, sid, model in s.execute(select(Face.id, Face.subject_id, Face.model).where(Face.id.in_(chunk))):
                    found.add(fid)
                    pairs.add((sid, model))
            self.refresh_templates(s, pairs)
        return set(ids) - found

    def unindexed_faces(self, model: str) -> list[NewFace]:
        """Faces of a pack stored but not yet in the index (a write that did not finish)."""
        return self.faces_for_index(model, indexed=False)

    def faces_for_index(self, model: str, face_ids: Sequence[int] | None = None,
                        indexed: bool | None = None) -> list[NewFace]:
        """A pack's faces with what the index stores (all, some ids, or by ``indexed`` flag)."""
        with self.session() as s:
            q = (select(Face.id, Face.embedding, Face.subject_id, Subject.name).join(Subject)
                 .where(Face.collection_id == self.cid, Face.model == model).order_by(Face.id))
            if indexed is not None:
                q = q.where(Face.indexed.is_(indexed))
            rows = s.execute(q).all()
        wanted = None if face_ids is None else set(face_ids)
        return [NewFace(fid, np.frombuffer(emb, dtype=np.float32), sid, name)
                for fid, emb, sid, name in rows if wanted is None or fid in wanted]

    # -- search --------------------------------------------------------------------
    @trace.traced("sql.hits")
    def hits(self, face_ids: Sequence[int]) -> dict[int, FaceHit]:
        ids = list(face_ids)
        out: dict[int, FaceHit] = {}
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                q = (select(Face.id, Face.subject_id, Subject.name, Image.path, Image.id, Face.indexed, Face.model)
                     .join(Subject, Subject.id == Face.subject_id).join(Image, Image.id == Face.image_id)
                     .where(Face.collection_id == self.cid, Face.id.in_(ids[i:i + CHUNK])))
                for fid, sid, name, path, iid, indexed, model in s.execute(q):
                    out[fid] = FaceHit(fid, sid, name, path, iid, bool(indexed), model)
        return out

    def embeddings(self, model: str, subject_id: int | None = None, indexed_only: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(face ids, float32 matrix) of a pack's faces, optionally of one subject."""
        with self.session() as s:
            q = select(Face.id, Face.embedding).where(Face.collection_id == self.cid, Face.model == model).order_by(Face.id)
            if indexed_only:
                q = q.where(Face.indexed.is_(True))
            if subject_id is not None:
                q = q.where(Face.subject_id == subject_id)
            rows = s.execute(q).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        mat = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        return ids, mat

    def face_embeddings_by_subject(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """(subject id per face, float32 matrix) of a pack's indexed faces."""
        with self.session() as s:
            rows = s.execute(select(Face.subject_id, Face.embedding)
                             .where(Face.collection_id == self.cid, Face.model == model, Face.indexed.is_(True))
                             .order_by(Face.id)).all()
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))

    def subject_id(self, name: str) -> int:
        with self.session() as s:
            return int(self.subject(s, name).id)

    def face_ids(self, model: str) -> set[int]:
        """Ids of a pack's indexed faces (what the index must hold)."""
        with self.session() as s:
            return set(s.scalars(select(Face.id).where(Face.collection_id == self.cid, Face.model == model,
                                                       Face.indexed.is_(True))))

    @trace.traced("sql.count_indexed")
    def count_indexed(self, model: str) -> int:
        with self.session() as s:
            return int(s.scalar(select(func.count(Face.id)).where(Face.collection_id == self.cid, Face.model == model,
                                                                  Face.indexed.is_(True))) or 0)

    def models_in_use(self) -> dict[str, int]:
        """Faces per pack (of the bound collection)."""
        with self.session() as s:
            return {m: int(n) for m, n in s.execute(select(Face.model, func.count(Face.id))
                                                    .where(Face.collection_id == self.cid).group_by(Face.model))}

    def face_source(self, face_id: int) -> dict[str, Any] | None:
        """Where one face came from (for a thumbnail): path, source kind, sha256, bbox, subject."""
        with self.session() as s:
            row = s.execute(select(Face, Image.path, Image.source, Image.sha256, Subject.name)
                            .join(Image, Image.id == Face.image_id).join(Subject, Subject.id == Face.subject_id)
                            .where(Face.collection_id == self.cid, Face.id == face_id)).first()
        if row is None:
            return None
        face, path, source, sha, subject = row
        return {"face_id": face.id, "path": path, "source": source, "sha256": sha, "bbox": face.bbox,
                "subject": subject}

    # -- the delete journal ----------------------------------------------------------
    def pending_deletes(self) -> dict[str, list[int]]:
        """The bound collection's journaled face ids, per pack."""
        with self.session() as s:
            out: dict[str, list[int]] = {}
            for fid, model in s.execute(select(PendingDelete.face_id, PendingDelete.model)
                                        .where(PendingDelete.collection_id == self.cid)):
                out.setdefault(model, []).append(fid)
            return out

    def all_pending_deletes(self) -> dict[tuple[int, str], list[int]]:
        """Every collection's journaled face ids (a deleted collection's too), per (collection id, pack)."""
        with self.session() as s:
            out: dict[tuple[int, str], list[int]] = {}
            for fid, model, cid in s.execute(select(PendingDelete.face_id, PendingDelete.model,
                                                    PendingDelete.collection_id)):
                out.setdefault((int(cid), model), []).append(fid)
            return out

    def clear_pending_deletes(self, face_ids: Sequence[int]) -> None:
        ids = list(face_ids)
        with self.session() as s:
            for i in range(0, len(ids), CHUNK):
                s.execute(delete(PendingDelete).where(PendingDelete.face_id.in_(ids[i:i + CHUNK])))

    # -- reindex -----------------------------------------------------------------------
    def images_for_reindex(self) -> list[tuple[int, str, str, int, str]]:
        """(image id, path, sha256, subject id, source) of every stored image."""
        with self.session() as s:
            return [tuple(r) for r in s.execute(  # type: ignore[misc]
                select(Image.id, Image.path, Image.sha256, Image.subject_id, Image.source)
                .where(Image.collection_id == self.cid).order_by(Image.id))]

    def replace_face(self, image_id: int, subject_id: int, model: str, face: Any | None) -> None:
        """Drop the image's faces of ``model``; store ``face`` (not indexed), or mark the image's
        source missing when ``face`` is None."""
        with self.session() as s:
            s.execute(delete(Face).where(Face.image_id == image_id, Face.model == model))
            if face is None:
                s.execute(update(Image).where(Image.id == image_id).values(status="source_missing"))
            else:
                s.add(face_row(face, image_id, subject_id, model, self.cid))
            self.refresh_templates(s, [(subject_id, model)])
