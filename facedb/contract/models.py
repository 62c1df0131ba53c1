"""What the Python API returns: pydantic models whose ``to_dict()`` is the documented JSON (the
CLI's ``--json`` and the server's responses are these dicts, and ``/openapi.json`` describes them
from the same classes), and ``from_dict()`` rebuilds them (the thin client). Light on purpose: no
numpy, SQLAlchemy or Chroma here.

Every model defers building its validator until its first use (``defer_build``): the thin client
imports this module on every command, and building the schemas of all of them up front costs more
than the command itself. Values are validated when a model is built, so a numpy scalar from the
analysis becomes a plain ``float``/``int`` before it reaches JSON.
"""
from __future__ import annotations

import functools
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, computed_field

T = TypeVar("T", bound="Result")


class Result(BaseModel):
    """Base of every result: ``to_dict`` / ``from_dict`` round-trip the JSON shape.

    Both walk the fields themselves instead of calling pydantic's serializer and validator: a
    deferred model builds those on first use (about 15 ms for a search report), which the thin
    client would pay on every command for JSON it trusts (its own server's, and what the
    constructors validated in the first place).
    """

    model_config = ConfigDict(defer_build=True)

    def to_dict(self) -> dict[str, Any]:
        return _fields(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Rebuild from ``to_dict()`` output; keys that are not fields (derived ones) are ignored."""
        hints = _hints(cls)
        return cls.model_construct(**{name: _build(hints[name], data[name]) for name in cls.model_fields
                                      if name in data})


def _fields(obj: BaseModel) -> dict[str, Any]:
    """What ``model_dump()`` gives (fields, then computed fields; nested models as their fields)."""
    cls = type(obj)
    out = {name: _plain(getattr(obj, name)) for name in cls.model_fields}
    out.update((name, _plain(getattr(obj, name))) for name in cls.model_computed_fields)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return _fields(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@functools.cache
def _hints(cls: type[Result]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(tp: Any, value: Any) -> Any:
    """``value`` as type ``tp``: Result models and lists / optionals of them are rebuilt."""
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_build(item, v) for v in value]
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _build(arg, value)
    if isinstance(tp, type) and issubclass(tp, Result):
        return tp.from_dict(value)
    return value


class FailedItem(Result):
    """An input that could not be used."""

    path: str
    #: stable code: no_face, too_many_faces, not_an_image, corrupt_image, ... (README)
    reason: str
    message: str


class EnrollReport(Result):
    """What enrolling photos into one subject did."""

    subject: str
    #: photos whose face was stored
    enrolled: int = 0
    #: photos skipped because the same bytes are already enrolled for this subject
    duplicates: int = 0
    failed: list[FailedItem] = Field(default_factory=list)
    #: ids of the faces stored now
    face_ids: list[int] = Field(default_factory=list)


class ImportReport(Result):
    """What a bulk import (or an enroll, in its JSON) did, per subject."""

    pack: str
    subjects: list[EnrollReport] = Field(default_factory=list)
    #: inputs not attributable to a subject (a loose file in an import root)
    failed: list[FailedItem] = Field(default_factory=list)

    # Derived totals: part of the JSON (and of its schema), never read back by ``from_dict``.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def enrolled(self) -> int:
        return sum(s.enrolled for s in self.subjects)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.subjects)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n_failed(self) -> int:
        return sum(len(s.failed) for s in self.subjects) + len(self.failed)


class Match(Result):
    """One candidate for a face: a subject (``by="subject"``) or an enrolled face."""

    subject: str
    #: cosine distance (1 - cosine similarity; 0 = identical)
    distance: float
    #: distance <= the threshold in force
    match: bool
    #: the enrolled face closest to the probe, and the image it came from
    face_id: int
    image: str
    #: cosine distance to that closest face (with ``scoring="template"`` the ``distance`` is to
    #: the subject's template: the normalised mean of all its faces)
    face_distance: float | None = None


class FaceResult(Result):
    """One face found in a probe image."""

    bbox: list[float]  # x1, y1, x2, y2 in image pixels
    #: detector confidence
    score: float
    #: the best subject when it matches, else None ("unknown")
    identity: str | None
    matches: list[Match]
    #: with ``reference=True``: whether exact scikit-learn neighbours gave the same answer
    reference_agrees: bool | None = None
    #: the pack's quality signals of this face (sface: det_score, face_px, eye_px, blur, raw_norm)
    quality: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _fields(self)
        if self.reference_agrees is None:
            d.pop("reference_agrees")
        return d


class ImageResult(Result):
    """One probe image: its faces, or why it could not be used."""

    image: str
    error: str | None = None
    reason: str | None = None
    faces: list[FaceResult] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "error": self.error, "reason": self.reason,
                "faces": [f.to_dict() for f in self.faces]}


class SearchReport(Result):
    """The answer to "who is in these photos?"."""

    pack: str
    threshold: float
    by: str
    k: int
    results: list[ImageResult]
    reference: bool = False
    #: "template" (subjects by the mean of their faces: the default) or "best" (by their closest face)
    scoring: str = "template"

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.results if r.error)

    def to_dict(self) -> dict[str, Any]:
        return {"pack": self.pack, "threshold": self.threshold, "by": self.by, "k": self.k,
                "scoring": self.scoring, "reference": self.reference,
                "results": [r.to_dict() for r in self.results]}


class VerifyResult(Result):
    """1:1: the distance from the image's face that is closest to the subject (every face is
    compared, so a group photo answers for the right person) to the subject's closest sample."""

    image: str
    subject: str
    pack: str
    threshold: float
    distance: float | None
    match: bool
    face_id: int | None
    matched_image: str | None
    faces_in_image: int
    #: the face that answered: its box (x1, y1, x2, y2) and its place among the image's faces,
    #: largest first (0 = the largest)
    face_bbox: list[float] | None = None
    face_index: int | None = None


