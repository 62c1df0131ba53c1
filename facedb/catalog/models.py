"""SQLAlchemy 2.x ORM models. The schema itself is owned by the Alembic migrations."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always reads back an aware UTC datetime.

    SQLite stores no offset (it returned naive values) and PostgreSQL returns ``timestamptz`` in
    the server's TimeZone; both now give the same UTC instant. SQLite keeps its naive-UTC text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC (SQLite gives the stored times back without their zone)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Key/value facts about the database (e.g. the pack it was created with)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(600), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Collection(Base):
    """One gallery of the database: its own subjects, faces, templates and index collections.

    ``pack`` and ``threshold`` are None when the collection follows the database's default pack
    and that pack's calibrated threshold. AUTOINCREMENT: an id is never reused, so the index
    collections of a deleted collection (named by its id) can never alias a new one's."""

    __tablename__ = "collections"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    pack: Mapped[str | None] = mapped_column(String(512), nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def _default_collection() -> Any:
    """Rows inserted without a collection (older code, hand-made test rows) are ``default``'s."""
    return select(Collection.id).where(Collection.name == "default").scalar_subquery()


class Subject(Base):
    __tablename__ = "subjects"
    # A name is unique within its collection: the same person may be enrolled in two galleries.
    __table_args__ = (UniqueConstraint("collection_id", "name", name="uq_subjects_collection_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True, default=_default_collection())
    name: Mapped[str] = mapped_column(String(256))
    info: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    images: Mapped[list[Image]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True
    )


class Image(Base):
    __tablename__ = "images"
    # The same photo may be enrolled once per collection ("same bytes, another subject" is per gallery).
    __table_args__ = (UniqueConstraint("collection_id", "sha256", name="uq_images_collection_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), default=_default_collection())
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(32), default="enrolled")
    #: "file": ``path`` is a file the owner's process read (reindex and thumbnails may open it);
    #: "upload": ``path`` is only the label a remote client sent, never opened by facedb.
    source: Mapped[str] = mapped_column(String(16), default="file", server_default="file")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    subject: Mapped[Subject] = relationship(back_populates="images")
    faces: Mapped[list[Face]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True
    )


class Face(Base):
    """One enrolled face. ``indexed`` becomes true only once its vector is in Chroma."""

    __tablename__ = "faces"
    # AUTOINCREMENT: a face id is never reused, so a stale index entry can never alias a new face.
    # By subject first as well: a subject's faces (its template, its closest face) must not be found
    # by scanning every face of the pack, which is what the (model, indexed) index alone gives.
    # A collection's faces of a pack (its index's contents) by (collection, model, indexed).
    __table_args__ = (Index("ix_faces_collection_model_indexed", "collection_id", "model", "indexed"),
                      Index("ix_faces_subject_model_indexed", "subject_id", "model", "indexed"),
                      {"sqlite_autoincrement": True})
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), default=_default_collection())
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    subject_id: Mapped[int] = mapped_column(ForeignKey("subjects.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(512))
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    landmarks: Mapped[list[list[float]]] = mapped_column(JSON)
    dim: Mapped[int] = mapped_column(Integer)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    indexed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the pack's quality signals of this face (sface: det_score, face_px, eye_px, blur, raw_norm)
    quality: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    image: Mapped[Image] = relationship(back_populates="faces")

    @property
    def bbox(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]

    def vector(self) -> np.ndarray:
        return np.frombuffer(self.embedding, dtype=np.float32)


class SubjectTemplate(Base):
    """A subject's template for one pack: the sum of the unit embeddings of its *indexed* faces
    (searched normalised). Written in the same transaction that indexes or removes those faces,
    so it is never out of step with them; ``seq`` orders the changes for the search caches. A
    subject left without faces keeps a row with ``n_faces`` 0 and no vector (so that caches
    learn of the removal); no foreign key, so deleting the subject leaves that marker."""

    __tablename__ = "subject_templates"
    subject_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(512), primary_key=True)
    #: no foreign key either: a deleted collection's markers go with it (``delete_collection``)
    collection_id: Mapped[int] = mapped_column(Integer, index=True, default=_default_collection())
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    n_faces: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer, index=True)


class Counter(Base):
    """Named counters bumped inside write transactions (the template change sequence)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Failure(Base):
    """An image that could not be enrolled, with a stable reason code."""

    __tablename__ = "failures"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id"), index=True, default=_default_collection())
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    subject_name: Mapped[str | None] = mapped_column(String(256), nullable=True, index=True)
    model: Mapped[str | None] = mapped_column(String(512), nullable=True)
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingDelete(Base):
    """Face ids removed from SQL whose vectors may still be in the index (crash journal)."""

    __tablename__ = "pending_deletes"
    # Always a face's id, never generated (without this PostgreSQL would give it a sequence).
    face_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    model: Mapped[str] = mapped_column(String(512))
    #: whose index holds the vector (no foreign key: the journal outlives a deleted collection)
    collection_id: Mapped[int] = mapped_column(Integer, default=_default_collection())


class ApiKey(Base):
    """An API key of ``facedb serve``: only the SHA-256 of the secret is stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    scope: Mapped[str] = mapped_column(String(16))  # read | write | admin
    #: the one collection the key may use; None: every collection
    collection: Mapped[str | None] = mapped_column(String(128), nullable=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEntry(Base):
    """One write or search: who (key name), what, on which subject, how many, how it ended.

    Never image bytes, embeddings or the identities a search returned. Deleting a subject
    replaces its name in these rows by ``deleted subject #<id>``: delete means gone."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    #: the collection the call used (None for server-wide calls: keys, vacuum, collections)
    collection: Mapped[str | None] = mapped_column(String(128), nullable=True)
    subject: Mapped[str | None] = mapped_column(String(256), nullable=True)
    subject_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    images: Mapped[int] = mapped_column(Integer, default=0)
    faces: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(16))  # ok | partial | error
    detail: Mapped[str | None] = mapped_column(String(128), nullable=True)


class DiscoverRun(Base):
    """A saved ``facedb discover`` run (``--save NAME``) of one collection: its faces, their
    clusters and embeddings, kept so that a cluster can be enrolled later. Biometric data like
    enrolled faces: only in this catalog (never in the index or a file), erased with
    ``discover --forget`` or with its collection (CASCADE)."""

    __tablename__ = "discover_runs"
    __table_args__ = (UniqueConstraint("collection_id", "name", name="uq_discover_runs_collection_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    pack: Mapped[str] = mapped_column(String(512))
    threshold: Mapped[float] = mapped_column(Float)
    cluster_threshold: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DiscoverFace(Base):
    """One face of a saved discover run: its cluster, where it was found, and its embedding."""

    __tablename__ = "discover_faces"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("discover_runs.id", ondelete="CASCADE"), index=True)
    cluster: Mapped[int] = mapped_column(Integer)
    #: the image's label in the report, and the file facedb may reopen (None for bytes it was sent)
    image: Mapped[str] = mapped_column(Text)
    source_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the face's place among its image's faces, largest first (0 = the largest)
    face_index: Mapped[int] = mapped_column(Integer)
    bbox: Mapped[list[float]] = mapped_column(JSON)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
