"""What a caller may ask: the options of every call, checked here and only here.

The two edges of facedb check every request with these models: ``FaceDB`` (the Python API, and
so the CLI, which hands its options over as typed) and the server (form fields, JSON bodies,
query strings). The thin client checks nothing itself: it sends what it is given and the server
judges, so a bound such as "k is 1..1000" or "metadata is a JSON object" is written once and
applied once, and the client never imports pydantic (that import alone costs more than a search
through a server). A value that does not fit becomes a ``UsageError`` (exit 2, HTTP 422) through
``parse``, with a message that names the field, what it must be and what was given, and with
the same problems as data (``UsageError.problems``, the ``problems`` of the error JSON), so the
CLI can name its options as the user typed them (``-k``, ``--min-quality``) on every path.

Also the response shapes that are not results of the Python API (``ErrorBody``, ``Health``,
``Whoami``, ``Renamed``, ``CreatedKey``), so ``/openapi.json`` describes every answer.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..analysis.quality import DEFAULT_QUALITY_FLOOR, QualityFloor, format_quality_floor, parse_quality_floor
from ..analysis.video import DEFAULT_SAMPLE_FPS, MAX_SAMPLE_FPS
from ..errors import FacedbError, UsageError
from .discover import DEFAULT_CLUSTER_THRESHOLD, DiscoverReport
from .faces import MAX_FACE_IDS
from .models import SearchReport

M = TypeVar("M", bound=BaseModel)

#: ``threshold`` is a cosine distance: 0 (identical) .. 2 (opposite).
THRESHOLD_MIN, THRESHOLD_MAX = 0.0, 2.0
K_MIN, K_MAX = 1, 1000
ALIGNED_HELP = ("The images are aligned 112x112 face crops (ArcFace five-point template): embed each "
                "whole, without detection.")
#: ``since`` as the CLI accepts it: a count of seconds, minutes, hours or days ago.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class RequestModel(BaseModel):
    """Base of every request model: unknown fields are refused (a typo is not silently ignored)."""

    model_config = ConfigDict(defer_build=True, extra="forbid")


def usage_problems(errors: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(field, what is wrong) for each problem pydantic found: ``("k", "input should be less than
    or equal to 1000, not '5000'")``."""
    out = []
    for err in errors:
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path", "form")]
        field = ".".join(loc) or "request"
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        msg = msg[:1].lower() + msg[1:]
        if err.get("type") == "extra_forbidden":
            out.append((field, "not a field of this call"))
            continue
        given = err.get("input")
        shown = f", not {given!r}" if isinstance(given, (str, int, float)) and not isinstance(given, bool) else ""
        out.append((field, f"{msg}{shown}"[:300]))
    return out


def usage_error(errors: Sequence[Mapping[str, Any]]) -> UsageError:
    """One ``UsageError`` for the problems pydantic found: ``k: input should be less than or
    equal to 1000, not '5000'`` (a front end renames the fields: ``UsageError.naming``)."""
    problems = usage_problems(errors)
    return UsageError("; ".join(f"{f}: {m}" for f, m in problems) or "invalid request", problems)


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    """``model`` from ``data`` (form fields, a JSON body, a query, the Python API's keywords);
    ``UsageError`` when a value does not fit. Empty form values count as absent, as an HTML form
    sends them."""
    clean = {k: v for k, v in data.items() if v is not None and v != ""}
    try:
        return model.model_validate(clean)
    except ValidationError as exc:
        raise usage_error(exc.errors(include_url=False)) from None


class SearchOptions(RequestModel):
    """``POST /v1/search`` form fields, ``FaceDB.search`` keywords, ``facedb search`` options."""

    k: int = Field(3, ge=K_MIN, le=K_MAX, description="Subjects (or faces with by=face) listed per face.")
    by: Literal["subject", "face"] = Field("subject", description="subject: best per subject; face: nearest faces.")
    threshold: float | None = Field(None, ge=THRESHOLD_MIN, le=THRESHOLD_MAX,
                                    description="Match when cosine distance <= this (default: the pack's).")
    reference: bool = Field(False, description="Cross-check with exact scikit-learn neighbours.")
    scoring: Literal["template", "best"] = Field(
        "template", description="Subjects by their template (mean of their faces) or by their closest face.")
    sample_fps: float = Field(DEFAULT_SAMPLE_FPS, gt=0, le=MAX_SAMPLE_FPS,
                              description="Videos: frames analysed per second of video.")
    aligned: bool = Field(False, description=ALIGNED_HELP)

    def keywords(self) -> dict[str, Any]:
        return self.model_dump()