class DeleteReport(Result):
    """What deleting a subject removed (with ``vacuum``: the stores were rewritten too)."""

    subject: str
    images: int
    faces: int
    vacuum: VacuumReport | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _fields(self)
        if self.vacuum is None:
            d.pop("vacuum")
        return d


class SubjectInfo(Result):
    """One enrolled subject, with counts."""

    name: str
    images: int
    faces: int
    metadata: dict[str, Any] | None
    created_at: str | None


class SubjectDetail(Result):
    """One subject: metadata, images (each with its faces) and failed images."""

    name: str
    metadata: dict[str, Any] | None
    created_at: str | None
    images: list[dict[str, Any]]
    failures: list[dict[str, Any]]


class FailureRecord(Result):
    """An image that could not be enrolled, as the catalog keeps it."""

    path: str
    subject: str | None
    reason: str
    message: str
    pack: str | None
    created_at: str | None


class CheckReport(Result):
    """How the index compares with the catalog (the system of record)."""

    pack: str
    catalog_faces: int
    index_faces: int
    missing_from_index: list[int]
    orphans_in_index: list[int]
    pending_index: int
    pending_deletes: int
    index_error: str | None = None
    #: faces whose own vector was searched for in the index (all of them up to a sample size)
    reach_checked: int = 0
    #: faces in the index that a search with their own vector does not find (HNSW graph fault)
    unreachable_in_index: list[int] = Field(default_factory=list)
    #: subjects whose stored template is not the sum of their indexed faces
    stale_templates: list[int] = Field(default_factory=list)
    repaired: bool = False
    #: what ``repair`` did: "reset the index", "replayed the journal", "removed N orphans",
    #: "added N missing", "rebuilt the collection", "recomputed N templates"
    repairs: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def clean(self) -> bool:
        return not (self.missing_from_index or self.orphans_in_index or self.pending_index
                    or self.pending_deletes or self.index_error or self.unreachable_in_index
                    or self.stale_templates)



class VacuumReport(Result):
    """Disk use of the home before and after rewriting the stores."""

    bytes_before: int
    bytes_after: int


class ReindexReport(Result):
    """Re-embedding the stored images with the loaded pack."""

    pack: str
    reindexed: int
    failed: list[FailedItem] = Field(default_factory=list)


class Stats(Result):
    """Counts, disk use and where the data lives."""

    home: str
    catalog: str
    pack: str
    subjects: int
    images: int
    faces_by_pack: dict[str, int]
    failures_by_reason: dict[str, int]
    disk_bytes: int


class PackStatus(Result):
    """A model pack: whether it is active, and how many faces this database holds for it."""

    name: str
    description: str
    faces: int
    active: bool
    dim: int | None
    fingerprint: str | None


class KeyInfo(Result):
    """An API key of ``facedb serve`` (``key`` only once, when it is created)."""

    name: str
    scope: str
    created_at: str | None = None
    revoked_at: str | None = None
    last_used_at: str | None = None
    active: bool = True
    key: str | None = None
    #: the one collection the key may use (None: every collection)
    collection: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = _fields(self)
        if self.key is None:
            d.pop("key")
        return d


class AuditEntry(Result):
    """One audited call: who (API key name, or ``local``), what, on which subject, how it ended."""

    id: int
    at: str | None
    actor: str
    action: str
    subject: str | None
    images: int
    faces: int
    outcome: str
    detail: str | None
    #: the collection the call used (None: a server-wide call)
    collection: str | None = None


class CollectionInfo(Result):
    """One collection (gallery) of a database: its own subjects, faces, pack and threshold.

    ``pack`` / ``threshold`` are None when it follows the database's default pack and that
    pack's calibrated threshold."""

    name: str
    pack: str | None = None
    threshold: float | None = None
    created_at: str | None = None
    subjects: int = 0
    faces: int = 0


class BackupReport(Result):
    """A snapshot written by ``backup``: where, how big, what it holds (see docs/storage.md)."""

    path: str
    bytes: int
    format_version: int
    facedb_version: str
    #: the catalog's Alembic revision (a restore needs the same)
    schema_revision: str
    created_at: str
    faces_by_pack: dict[str, int] = Field(default_factory=dict)
    #: rows per table in the snapshot
    rows: dict[str, int] = Field(default_factory=dict)
    seconds: float = 0.0


class RestoreReport(Result):
    """A snapshot restored into an empty database: rows, the index built from them, the check."""

    path: str
    catalog: str
    index: str
    rows: dict[str, int] = Field(default_factory=dict)
    indexed_faces: int = 0
    #: faces re-embedded from their photos (``reindex_from_images``), and the photos that could not be
    reindexed: int = 0
    failed: list[FailedItem] = Field(default_factory=list)
    rows_seconds: float = 0.0
    index_seconds: float = 0.0
    seconds: float = 0.0
    #: the ``default`` collection's check; ``clean``: every collection checked clean
    check: CheckReport | None = None
    clean: bool = False
