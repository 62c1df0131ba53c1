"""Subject queries: lookup, creation, listing, detail, rename, delete, and failure records."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import AlreadyExistsError, NotFoundError
from .models import AuditEntry, Face, Failure, Image, PendingDelete, Subject, iso
from .templates import TemplateQueries

DELETED_PREFIX = "deleted subject #"


def deleted_label(subject_id: int) -> str:
    """What the audit trail calls a subject once it is deleted."""
    return f"{DELETED_PREFIX}{subject_id}"


def failure_dict(f: Failure) -> dict[str, Any]:
    return {"path": f.path, "subject": f.subject_name, "reason": f.reason, "message": f.detail,
            "pack": f.model, "created_at": iso(f.created_at)}


class SubjectQueries(TemplateQueries):
    def subject(self, s: Session, name: str) -> Subject:
        row = s.scalar(select(Subject).where(Subject.collection_id == self.cid, Subject.name == name))
        if row is None:
            raise NotFoundError(f"no subject named {name!r} (see `facedb subjects`)")
        return row

    def subjects_by_name(self, s: Session, names: Sequence[str],
                         info: dict[str, dict[str, Any]] | None = None) -> dict[str, Subject]:
        """The named subjects, created when new (one query for the lot); ``info`` merges metadata."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, Subject] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            found.update({row.name: row for row in s.scalars(select(Subject).where(
                Subject.collection_id == self.cid, Subject.name.in_(chunk)))})
        new = [Subject(collection_id=self.cid, name=n, info=(info or {}).get(n)) for n in wanted if n not in found]
        if new:
            s.add_all(new)
            s.flush()
            found.update({row.name: row for row in new})
        for n, extra in (info or {}).items():
            if extra and n in found and found[n] not in new:
                found[n].info = {**(found[n].info or {}), **extra}
        return found

    def subject_names(self, subject_ids: Sequence[int]) -> dict[int, str]:
        """The names of these subjects of the collection (ids deleted meanwhile are left out)."""
        if not subject_ids:
            return {}
        with self.session() as s:
            rows = s.execute(select(Subject.id, Subject.name).where(Subject.collection_id == self.cid,
                                                                    Subject.id.in_(list(subject_ids)))).all()
        return {int(i): str(n) for i, n in rows}

    def subject_rows(self) -> list[dict[str, Any]]:
        """Every subject with its image and face counts, by name."""
        with self.session() as s:
            faces = select(Face.subject_id, func.count(Face.id).label("n")).group_by(Face.subject_id).subquery()
            images = select(Image.subject_id, func.count(Image.id).label("n")).group_by(Image.subject_id).subquery()
            q = (
                select(Subject, func.coalesce(images.c.n, 0), func.coalesce(faces.c.n, 0))
                .outerjoin(images, images.c.subject_id == Subject.id)
                .outerjoin(faces, faces.c.subject_id == Subject.id)
                .where(Subject.collection_id == self.cid)
                .order_by(Subject.name)
            )
            rows = [{"name": sub.name, "images": int(ni), "faces": int(nf), "metadata": sub.info,
                     "created_at": iso(sub.created_at)} for sub, ni, nf in s.execute(q)]
        # Code-point order on every database (ORDER BY follows the database's collation, which
        # is linguistic on a typical PostgreSQL server and byte order on SQLite).
        return sorted(rows, key=lambda r: r["name"])

    def subject_detail(self, name: str) -> dict[str, Any]:
        """One subject: metadata, images with their faces, and its failure records."""
        with self.session() as s:
            sub = self.subject(s, name)
            images = []
            for img in s.scalars(select(Image).where(Image.subject_id == sub.id).order_by(Image.id)):
                faces = s.scalars(select(Face).where(Face.image_id == img.id).order_by(Face.id)).all()
                images.append({
                    "image_id": img.id, "path": img.path, "sha256": img.sha256, "size_bytes": img.size_bytes,
                    "width": img.width, "height": img.height, "status": img.status,
                    "faces": [{"face_id": f.id, "pack": f.model, "bbox": [round(v, 1) for v in f.bbox],
                               "score": round(f.score, 4), "indexed": f.indexed} for f in faces],
                })
            fails = s.scalars(select(Failure).where(Failure.collection_id == self.cid, Failure.subject_name == name)
                              .order_by(Failure.id)).all()
            return {"name": sub.name, "metadata": sub.info, "created_at": iso(sub.created_at), "images": images,
                    "failures": [failure_dict(f) for f in fails]}

    def rename_subject(self, old: str, new: str) -> tuple[int, dict[str, list[int]]]:
        """Rename; returns the subject id and its face ids per pack (for the index metadata)."""
        try:
            return self._rename_subject(old, new)
        except IntegrityError:  # taken meanwhile by another process
            raise AlreadyExistsError(f"a subject named {new!r} already exists") from None

    def _rename_subject(self, old: str, new: str) -> tuple[int, dict[str, list[int]]]:
        with self.session() as s:
            sub = self.subject(s, old)
            if s.scalar(select(Subject.id).where(Subject.collection_id == self.cid, Subject.name == new)) is not None:
                raise AlreadyExistsError(f"a subject named {new!r} already exists")
            sub.name = new
            self.renamed_templates(s, sub.id)
            s.execute(update(Failure).where(Failure.collection_id == self.cid, Failure.subject_name == old)
                      .values(subject_name=new))
            rows = s.execute(select(Face.id, Face.model).where(Face.subject_id == sub.id)).all()
            return sub.id, _by_model(rows)

    def delete_subject(self, name: str) -> tuple[int, int, dict[str, list[int]]]:
        """Remove a subject and everything of it, journaling its face ids per pack for the index.
        Its name leaves the audit trail too (``deleted subject #<id>``).

        Returns (subject id, images removed, face ids per pack)."""
        return self.retrying(lambda: self._delete_subject(name))

    def _delete_subject(self, name: str) -> tuple[int, int, dict[str, list[int]]]:
        with self.session() as s:
            sub = self.subject(s, name)
            same_name = (AuditEntry.subject == name) & (
                (AuditEntry.collection == self.collection) | AuditEntry.collection.is_(None))
            s.execute(update(AuditEntry).where(or_(AuditEntry.subject_id == sub.id, same_name))
                      .values(subject=deleted_label(sub.id), detail=None))
            # The name in any other row's text (another subject's "renamed from <name>"): gone too.
            s.execute(update(AuditEntry).where(AuditEntry.detail.contains(name, autoescape=True))
                      .values(detail=None))
            n_images = s.scalar(select(func.count(Image.id)).where(Image.subject_id == sub.id)) or 0
            rows = s.execute(select(Face.id, Face.model).where(Face.subject_id == sub.id)).all()
            by_model = _by_model(rows)
            s.add_all([PendingDelete(face_id=fid, model=model, collection_id=self.cid) for fid, model in rows])
            self.drop_templates(s, sub.id)
            s.execute(delete(Face).where(Face.subject_id == sub.id))
            s.execute(delete(Image).where(Image.subject_id == sub.id))
            s.execute(delete(Failure).where(Failure.collection_id == self.cid, Failure.subject_name == name))
            sid = int(sub.id)
            s.delete(sub)
        return sid, int(n_images), by_model

    # -- failures --------------------------------------------------------------
    def forget_failures(self, s: Session, keys: Sequence[tuple[str, str]]) -> None:
        """Delete the failure records of these (path, subject name) pairs."""
        for i in range(0, len(keys), 400):
            chunk = list(keys[i:i + 400])
            if chunk:
                s.execute(delete(Failure).where(Failure.collection_id == self.cid,
                                                tuple_(Failure.path, Failure.subject_name).in_(chunk)))

    def failures(self, subject: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        with self.session() as s:
            q = select(Failure).where(Failure.collection_id == self.cid).order_by(Failure.id)
            if subject:
                q = q.where(Failure.subject_name == subject)
            if reason:
                q = q.where(Failure.reason == reason)
            return [failure_dict(f) for f in s.scalars(q)]

    def counts(self) -> tuple[int, int, dict[str, int]]:
        """(subjects, images, failures per reason)."""
        with self.session() as s:
            n_sub = s.scalar(select(func.count(Subject.id)).where(Subject.collection_id == self.cid)) or 0
            n_img = s.scalar(select(func.count(Image.id)).where(Image.collection_id == self.cid)) or 0
            reasons = s.execute(select(Failure.reason, func.count(Failure.id)).where(Failure.collection_id == self.cid)
                                .group_by(Failure.reason)).all()
        return int(n_sub), int(n_img), {str(k): int(v) for k, v in reasons}


def _by_model(rows: Sequence[Any]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for fid, model in rows:
        out.setdefault(model, []).append(int(fid))
    return out
