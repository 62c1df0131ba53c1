"""The results of working on single faces: a subject's faces, removing and moving faces, merging
two subjects, and searching with an enrolled face as the probe. Pydantic models like those of
``facedb.contract.models`` (``to_dict()`` is the JSON of the CLI's ``--json`` and of the server)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from .models import Match, Result, VacuumReport

#: Face ids per HTTP request at most (the thin client sends longer lists in parts).
MAX_FACE_IDS = 1000


@dataclass(kw_only=True)
class FaceInfo(Result):
    """One enrolled face of a subject."""

    face_id: int
    #: the photo it was enrolled from (a path, or an upload's name)
    image: str
    image_id: int
    #: x1, y1, x2, y2 in the photo's pixels
    bbox: list[float]
    #: detector confidence
    score: float
    #: the pack's quality signals (sface: det_score, face_px, eye_px, blur, raw_norm)
    quality: dict[str, float] | None = None
    pack: str
    #: in the search index (false only while a write is unfinished)
    indexed: bool
    #: cosine distance to the subject's template (the normalised mean of its indexed faces of the
    #: active pack, this face included); None for a face of another pack or not indexed
    distance: float | None = None


@dataclass(kw_only=True)
class FacesReport(Result):
    """``facedb faces list SUBJECT``: every face of one subject, by id."""

    subject: str
    pack: str
    #: the collection's match threshold, to read the distances against
    threshold: float
    #: indexed faces of the active pack: how many the template averages
    template_faces: int
    faces: list[FaceInfo] = field(default_factory=list)


@dataclass(kw_only=True)
class FacesRemoveReport(Result):
    """``facedb faces remove``: what left both stores. Subjects left without faces stay (empty)."""

    face_ids: list[int]
    faces: int
    #: photos removed with their last face
    images: int
    #: faces removed per subject
    subjects: dict[str, int]
    vacuum: VacuumReport | None = None

    omit_if_none: ClassVar[tuple[str, ...]] = ("vacuum",)


@dataclass(kw_only=True)
class MoveReport(Result):
    """``facedb faces move``: faces (with their photos) given to another subject."""

    to: str
    #: every face that changed subject (a photo's faces of other packs go with it)
    moved: list[int]
    #: faces asked for that were already the target's (left as they are)
    already: list[int] = field(default_factory=list)
    #: faces taken from each subject
    subjects: dict[str, int] = field(default_factory=dict)
    images: int = 0


@dataclass(kw_only=True)
class MergeReport(Result):
    """``facedb merge SOURCE TARGET``: SOURCE's photos and faces joined TARGET; SOURCE is gone."""

    source: str
    target: str
    images: int
    faces: int
    #: TARGET's metadata afterwards: its own values, plus the keys only SOURCE had
    metadata: dict[str, Any] | None = None


@dataclass(kw_only=True)
class FaceSearchReport(Result):
    """``facedb search --face-id ID``: the nearest subjects (or faces) of an enrolled face, its
    stored embedding as the probe. The face itself is never an answer: it is listed in
    ``excluded``, and with ``by="subject"`` its own subject is scored without it (its template
    without this face, or its closest *other* face)."""

    face_id: int
    #: the subject the face is enrolled as, and its photo and box
    subject: str
    image: str
    bbox: list[float]
    pack: str
    threshold: float
    by: str
    k: int
    scoring: str
    #: face ids left out of the ranking: the probe itself
    excluded: list[int]
    #: the best subject when it matches, else None
    identity: str | None
    matches: list[Match]
