"""The dataclasses the Python API returns; ``to_dict()`` gives the documented JSON shapes."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


class _Dict:
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]


@dataclass
class FailedItem(_Dict):
    path: str
    reason: str  # stable code: no_face, too_many_faces, not_an_image, corrupt_image, ...
    message: str


@dataclass
class EnrollReport(_Dict):
    subject: str
    enrolled: int = 0
    duplicates: int = 0
    failed: list[FailedItem] = field(default_factory=list)
    face_ids: list[int] = field(default_factory=list)


@dataclass
class ImportReport(_Dict):
    model: str
    subjects: list[EnrollReport] = field(default_factory=list)
    failed: list[FailedItem] = field(default_factory=list)  # items not attributable to a subject

    @property
    def enrolled(self) -> int:
        return sum(s.enrolled for s in self.subjects)

    @property
    def duplicates(self) -> int:
        return sum(s.duplicates for s in self.subjects)

    @property
    def n_failed(self) -> int:
        return sum(len(s.failed) for s in self.subjects) + len(self.failed)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(enrolled=self.enrolled, duplicates=self.duplicates, n_failed=self.n_failed)
        return d


@dataclass
class Match(_Dict):
    subject: str
    distance: float
    match: bool
    face_id: int
    image: str


@dataclass
class FaceResult(_Dict):
    bbox: list[float]
    score: float
    identity: str | None
    matches: list[Match]
    reference_agrees: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.reference_agrees is None:
            d.pop("reference_agrees")
        return d


@dataclass
class ImageResult(_Dict):
    image: str
    error: str | None = None
    reason: str | None = None
    faces: list[FaceResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "error": self.error, "reason": self.reason,
                "faces": [f.to_dict() for f in self.faces]}


@dataclass
class SearchReport(_Dict):
    model: str
    threshold: float
    by: str
    k: int
    results: list[ImageResult]
    reference: bool = False

    @property
    def n_failed(self) -> int:
        return sum(1 for r in self.results if r.error)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "threshold": self.threshold, "by": self.by, "k": self.k,
                "reference": self.reference, "results": [r.to_dict() for r in self.results]}


@dataclass
class VerifyResult(_Dict):
    image: str
    subject: str
    model: str
    threshold: float
    distance: float | None
    match: bool
    face_id: int | None
    matched_image: str | None
    faces_in_image: int


@dataclass
class DeleteReport(_Dict):
    subject: str
    images: int
    faces: int


@dataclass
class SubjectInfo(_Dict):
    name: str
    images: int
    faces: int
    metadata: dict[str, Any] | None
    created_at: str | None


@dataclass
class SubjectDetail(_Dict):
    name: str
    metadata: dict[str, Any] | None
    created_at: str | None
    images: list[dict[str, Any]]
    failures: list[dict[str, Any]]


@dataclass
class CheckReport(_Dict):
    model: str
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
    repaired: bool = False

    @property
    def clean(self) -> bool:
        return not (self.missing_from_index or self.orphans_in_index or self.pending_index
                    or self.pending_deletes or self.index_error or self.unreachable_in_index)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["clean"] = self.clean
        return d
