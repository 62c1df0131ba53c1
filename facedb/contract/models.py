"""What the Python API returns: dataclasses whose ``to_dict()`` is the documented JSON (the CLI's
``--json`` and the server's responses are these dicts) and whose ``from_dict()`` rebuilds them (the
thin client). ``/openapi.json`` describes them from the same classes: pydantic reads dataclasses as
they are (``facedb.server`` passes them as ``response_model``).

Plain dataclasses, not pydantic models, on purpose: the thin client imports this module on every
command, and importing pydantic alone (about 45 ms) costs more than a search through a server.
Values are made plain when a result is built (a numpy scalar from the analysis becomes a ``float``
or ``int``), so ``to_dict()`` is always JSON; types are checked statically (mypy), and a server's
answers are validated by the server's own models before they are sent.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="Result")
_ATOMS = (str, int, float, bool, type(None))


def _derived_schema(schema: dict[str, Any], cls: type[Any]) -> None:
    """Add a result's derived values (``Result.derived``) to its JSON schema: part of every
    answer, never read back."""
    for name, json_type in cls.derived.items():
        schema.setdefault("properties", {})[name] = {"type": json_type, "title": name.replace("_", " ").title(),
                                                     "readOnly": True}
        schema.setdefault("required", []).append(name)


class Result:
    """Base of every result: ``to_dict`` / ``from_dict`` round-trip the JSON shape.

    ``derived`` names the properties that are part of the JSON (after the fields) and of its
    schema, with their JSON type; ``from_dict`` ignores them (they are computed again).
    """

    derived: ClassVar[dict[str, str]] = {}
    #: optional fields left out of the JSON when they are None (e.g. ``vacuum`` of a delete
    #: made without it)
    omit_if_none: ClassVar[tuple[str, ...]] = ()
    #: read by pydantic when it builds a schema of the dataclass (a plain dict: no pydantic import)
    __pydantic_config__: ClassVar[dict[str, Any]] = {"json_schema_extra": _derived_schema}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            plain = _py(value)
            if plain is not value:
                object.__setattr__(self, f.name, plain)

    def to_dict(self) -> dict[str, Any]:
        return _fields(self)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Rebuild from ``to_dict()`` output; keys that are not fields (derived ones) are ignored."""
        hints = _hints(cls)
        return cls(**{f.name: _build(hints[f.name], data[f.name])
                      for f in dataclasses.fields(cls) if f.init and f.name in data})  # type: ignore[arg-type]


def _py(value: Any) -> Any:
    """``value`` with numpy scalars and arrays (and tuples) made plain Python; the same object
    when it already is."""
    t = type(value)
    if t in _ATOMS:
        return value
    if t.__module__ == "numpy":
        return value.tolist()
    if t is list or t is tuple:
        items = [_py(v) for v in value]
        if t is list and all(a is b for a, b in zip(items, value)):
            return value
        return items
    if t is dict:
        pairs = {k: _py(v) for k, v in value.items()}
        return value if all(pairs[k] is v for k, v in value.items()) else pairs
    return value


def _fields(obj: Result) -> dict[str, Any]:
    """The fields (less ``omit_if_none`` ones that are None), then the derived values; nested
    results as their ``to_dict()``."""
    omit = type(obj).omit_if_none
    out = {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)  # type: ignore[arg-type]
           if not (f.name in omit and getattr(obj, f.name) is None)}
    out.update((name, _plain(getattr(obj, name))) for name in type(obj).derived)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


_HINTS: dict[type[Result], dict[str, Any]] = {}


def _hints(cls: type[Result]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


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


@dataclass(kw_only=True)
class FailedItem(Result):
    """An input that could not be used."""

    path: str
    #: stable code: no_face, too_many_faces, ambiguous_faces, not_an_image, corrupt_image, ... (docs/cli.md)
    reason: str
    message: str


@dataclass(kw_only=True)
class ImageFaces(Result):
    """One analysed photo of an enrollment: how many faces it had and which one was stored."""

    image: str
    #: faces found in the photo
    faces: int
    #: the face stored (0 = the largest), or None when none was (see ``failed`` for why)
    taken: int | None = None


@dataclass(kw_only=True)
class EnrollReport(Result):
    """What enrolling photos into one subject did."""

    subject: str
    #: photos whose face was stored
    enrolled: int = 0
    #: photos skipped because the same bytes are already enrolled for this subject
    duplicates: int = 0
    failed: list[FailedItem] = field(default_factory=list)
    #: ids of the faces stored now
    face_ids: list[int] = field(default_factory=list)
    #: every analysed photo: its face count and the face taken (duplicates and unreadable files
    #: are not analysed, so not listed)
    images: list[ImageFaces] = field(default_factory=list)


@dataclass(kw_only=True)
class ImportReport(Result):
    """What a bulk import (or an enroll, in its JSON) did, per subject."""

    pack: str
    subjects: list[EnrollReport] = field(default_factory=list)
    #: inputs not attributable to a subject (a loose file in an import root)
    failed: list[FailedItem] = field(default_factory=list)

    # Derived totals: part of the JSON (and of its schema), never read back by ``from_dict``.
    derived: ClassVar[dict[str, str]] = {"enrolled": "integer", "duplicates": "integer", "n_failed": "integer"}

    @property
    def enrolled(self) -> int:
        return sum(s.enrolled for s in self.subjects)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.subjects)

    @property
    def n_failed(self) -> int:
        return sum(len(s.failed) for s in self.subjects) + len(self.failed)


