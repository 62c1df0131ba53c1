"""The backend protocol: the verbs every front end may call, on the local ``FaceDB`` or on a server.

The CLI runs each command as one call on a ``Backend``: ``facedb.api.FaceDB`` (the database in
this process) or ``facedb.client.Client`` (a ``facedb serve``, over the home's socket or a URL).
Both take the same arguments and return the same result dataclasses, which is what makes a
command print the same JSON and exit with the same code on every path; ``facedb.cli`` (which
picks one of them) holds the ``TYPE_CHECKING`` assignments that make mypy prove both still conform
whenever either one changes (the contract itself imports neither).

Light on purpose (the thin client imports it): the argument types come from the operations only
while type checking.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from ..analysis.files import Upload
    from ..analysis.quality import QualityFloor
    from .discover import DiscoverReport, ForgetReport
    from .faces import FaceSearchReport, FacesRemoveReport, FacesReport, MergeReport, MoveReport
    from .lifecycle import BackupReport, RestoreReport
    from .models import (
        AuditEntry,
        CheckReport,
        CollectionInfo,
        DeleteReport,
        EnrollReport,
        FailureRecord,
        ImportReport,
        KeyInfo,
        PackStatus,
        ReindexReport,
        SearchReport,
        Stats,
        SubjectDetail,
        SubjectInfo,
        VacuumReport,
        VerifyResult,
    )
    from .review import ReviewReport

#: How ``enroll`` treats a photo with several faces (the same literals as ``operations.enroll``).
MultiFace = Literal["resolve", "largest", "skip"]
#: Where ``import_dir`` takes subject names from.
NameFrom = Literal["dir", "prefix"]
#: What ``search`` ranks: subjects, or single enrolled faces.
By = Literal["subject", "face"]
#: How a subject is scored: its template (mean of its faces) or its closest face.
Scoring = Literal["template", "best"]
#: What an API key may do.
Scope = Literal["read", "write", "admin"]

PathLike = str | os.PathLike[str]
ProgressFn = Callable[[int], None]


class Backend(Protocol):
    """What the CLI needs from a face database, local or served."""

    @property
    def pack_name(self) -> str: ...

    @property
    def threshold(self) -> float: ...

    def close(self) -> None: ...

    # -- enrollment
    def enroll(self, subject: str, paths: Sequence[PathLike | Upload], *, multi_face: MultiFace = "resolve",
               metadata: dict[str, Any] | None = None, progress: ProgressFn | None = None,
               quality_floor: QualityFloor = ..., aligned: bool = False, face: int | None = None) -> EnrollReport: ...

    def import_dir(self, root: PathLike, *, name_from: NameFrom = "dir", multi_face: MultiFace = "resolve",
                   progress: ProgressFn | None = None, quality_floor: QualityFloor = ...,
                   aligned: bool = False) -> ImportReport: ...

    # -- search
    def search(self, images: Sequence[PathLike | bytes | Upload], *, k: int = 3, threshold: float | None = None,
               by: By = "subject", reference: bool = False, scoring: Scoring = "template",
               sample_fps: float = 4.0, progress: ProgressFn | None = None,
               aligned: bool = False) -> SearchReport: ...

    def verify(self, image: PathLike | bytes | Upload, subject: str, *,
               threshold: float | None = None, aligned: bool = False) -> VerifyResult: ...

    # -- management
    def delete(self, subject: str, *, vacuum: bool = False) -> DeleteReport: ...

    def rename(self, old: str, new: str) -> None: ...

    def subjects(self) -> list[SubjectInfo]: ...

    def show(self, subject: str) -> SubjectDetail: ...

    def failures(self, subject: str | None = None, reason: str | None = None) -> list[FailureRecord]: ...

    def stats(self) -> Stats: ...

    def packs(self) -> list[PackStatus]: ...

    # -- integrity
    def check(self, repair: bool = False) -> CheckReport: ...

    def vacuum(self) -> VacuumReport: ...

    def reindex(self, progress: ProgressFn | None = None) -> ReindexReport: ...

    # -- API keys and audit
    def create_key(self, name: str, scope: Scope, collection: str | None = None) -> KeyInfo: ...

    def keys(self) -> list[KeyInfo]: ...

    def revoke_key(self, name: str) -> KeyInfo: ...

    def audit(self, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]: ...

    # -- collections (galleries) of the database or server
    def collections(self) -> list[CollectionInfo]: ...

    def create_collection(self, name: str, pack: str | None = None,
                          threshold: float | None = None) -> CollectionInfo: ...

    def delete_collection(self, name: str) -> CollectionInfo: ...

    # -- review: what looks wrong in the gallery
    def review(self) -> ReviewReport: ...
    # -- discovery (clusters of faces, enrolled or not)
    def discover(self, paths: Sequence[PathLike | bytes | Upload], *, threshold: float | None = None,
                 cluster_threshold: float = ..., save: str | None = None,
                 sample_fps: float = 4.0, progress: ProgressFn | None = None) -> DiscoverReport: ...

    def forget_run(self, run: str) -> ForgetReport: ...

    def enroll_cluster(self, run: str, cluster_id: int, name: str, *,
                       quality_floor: QualityFloor = ...) -> EnrollReport: ...
    # -- single faces
    def faces(self, subject: str) -> FacesReport: ...

    def remove_faces(self, face_ids: Sequence[int], *, vacuum: bool = False) -> FacesRemoveReport: ...

    def move_faces(self, face_ids: Sequence[int], to: str) -> MoveReport: ...

    def merge(self, source: str, target: str) -> MergeReport: ...

    def search_face(self, face_id: int, *, k: int = 3, threshold: float | None = None, by: By = "subject",
                    scoring: Scoring = "template") -> FaceSearchReport: ...
    # -- backup and restore (the whole database)
    def backup(self, path: PathLike) -> BackupReport: ...

    def restore(self, path: PathLike, *, reindex_from_images: bool = False) -> RestoreReport: ...
