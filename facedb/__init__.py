"""facedb: who is in this photo? Enroll known faces, search them, offline by default.

    from facedb import FaceDB
    db = FaceDB(home="my-faces")
    db.enroll("alice", ["photos/alice/"])
    report = db.search(["party.jpg"])

Heavy modules (SQLAlchemy, Chroma, OpenCV) load on first use, so ``import facedb`` is cheap.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    DatabaseBusyError,
    FacedbError,
    ImageError,
    IndexCorruptError,
    ModelError,
    NotFoundError,
)

if TYPE_CHECKING:
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
_RESULTS = {"CheckReport", "DeleteReport", "EnrollReport", "FaceResult", "FailedItem", "ImageResult",
            "ImportReport", "Match", "SearchReport", "VerifyResult"}
__all__ = ["FaceDB", "FacedbError", "ImageError", "NotFoundError", "DatabaseBusyError", "ModelError",
           "IndexCorruptError", *sorted(_RESULTS)]


def __getattr__(name: str) -> Any:
    if name == "FaceDB":
        from .service import FaceDB

        return FaceDB
    if name in _RESULTS:
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module 'facedb' has no attribute {name!r}")
