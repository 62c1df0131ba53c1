"""What ``facedb review`` returns: what looks wrong in a gallery, with the evidence (light: the
thin client imports it when it asks for a review)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .models import Result


@dataclass(kw_only=True)
class ReviewOutlier(Result):
    """An enrolled face that looks like somebody else, with the evidence (cosine distances)."""

    subject: str
    face_id: int
    image: str
    #: to the subject's template without this face (the mean of its OTHER faces); None when the
    #: subject has no other face
    distance_own: float | None
    #: the nearest other subject by template, and the distance to it
    nearest_other: str | None
    distance_other: float | None
    #: "far_from_own" (its own subject would not match it) or "closer_to_other" (it matches
    #: another subject better than its own)
    reason: str


@dataclass(kw_only=True)
class ReviewLookAlike(Result):
    """Two subjects whose templates are close enough to be one person under two names."""

    a: str
    b: str
    distance: float


@dataclass(kw_only=True)
class ReviewDuplicate(Result):
    """The same photo under two names: two faces of different subjects with (nearly) the same
    vector, i.e. one photo stored twice in different bytes (re-saved, resized). Byte-identical
    copies are refused at enrollment (``enrolled_as_other``) and never reach the catalog."""

    subject: str
    face_id: int
    image: str
    other_subject: str
    other_face_id: int
    other_image: str
    distance: float


@dataclass(kw_only=True)
class ReviewReport(Result):
    """What looks wrong in a collection's gallery (``facedb review``), and the rules that found it."""

    pack: str
    #: the collection's match threshold; the rules' distances below are derived from it
    threshold: float
    subjects: int
    faces: int
    #: a face farther than this from the mean of its subject's other faces is "far_from_own"
    outlier_distance: float
    #: two templates closer than this are a look-alike pair
    look_alike_distance: float
    #: two faces of different subjects closer than this are a duplicate
    duplicate_distance: float
    outliers: list[ReviewOutlier] = field(default_factory=list)
    look_alikes: list[ReviewLookAlike] = field(default_factory=list)
    duplicates: list[ReviewDuplicate] = field(default_factory=list)

    derived: ClassVar[dict[str, str]] = {"clean": "boolean"}

    @property
    def clean(self) -> bool:
        return not (self.outliers or self.look_alikes or self.duplicates)
