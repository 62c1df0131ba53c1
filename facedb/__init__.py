"""facedb: who is in this photo? Enroll known faces, search them, offline by default.

    from facedb import FaceDB
    db = FaceDB(home="my-faces")
    db.enroll("alice", ["photos/alice/"])
    report = db.search(["party.jpg"])
"""
from __future__ import annotations

from .errors import (
    DatabaseBusyError,
    FacedbError,
    ImageError,
    IndexCorruptError,
    ModelError,
    NotFoundError,
)
from .results import (
    CheckReport,
    DeleteReport,
    EnrollReport,
    FaceResult,
    FailedItem,
    ImageResult,
    ImportReport,
    Match,
    SearchReport,
    VerifyResult,
)
from .service import FaceDB

__version__ = "0.1.0"
__all__ = [
    "FaceDB", "FacedbError", "ImageError", "NotFoundError", "DatabaseBusyError", "ModelError",
    "IndexCorruptError", "EnrollReport", "ImportReport", "SearchReport", "ImageResult", "FaceResult",
    "Match", "FailedItem", "VerifyResult", "DeleteReport", "CheckReport",
]
