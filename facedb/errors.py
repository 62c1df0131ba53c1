"""Exceptions a user can act on, and the one table that maps each to a CLI exit code and an
HTTP status.

Every facedb error has a stable ``kind`` (a short code): the CLI prints the message on one line
and exits with ``exit_code``; the server answers ``{"error": message, "reason": reason,
"status": http_status}`` (``reason`` is the kind, or an image failure code such as ``no_face``);
the thin client turns that JSON back into the same exception, so both paths exit alike.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence


class FacedbError(Exception):
    """Base class: the message is meant to be shown to a person as is."""

    kind = "error"
    exit_code = 1
    http_status = 400

    @property
    def reason(self) -> str:
        return self.kind


class UsageError(FacedbError):
    """A request that is malformed (bad option value, missing field)."""

    kind = "usage"
    exit_code = 2
    http_status = 422

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        #: (field, what is wrong with its value) per value that does not fit, when a request model
        #: said so: a front end names each field as its user typed it (``naming``)
        self.problems = [(str(f), str(m)) for f, m in problems]

    def naming(self, names: Mapping[str, str]) -> str:
        """The message with each field named as ``names`` says (the CLI: ``k`` is ``-k``)."""
        if not self.problems:
            return str(self)
        return "; ".join(f"{names.get(f, f)}: {m}" for f, m in self.problems)


class ImageError(FacedbError):
    """One input image could not be used; ``reason`` is a short stable code (``no_face``...)."""

    kind = "image"
    http_status = 422

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


class NotFoundError(FacedbError):
    """A subject (or face, key) that was asked for does not exist."""

    kind = "not_found"
    exit_code = 4
    http_status = 404


class AlreadyExistsError(FacedbError):
    """A name that must be unique is taken (rename, key names)."""

    kind = "already_exists"
    http_status = 409


class DatabaseBusyError(FacedbError):
    """Another facedb process holds the database and did not let go in time."""

    kind = "busy"
    exit_code = 5
    http_status = 503


class OverloadedError(DatabaseBusyError):
    """The server's queue is full: try again after ``retry_after`` seconds."""

    kind = "overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServedElsewhere(DatabaseBusyError):
    """A ``facedb serve`` took the home while this process waited for it: ask the server."""

    kind = "served"


class ModelError(FacedbError):
    """A model pack is missing, malformed, or does not match the database."""

    kind = "model"
    exit_code = 6
    http_status = 409


class DependencyError(ModelError):
    """A required library is missing or has an unsupported version."""

    kind = "dependency"
    http_status = 503


class IndexCorruptError(FacedbError):
    """The search index cannot be opened or disagrees with its records."""

    kind = "index_inconsistent"
    exit_code = 7
    http_status = 503


class UnavailableError(FacedbError):
    """A store or the server cannot be reached (PostgreSQL, a Chroma server, facedb serve)."""

    kind = "unavailable"
    exit_code = 8
    http_status = 503


class AuthError(FacedbError):
    """No API key, an unknown or revoked one."""

    kind = "unauthorized"
    exit_code = 9
    http_status = 401


class ForbiddenError(AuthError):
    """The API key is valid but its scope does not allow this call."""

    kind = "forbidden"
    http_status = 403


class TooLargeError(FacedbError):
    """An upload over the server's per-file or per-request limit."""

    kind = "too_large"
    http_status = 413


#: Every error kind, in the order the docs list them.
ERRORS: tuple[type[FacedbError], ...] = (
    FacedbError, UsageError, ImageError, NotFoundError, AlreadyExistsError, DatabaseBusyError,
    OverloadedError, ServedElsewhere, ModelError, DependencyError, IndexCorruptError, UnavailableError, AuthError,
    ForbiddenError, TooLargeError,
)
_BY_KIND = {cls.kind: cls for cls in ERRORS}


def error_table() -> list[dict[str, object]]:
    """Rows of kind, exception, exit code, HTTP status (the README's table is built from it)."""
    return [{"kind": c.kind, "exception": c.__name__, "exit_code": c.exit_code, "http_status": c.http_status,
             "meaning": (c.__doc__ or "").strip().splitlines()[0]} for c in ERRORS]


def error_from(kind: str | None, message: str, reason: str | None = None,
               problems: Sequence[Mapping[str, str]] | None = None) -> FacedbError:
    """Rebuild the exception a server reported (``kind`` from its JSON), for the thin client."""
    cls = _BY_KIND.get(kind or "", FacedbError)
    if cls is UsageError:
        return UsageError(message, [(p.get("field", ""), p.get("message", "")) for p in problems or ()])
    if cls is ImageError:
        return ImageError(reason or "image", message)
    if cls is OverloadedError:
        return OverloadedError(message)
    return cls(message)
