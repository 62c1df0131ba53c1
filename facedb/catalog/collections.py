"""Collections: the galleries of one database (list, look up, create, and the SQL half of a delete)."""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from ..errors import AlreadyExistsError, NotFoundError
from .core import DEFAULT_COLLECTION, CatalogCore, index_space
from .models import AuditEntry, Collection, Face, Failure, Image, PendingDelete, Setting, Subject, SubjectTemplate, iso


def collection_dict(c: Collection, subjects: int = 0, faces: int = 0) -> dict[str, Any]:
    return {"name": c.name, "pack": c.pack, "threshold": c.threshold, "created_at": iso(c.created_at),
            "subjects": int(subjects), "faces": int(faces)}


class CollectionQueries(CatalogCore):
    def collection_row(self, name: str) -> dict[str, Any] | None:
        """``{"id", "name", "pack", "threshold"}`` of a collection, else None."""
        with self.session() as s:
            row = s.scalar(select(Collection).where(Collection.name == name))
            return None if row is None else {"id": row.id, "name": row.name, "pack": row.pack,
                                             "threshold": row.threshold}

    def ensure_default_collection(self) -> None:
        """The ``default`` collection exists in every database (0005 creates it; this is for a
        database whose rows were copied in without it)."""
        if self.collection_row(DEFAULT_COLLECTION) is None:
            try:
                with self.session() as s:
                    s.add(Collection(name=DEFAULT_COLLECTION))
            except IntegrityError:  # created meanwhile by another process
                pass

    def collection_rows(self) -> list[dict[str, Any]]:
        """Every collection with its subject and face counts, by name."""
        with self.session() as s:
            subs = dict(s.execute(select(Subject.collection_id, func.count(Subject.id))
                                  .group_by(Subject.collection_id)).all())
            faces = dict(s.execute(select(Face.collection_id, func.count(Face.id)).group_by(Face.collection_id)).all())
            rows = [collection_dict(c, subs.get(c.id, 0), faces.get(c.id, 0)) for c in s.scalars(select(Collection))]
        return sorted(rows, key=lambda r: r["name"])

    def collection_spaces(self) -> list[tuple[int, str, str]]:
        """(id, name, index space) of every collection."""
        with self.session() as s:
            return [(int(i), n, index_space(int(i), n)) for i, n in s.execute(select(Collection.id, Collection.name))]

    def create_collection(self, name: str, pack: str | None, threshold: float | None) -> dict[str, Any]:
        try:
            with self.session() as s:
                if s.scalar(select(Collection.id).where(Collection.name == name)) is not None:
                    raise AlreadyExistsError(f"a collection named {name!r} already exists (see `facedb collections list`)")
                row = Collection(name=name, pack=pack, threshold=threshold)
                s.add(row)
                s.flush()
                return collection_dict(row)
        except IntegrityError:  # created meanwhile by another process
            raise AlreadyExistsError(f"a collection named {name!r} already exists") from None

    def delete_collection_rows(self, name: str) -> tuple[int, dict[str, list[int]], int]:
        """Remove a collection and everything in it from SQL, in one transaction, journaling its
        face ids (per pack) for the index; the audit trail keeps no name of its subjects.

        Returns (collection id, face ids per pack, subjects removed)."""
        from .subjects import deleted_label

        with self.session() as s:
            row = s.scalar(select(Collection).where(Collection.name == name))
            if row is None:
                raise NotFoundError(f"no collection named {name!r} (see `facedb collections list`)")
            cid = int(row.id)
            subjects = s.execute(select(Subject.id, Subject.name).where(Subject.collection_id == cid)).all()
            for sid, sname in subjects:
                s.execute(update(AuditEntry).where(or_(AuditEntry.subject_id == sid,
                                                       (AuditEntry.subject == sname) & (AuditEntry.collection == name)))
                          .values(subject=deleted_label(sid), detail=None))
            rows = s.execute(select(Face.id, Face.model).where(Face.collection_id == cid)).all()
            by_model: dict[str, list[int]] = {}
            for fid, model in rows:
                by_model.setdefault(model, []).append(int(fid))
            s.add_all([PendingDelete(face_id=fid, model=model, collection_id=cid) for fid, model in rows])
            s.execute(delete(SubjectTemplate).where(SubjectTemplate.collection_id == cid))
            s.execute(delete(Face).where(Face.collection_id == cid))
            s.execute(delete(Image).where(Image.collection_id == cid))
            s.execute(delete(Failure).where(Failure.collection_id == cid))
            s.execute(delete(Subject).where(Subject.collection_id == cid))
            s.execute(delete(Setting).where(Setting.key.like(f"%@{index_space(cid, name)}")))
            s.delete(row)
        return cid, by_model, len(subjects)
