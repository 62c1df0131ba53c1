"""What a caller may ask of the single-face calls (``facedb faces``, ``facedb merge``,
``facedb search --face-id``), checked here for the CLI, the client and the server alike (see
``facedb.contract.requests``)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .requests import K_MAX, K_MIN, THRESHOLD_MAX, THRESHOLD_MIN, RequestModel

#: Face ids per request at most (the thin client sends longer lists in parts).
MAX_FACE_IDS = 1000


class FacesRemoveBody(RequestModel):
    """``POST /v1/faces/remove``."""

    face_ids: list[int] = Field(min_length=1, max_length=MAX_FACE_IDS, description="The faces to remove.")
    vacuum: bool = Field(False, description="Also erase the bytes from disk now.")


class FacesMoveBody(RequestModel):
    """``POST /v1/faces/move``."""

    face_ids: list[int] = Field(min_length=1, max_length=MAX_FACE_IDS, description="The faces to move.")
    to: str = Field(min_length=1, description="The subject that takes them (it must exist).")


class MergeBody(RequestModel):
    """``POST /v1/merge``."""

    source: str = Field(min_length=1, description="The subject whose faces move; it is deleted.")
    target: str = Field(min_length=1, description="The subject that takes them (it must exist).")


class FaceSearchOptions(RequestModel):
    """``GET /v1/faces/{face_id}/search`` query, ``facedb search --face-id`` options."""

    k: int = Field(3, ge=K_MIN, le=K_MAX, description="Subjects (or faces with by=face) listed.")
    by: Literal["subject", "face"] = Field("subject", description="subject: best per subject; face: nearest faces.")
    threshold: float | None = Field(None, ge=THRESHOLD_MIN, le=THRESHOLD_MAX,
                                    description="Match when cosine distance <= this (default: the pack's).")
    scoring: Literal["template", "best"] = Field(
        "template", description="Subjects by their template (mean of their faces) or by their closest face.")

    def query(self) -> dict[str, str]:
        params = {"k": str(self.k), "by": self.by, "scoring": self.scoring}
        if self.threshold is not None:
            params["threshold"] = repr(float(self.threshold))
        return params

    def keywords(self) -> dict[str, Any]:
        return self.model_dump()
