"""facedb: who is in this photo? Enroll known faces, search them, offline by default.

    from facedb import FaceDB
    db = FaceDB(home="my-faces")
    db.enroll("alice", ["photos/alice/"])
    report = db.search(["party.jpg"])

Heavy modules (SQLAlchemy, Chroma, OpenCV) load on first use, so ``import facedb`` is cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .analysis.files import Upload
from .errors import (
    AuthError,
    DatabaseBusyError,
    FacedbError,
    ImageError,
    IndexCorruptError,
    ModelError,
    NotFoundError,
    UnavailableError,
)

if TYPE_CHECKING:
    from .api import FaceDB
    from .contract.faces import FaceInfo, FaceSearchReport, FacesRemoveReport, FacesReport, MergeReport, MoveReport
    from .contract.models import (
        AuditEntry,
        CheckReport,
        DeleteReport,
        EnrollReport,
        FaceResult,
        FailedItem,
        FailureRecord,
        ImageResult,
        ImportReport,
        KeyInfo,
        Match,
        PackStatus,
        ReindexReport,
        SearchReport,
        Stats,
        SubjectDetail,
        SubjectInfo,
        VacuumReport,
        VerifyResult,
    )

__version__ = "0.2.0"
__all__ = [
    "AuditEntry", "AuthError", "CheckReport", "DatabaseBusyError", "DeleteReport", "EnrollReport", "FaceDB",
    "FaceResult", "FacedbError", "FailedItem", "FailureRecord", "ImageError", "ImageResult", "ImportReport",
    "IndexCorruptError", "KeyInfo", "Match", "ModelError", "NotFoundError", "PackStatus", "ReindexReport",
    "SearchReport", "Stats", "SubjectDetail", "SubjectInfo", "UnavailableError", "Upload", "VacuumReport",
    "VerifyResult",
    "FaceInfo", "FaceSearchReport", "FacesRemoveReport", "FacesReport", "MergeReport", "MoveReport",
]
#: The single-face results (``facedb.contract.faces``).
_FACE_RESULTS = ("FaceInfo", "FaceSearchReport", "FacesRemoveReport", "FacesReport", "MergeReport", "MoveReport")


def __getattr__(name: str) -> Any:
    if name == "FaceDB":
        from .api import FaceDB

        return FaceDB
    if name in _FACE_RESULTS:
        from .contract import faces

        return getattr(faces, name)
    if name in __all__:  # the result dataclasses (errors and Upload are imported above)
        from .contract import models as results

        return getattr(results, name)
    raise AttributeError(f"module 'facedb' has no attribute {name!r}")