@dataclass(kw_only=True)
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


@dataclass(kw_only=True)
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

    omit_if_none: ClassVar[tuple[str, ...]] = ("reference_agrees",)


@dataclass(kw_only=True)
class VideoSummary(Result):
    """A probe video: how long it is and how much of it was analysed."""

    duration_s: float
    fps: float
    #: frames decoded and analysed (one per 1 / ``sample_fps`` seconds)
    frames_read: int
    sample_fps: float


@dataclass(kw_only=True)
class Appearance(Result):
    """One face followed through a video (a track), and who it is."""

    #: the subject the track's faces vote for (weighted by quality; at least two frames, and the
    #: track's mean face within the threshold), else None (unknown)
    subject: str | None
    track: int
    #: [start_s, end_s] spans in which the track is on screen
    segments: list[list[float]]
    #: cosine distance from the track's mean face to the named subject's template (for an
    #: unknown track: to the nearest subject's, None when the gallery is empty)
    distance: float | None
    #: sampled frames in which the track was seen
    frames: int


@dataclass(kw_only=True)
class ImageResult(Result):
    """One probe image (its faces), or one probe video (its ``appearances``), or why it could
    not be used."""

    image: str
    error: str | None = None
    reason: str | None = None
    faces: list[FaceResult] = field(default_factory=list)
    video: VideoSummary | None = None
    appearances: list[Appearance] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"image": self.image, "error": self.error, "reason": self.reason,
             "faces": [f.to_dict() for f in self.faces]}
        if self.video is not None:
            d["video"] = self.video.to_dict()
            d["appearances"] = [a.to_dict() for a in self.appearances or []]
        return d


@dataclass(kw_only=True)
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


@dataclass(kw_only=True)
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


@dataclass(kw_only=True)
class DeleteReport(Result):
    """What deleting a subject removed (with ``vacuum``: the stores were rewritten too)."""

    subject: str
    images: int
    faces: int
    vacuum: VacuumReport | None = None

    omit_if_none: ClassVar[tuple[str, ...]] = ("vacuum",)


@dataclass(kw_only=True)
class SubjectInfo(Result):
    """One enrolled subject, with counts."""

    name: str
    images: int
    faces: int
    metadata: dict[str, Any] | None
    created_at: str | None


@dataclass(kw_only=True)
class SubjectDetail(Result):
    """One subject: metadata, images (each with its faces) and failed images."""

    name: str
    metadata: dict[str, Any] | None
    created_at: str | None
    images: list[dict[str, Any]]
    failures: list[dict[str, Any]]


@dataclass(kw_only=True)
class FailureRecord(Result):
    """An image that could not be enrolled, as the catalog keeps it."""

    path: str
    subject: str | None
    reason: str
    message: str
    pack: str | None
    created_at: str | None


@dataclass(kw_only=True)
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
    unreachable_in_index: list[int] = field(default_factory=list)
    #: subjects whose stored template is not the sum of their indexed faces
    stale_templates: list[int] = field(default_factory=list)
    repaired: bool = False
    #: what ``repair`` did: "reset the index", "replayed the journal", "removed N orphans",
    #: "added N missing", "rebuilt the collection", "recomputed N templates"
    repairs: list[str] = field(default_factory=list)

    derived: ClassVar[dict[str, str]] = {"clean": "boolean"}

    @property
    def clean(self) -> bool:
        return not (self.missing_from_index or self.orphans_in_index or self.pending_index
                    or self.pending_deletes or self.index_error or self.unreachable_in_index
                    or self.stale_templates)



@dataclass(kw_only=True)
class VacuumReport(Result):
    """Disk use of the home before and after rewriting the stores."""

    bytes_before: int
    bytes_after: int


@dataclass(kw_only=True)
class ReindexReport(Result):
    """Re-embedding the stored images with the loaded pack."""

    pack: str
    reindexed: int
    failed: list[FailedItem] = field(default_factory=list)


@dataclass(kw_only=True)
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


@dataclass(kw_only=True)
class PackStatus(Result):
    """A model pack: whether it is active, and how many faces this database holds for it."""

    name: str
    description: str
    faces: int
    active: bool
    dim: int | None
    fingerprint: str | None


@dataclass(kw_only=True)
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

    omit_if_none: ClassVar[tuple[str, ...]] = ("key",)


@dataclass(kw_only=True)
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


@dataclass(kw_only=True)
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