class JobOptions(SearchOptions):
    """``POST /v1/jobs`` form fields: the kind of work, and its options (a search's; a discover's
    ``threshold``, ``cluster_threshold`` and ``sample_fps``)."""

    kind: Literal["search", "discover"] = Field(
        "search", description="The work: search (as POST /v1/search) or discover (as POST /v1/discover).")
    cluster_threshold: float = Field(DEFAULT_CLUSTER_THRESHOLD, gt=0.0, lt=1.0,
                                     description="discover: merge two clusters when the mean cosine distance "
                                                 "between their faces is <= this.")

    def work(self) -> tuple[str, dict[str, Any]]:
        """The ``FaceDB`` method the job calls, and its keywords."""
        if self.kind == "discover":
            return "discover", {"threshold": self.threshold, "cluster_threshold": self.cluster_threshold,
                                "sample_fps": self.sample_fps}
        return "search", self.model_dump(exclude={"kind", "cluster_threshold"})


class EnrollOptions(RequestModel):
    """``POST /v1/subjects/{name}/images`` form fields, ``facedb enroll`` options."""

    multi_face: Literal["resolve", "largest", "skip"] = Field(
        "resolve", description="Photos with several faces: resolve (take the one face consistent with the "
                               "subject's other faces, else refuse as ambiguous_faces), largest, or skip.")
    face: int | None = Field(None, ge=0, description="Take this face of the (one) photo: 0 = the largest.")
    aligned: bool = Field(False, description=ALIGNED_HELP)
    quality_floor: str = Field("default", description="'default', 'off', or name=value pairs: eye_px=12,blur=10.")
    metadata: dict[str, Any] | None = Field(None, description="A JSON object stored with the subject.")

    @field_validator("quality_floor")
    @classmethod
    def _floor(cls, value: str) -> str:
        try:
            parse_quality_floor(value)
        except FacedbError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> Any:
        """As a form field (or a CLI option) metadata is JSON text."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
        if value is not None and not isinstance(value, dict):
            raise ValueError("must be a JSON object, e.g. {\"team\": \"blue\"}")
        return value

    @property
    def floor(self) -> QualityFloor:
        return parse_quality_floor(self.quality_floor)

    @classmethod
    def of(cls, multi_face: str = "resolve", metadata: dict[str, Any] | str | None = None,
           quality_floor: QualityFloor | str = DEFAULT_QUALITY_FLOOR, aligned: bool = False,
           face: int | None = None) -> EnrollOptions:
        """From ``FaceDB.enroll``'s keywords (a floor as a mapping, ``None``, or its text;
        metadata as a dict or JSON text, as the CLI has them)."""
        floor = quality_floor if isinstance(quality_floor, str) else format_quality_floor(quality_floor)
        return parse(cls, {"multi_face": multi_face, "metadata": metadata, "quality_floor": floor,
                           "aligned": aligned, "face": face})


class EnrollClusterBody(RequestModel):
    """``POST /v1/discover/runs/{run}/clusters/{cluster_id}/enroll`` body."""

    name: str = Field(description="The subject the cluster's faces are enrolled as (new or existing).")
    quality_floor: str = Field("default", description="'default', 'off', or name=value pairs: eye_px=12,blur=10.")

    @field_validator("quality_floor")
    @classmethod
    def _floor(cls, value: str) -> str:
        try:
            parse_quality_floor(value)
        except FacedbError as exc:
            raise ValueError(str(exc)) from None
        return value


class DiscoverOptions(RequestModel):
    """``POST /v1/discover`` form fields, ``FaceDB.discover`` keywords, ``facedb discover`` options."""

    threshold: float | None = Field(None, ge=THRESHOLD_MIN, le=THRESHOLD_MAX,
                                    description="Name a face when its distance to a subject is <= this "
                                                "(default: the collection's, as search).")
    cluster_threshold: float = Field(DEFAULT_CLUSTER_THRESHOLD, gt=0.0, lt=1.0,
                                     description="Merge two clusters when the mean cosine distance between "
                                                 "their faces is <= this (lower: fewer merges, more precise).")
    sample_fps: float = Field(DEFAULT_SAMPLE_FPS, gt=0, le=MAX_SAMPLE_FPS,
                              description="Videos: frames analysed per second of video.")

    def keywords(self) -> dict[str, Any]:
        return self.model_dump()


class VerifyOptions(RequestModel):
    """``POST /v1/verify`` form fields (beside the one ``image``)."""

    subject: str = Field(min_length=1, description="The enrolled subject to compare with.")
    threshold: float | None = Field(None, ge=THRESHOLD_MIN, le=THRESHOLD_MAX,
                                    description="Match when cosine distance <= this (default: the pack's).")
    aligned: bool = Field(False, description=ALIGNED_HELP)


class RenameBody(RequestModel):
    """``PATCH /v1/subjects/{name}``: the new name."""

    name: str = Field(min_length=1, description="The subject's new name.")


class KeyCreateBody(RequestModel):
    """``POST /v1/keys``."""

    name: str = Field(min_length=1, max_length=128, description="A name for the key (who or what uses it).")
    scope: Literal["read", "write", "admin"] = Field(description="read < write < admin.")
    collection: str | None = Field(None, min_length=1, max_length=128,
                                   description="Limit the key to this collection: any other collection, and "
                                               "every server-wide call, is refused (403).")


class CollectionCreateBody(RequestModel):
    """``POST /v1/collections``, ``facedb collections create``."""

    name: str = Field(min_length=1, max_length=128, description="The new collection's name.")
    pack: str | None = Field(None, min_length=1, description="Its model pack [default: the database's].")
    threshold: float | None = Field(None, ge=0.0, le=2.0,
                                    description="Its match threshold (cosine distance) [default: the pack's].")


class AuditQuery(RequestModel):
    """``GET /v1/audit`` query, ``facedb audit`` options."""

    since: datetime | None = Field(None, description="ISO date/time (UTC when no zone) or a duration ago: 30m, 12h, 7d.")
    limit: int | None = Field(None, ge=1, description="Only the newest N entries.")

    @field_validator("since", mode="before")
    @classmethod
    def _since(cls, value: Any) -> Any:
        if isinstance(value, datetime) or value is None:
            return value
        text = str(value).strip()
        if text[-1:] in _UNITS and text[:-1].isdigit():
            return datetime.now(timezone.utc) - timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("use an ISO date/time (2026-12-01T08:00) or a duration (30m, 12h, 7d)") from None

    @field_validator("since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)


# -- single faces (facedb faces, facedb merge, facedb search --face-id)

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


    def keywords(self) -> dict[str, Any]:
        return self.model_dump()


# -- responses that are not results of the Python API -------------------------------------------

class ResponseModel(BaseModel):
    """Base of the answers below."""

    model_config = ConfigDict(defer_build=True)


class Problem(ResponseModel):
    """One request value that does not fit."""

    field: str = Field(description="The field, query parameter or form field.")
    message: str = Field(description="What it must be, and what was given.")


class ErrorBody(ResponseModel):
    """Every error answer (the status comes from the one table in ``facedb.errors``)."""

    error: str = Field(description="What went wrong, for a person to read.")
    reason: str = Field(description="A stable code: the kind, or an image failure code such as no_face.")
    status: int = Field(description="The HTTP status.")
    kind: str = Field(description="The error kind (facedb.errors): usage, not_found, unauthorized, ...")
    problems: list[Problem] | None = Field(
        default=None, description="With kind usage: each value that does not fit (absent otherwise).")


class UploadLimits(ResponseModel):
    max_file_bytes: int
    max_request_bytes: int


class Health(ResponseModel):
    """``GET /healthz``."""

    status: str
    pack: str
    faces: int
    threshold: float
    limits: UploadLimits


class Whoami(ResponseModel):
    """``GET /v1/whoami``: the caller's key name and scope (``local``/``admin`` on the unix socket)."""

    name: str
    scope: Literal["read", "write", "admin"]


class Renamed(ResponseModel):
    """``PATCH /v1/subjects/{name}``."""

    old: str
    new: str


class JobInfo(ResponseModel):
    """A background job (``/v1/jobs``): its progress, then its result (or error). A job that has
    ended is forgotten once fetched."""

    id: str = Field(description="The job's id (only the key that submitted it can see it).")
    kind: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    done: int = Field(description="Inputs (photos, videos) answered so far.")
    total: int = Field(description="Inputs in the job.")
    collection: str
    created_at: str
    finished_at: str | None
    result: SearchReport | DiscoverReport | None = Field(
        description="With status done: what the call would have answered (by kind).")
    error: ErrorBody | None = Field(description="With status failed: the error.")


class CreatedKey(ResponseModel):
    """``POST /v1/keys``: the key itself, shown only this once."""

    name: str
    scope: Literal["read", "write", "admin"]
    #: the one collection the key may use (None: every collection)
    collection: str | None = None
    key: str
