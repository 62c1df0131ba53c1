"""Subject templates: per subject and pack, the sum of the unit embeddings of its indexed faces.

Searching subjects by their template (the normalised mean of their faces) uses every photo a
person has enrolled (see README "How the default threshold was chosen"). The templates are
derived data kept in the catalog, in step with the faces they sum: every change of which faces
are indexed recomputes the templates of the subjects concerned *in the same transaction*, so a
crash can never leave one behind its faces. Each change takes the next number of the
``templates_seq`` counter (held locked until the transaction commits, so numbers follow commit
order) and a removed template stays as an empty marker: a search cache
(``facedb.index.templates``) reads only the rows changed since the last number it saw.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from .core import CatalogCore
from .models import Counter, Face, Image, Subject, SubjectTemplate

SEQ = "templates_seq"
#: Subjects whose faces one query reads when templates are recomputed.
TEMPLATE_CHUNK = 500


def bump(s: Session, name: str) -> int:
    """Increment counter ``name`` inside the caller's transaction; its new value."""
    row = s.get(Counter, name, with_for_update=True)
    if row is None:
        row = Counter(name=name, value=0)
        s.add(row)
    row.value = int(row.value or 0) + 1
    s.flush()
    return int(row.value)


#: The two reads of every search (``template_changes``, ``subject_faces``): built once, bound
#: per call (building a statement costs more CPU than SQLite spends running it).
CHANGES_READ = (select(SubjectTemplate.subject_id, SubjectTemplate.vector, SubjectTemplate.n_faces, SubjectTemplate.seq)
                .where(SubjectTemplate.collection_id == bindparam("cid"), SubjectTemplate.model == bindparam("model"),
                       SubjectTemplate.seq > bindparam("after"))
                .order_by(SubjectTemplate.seq))
SEQ_READ = select(Counter.value).where(Counter.name == SEQ)


def _faces_read(n: int | None) -> Any:
    """These subjects' indexed faces: ``n`` plain parameters ``id0``...; None: one expanding ``ids``."""
    ids = bindparam("ids", expanding=True) if n is None else [bindparam(f"id{i}") for i in range(n)]
    return (select(Face.id, Face.subject_id, Subject.name, Face.embedding, Image.path)
            .join(Image, Image.id == Face.image_id).join(Subject, Subject.id == Face.subject_id)
            .where(Face.collection_id == bindparam("cid"), Face.model == bindparam("model"), Face.indexed.is_(True),
                   Face.subject_id.in_(ids)))


#: ``FACES_READ[n]``: the read of n subjects' faces with n plain parameters, for the few subjects a
#: search names (an expanding ``IN`` renders its SQL again at every call: most of this read's CPU);
#: ``FACES_READ[None]``: any number.
FACES_READ: dict[int | None, Any] = {n: _faces_read(n) for n in (None, *range(1, 17))}


