"""What ``facedb review`` reads: every indexed face of a pack with its subject and image, in one
pass (the comparisons are done in memory against subject templates, never face against face)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from .core import CatalogCore
from .models import Face, Image, Subject


@dataclass(frozen=True)
class ReviewFaces:
    """A pack's indexed faces of one collection, as parallel arrays (face order: by subject, then id)."""

    face_ids: np.ndarray  # int64
    subject_ids: np.ndarray  # int64
    embeddings: np.ndarray  # float32, one row per face
    #: subject id -> name, face id -> image path (only what a finding names is looked up)
    names: dict[int, str]
    images: dict[int, str]


class ReviewQueries(CatalogCore):
    def review_faces(self, model: str) -> ReviewFaces:
        """Every indexed face of ``model`` in this collection, with its subject and image path."""
        with self.session() as s:
            rows = s.execute(select(Face.id, Face.subject_id, Subject.name, Image.path, Face.embedding)
                             .join(Subject, Subject.id == Face.subject_id).join(Image, Image.id == Face.image_id)
                             .where(Face.collection_id == self.cid, Face.model == model, Face.indexed.is_(True))
                             .order_by(Face.subject_id, Face.id)).all()
        if not rows:
            return ReviewFaces(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32), {}, {})
        return ReviewFaces(
            face_ids=np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
            subject_ids=np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)),
            embeddings=np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows]),
            names={int(r[1]): str(r[2]) for r in rows},
            images={int(r[0]): str(r[3]) for r in rows})