class TemplateQueries(CatalogCore):
    def refresh_templates(self, s: Session, pairs: Iterable[tuple[int, str]]) -> None:
        """Recompute the templates of these (subject id, pack) pairs from their indexed faces,
        inside the caller's transaction; a subject left without indexed faces gets the empty marker."""
        pairs = sorted(set(pairs))
        if not pairs:
            return
        seq = bump(s, SEQ)
        by_model: dict[str, list[int]] = {}
        for sid, model in pairs:
            by_model.setdefault(model, []).append(sid)
        for model, sids in by_model.items():
            for i in range(0, len(sids), TEMPLATE_CHUNK):  # one query per chunk of subjects, not per subject
                chunk = sids[i:i + TEMPLATE_CHUNK]
                found: dict[int, list[bytes]] = {sid: [] for sid in chunk}
                # Existing rows loaded at once (and held: the session's identity map is weak), so that
                # merge() finds them without a query each.
                held = s.scalars(select(SubjectTemplate).where(SubjectTemplate.subject_id.in_(chunk),
                                                               SubjectTemplate.model == model)).all()
                for sid, emb in s.execute(select(Face.subject_id, Face.embedding)
                                          .where(Face.subject_id.in_(chunk), Face.model == model,
                                                 Face.indexed.is_(True)).order_by(Face.id)):
                    found[int(sid)].append(emb)
                for sid in chunk:
                    rows = found[sid]
                    total = np.sum([np.frombuffer(e, dtype=np.float32) for e in rows], axis=0, dtype=np.float64) \
                        if rows else None
                    s.merge(SubjectTemplate(subject_id=sid, model=model, collection_id=self.cid, n_faces=len(rows), seq=seq,
                                            vector=b"" if total is None else total.astype(np.float32).tobytes()))
                del held

    def renamed_templates(self, s: Session, subject_id: int) -> None:
        """A renamed subject's templates take the next change number, their vectors unchanged,
        inside the caller's transaction: a search cache that keeps the names of a subject's
        faces (``facedb.index.templates``) learns from the change feed to read them again."""
        if s.scalar(select(SubjectTemplate.subject_id).where(SubjectTemplate.subject_id == subject_id).limit(1)) is None:
            return
        seq = bump(s, SEQ)
        s.execute(update(SubjectTemplate).where(SubjectTemplate.subject_id == subject_id).values(seq=seq))

    def drop_templates(self, s: Session, subject_id: int) -> None:
        """Empty a subject's templates (it is being deleted), inside the caller's transaction."""
        models = s.scalars(select(SubjectTemplate.model).where(SubjectTemplate.subject_id == subject_id,
                                                               SubjectTemplate.n_faces > 0)).all()
        if models:
            seq = bump(s, SEQ)
            for model in models:
                s.merge(SubjectTemplate(subject_id=subject_id, model=model, collection_id=self.cid, vector=b"",
                                        n_faces=0, seq=seq))

    def template_seq(self) -> int:
        """The template change sequence: it moves in every transaction that changes which faces
        are indexed (each such change recomputes the subjects' templates), so a count of indexed
        faces read after it stays right until it moves (one primary-key read)."""
        rows = self.read(SEQ_READ, {})
        return int(rows[0][0]) if rows else 0

    def template_changes(self, model: str, after_seq: int) -> list[tuple[int, np.ndarray | None, int]]:
        """[(subject id, summed vector or None for a removed one, seq)] changed after ``after_seq``."""
        rows = self.read(CHANGES_READ, {"cid": self.cid, "model": model, "after": after_seq})
        return [(int(sid), np.frombuffer(v, dtype=np.float32) if n else None, int(q)) for sid, v, n, q in rows]

    def subject_faces(self, model: str, subject_ids: Sequence[int]) -> list[tuple[int, int, str, np.ndarray, str]]:
        """(face id, subject id, subject name, embedding, image path) of these subjects' indexed faces."""
        ids = sorted(set(int(x) for x in subject_ids))
        out: list[tuple[int, int, str, np.ndarray, str]] = []
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            stmt = FACES_READ.get(len(part))
            params: dict[str, Any] = {"cid": self.cid, "model": model}
            params.update({f"id{j}": x for j, x in enumerate(part)} if stmt is not None else {"ids": part})
            out += [(int(f), int(sid), name, np.frombuffer(e, dtype=np.float32), p) for f, sid, name, e, p
                    in self.read(FACES_READ[None] if stmt is None else stmt, params)]
        return out

    def stale_templates(self, model: str) -> list[int]:
        """Subjects whose stored template is not the sum of their indexed faces (``check``)."""
        with self.session() as s:
            stored = {int(sid): (np.frombuffer(v, dtype=np.float32), int(n)) for sid, v, n in s.execute(
                select(SubjectTemplate.subject_id, SubjectTemplate.vector, SubjectTemplate.n_faces)
                .where(SubjectTemplate.collection_id == self.cid, SubjectTemplate.model == model,
                       SubjectTemplate.n_faces > 0))}
            sums: dict[int, Any] = {}
            for sid, emb in s.execute(select(Face.subject_id, Face.embedding)
                                      .where(Face.collection_id == self.cid, Face.model == model,
                                             Face.indexed.is_(True))):
                acc = sums.setdefault(int(sid), [np.zeros(len(emb) // 4, np.float64), 0])
                acc[0] += np.frombuffer(emb, dtype=np.float32)
                acc[1] += 1
        bad = {sid for sid in stored.keys() - sums.keys()} | {sid for sid in sums.keys() - stored.keys()}
        for sid in stored.keys() & sums.keys():
            (vec, n), (total, m) = stored[sid], sums[sid]
            if n != m or not np.allclose(vec, total, atol=1e-4):
                bad.add(sid)
        return sorted(bad)

    def rebuild_templates(self, model: str, subject_ids: Sequence[int] | None = None) -> None:
        """Recompute templates (all of a pack's subjects, or these) from their indexed faces."""
        with self.session() as s:
            if subject_ids is None:
                subject_ids = list(s.scalars(select(Face.subject_id).where(Face.collection_id == self.cid,
                                                                           Face.model == model).distinct()))
                subject_ids += list(s.scalars(select(SubjectTemplate.subject_id).where(
                    SubjectTemplate.collection_id == self.cid, SubjectTemplate.model == model)))
            self.refresh_templates(s, [(int(sid), model) for sid in subject_ids])
