"""Reading a multipart upload as it streams in, in memory only, within the server's limits.

Starlette's own form parser spools files over 1 MB to a temporary file on disk; face photos
are biometric data, so this parser (on python-multipart) keeps every part in memory and
refuses the request (413) the moment a file or the whole body passes its limit.

The limits depend on the socket the request arrived on (``limits_for``): over TCP, the
server's ``--max-file-mb`` / ``--max-request-mb``; on the home's unix socket (the owner, who
can read the same file directly), the direct path's own limits, so a command answers the same
with and without a server.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..analysis.files import MAX_FILE_BYTES, Upload, display_name
from ..errors import TooLargeError, UsageError
from .guard import is_local

#: A text field (k, by, metadata...) is never longer than this.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_file_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024


#: What the owner's client sends in one request at most: its chunks (``client.CHUNK_BYTES``) or
#: one file up to the direct limit, plus the text fields and the multipart framing.
OWNER_FRAMING_BYTES = 8 * 1024 * 1024
#: The owner's socket: the limits of the direct path (``files.MAX_FILE_BYTES``; the pixel limits
#: of ``imaging.decode`` apply on every path alike).
OWNER_LIMITS = Limits(max_file_bytes=MAX_FILE_BYTES, max_request_bytes=MAX_FILE_BYTES + OWNER_FRAMING_BYTES)


def limits_for(request: Request, configured: Limits) -> Limits:
    """The limits for this request: ``OWNER_LIMITS`` on the home's unix socket, else the
    server's configured ones.

    Decided by the socket the request arrived on (uvicorn's server address, as
    ``guard.is_local`` reads it), never by anything the request says: a TCP client cannot claim
    to be the owner. A server configured above the direct limits keeps its own on the socket too.
    """
    if not is_local(request):
        return configured
    return Limits(max(configured.max_file_bytes, OWNER_LIMITS.max_file_bytes),
                  max(configured.max_request_bytes, OWNER_LIMITS.max_request_bytes))


#: The reasons a client may report for a file it could not read (``analysis.files``' codes, and
#: ``too_large`` for a file over the client's own limit).
READ_FAILURES = ("not_found", "unreadable", "is_directory", "not_a_file", "empty_file", "too_large")
MAX_FAILURE_MESSAGE = 4096


def per_image(field: str, n: int, name: str, entry: str) -> list[Any]:
    """A form field that is a JSON list with one ``entry`` per uploaded image (``source_paths``,
    ``read_failures``), or a usage error naming the field."""
    try:
        given = json.loads(field)
    except json.JSONDecodeError:
        raise UsageError(f"{name} must be a JSON list") from None
    if not isinstance(given, list) or len(given) != n:
        raise UsageError(f"{name} must have one entry ({entry}) per image")
    return given


def with_read_failures(images: list[Upload], field: str | None) -> list[Upload]:
    """``images`` with the files the client could not read marked as such.

    ``field`` (the form field ``read_failures``) is a JSON list aligned with ``images``: null,
    or ``[reason, message]`` for a file the client could not read, sent as an empty part in its
    place. Enrolling it stores that failure, as the direct path stores a file it cannot read,
    so ``failures`` and ``stats`` answer the same on every path. Only reading codes are taken,
    and the message is shown as ``display_name`` shows a file name (one printable line).
    """
    if not field:
        return images
    given = per_image(field, len(images), "read_failures", "null or [reason, message]")
    out: list[Upload] = []
    for up, failure in zip(images, given):
        if failure is None:
            out.append(up)
            continue
        if (not isinstance(failure, list) or len(failure) != 2 or failure[0] not in READ_FAILURES
                or not isinstance(failure[1], str) or up.data):
            raise UsageError(f"read_failures: each entry is null or [reason, message] for an empty part, "
                             f"with a reason among {', '.join(READ_FAILURES)}")
        out.append(dataclasses.replace(up, failure=(failure[0], display_name(failure[1])[:MAX_FAILURE_MESSAGE])))
    return out


#: Fields whose parts are always images, with or without a file name.
FILE_FIELDS = ("images", "image")


@dataclass
class Part:
    name: str
    filename: str | None
    data: bytearray = field(default_factory=bytearray)

    @property
    def is_file(self) -> bool:
        return self.filename is not None or self.name in FILE_FIELDS


@dataclass
class Form:
    """A parsed multipart body: file parts by field name (in order) and text fields."""

    files: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        return self.fields.get(name)


def _mb(n: int) -> str:
    """Bytes in MiB, the unit of ``serve --max-file-mb`` / ``--max-request-mb`` (1 MiB = 1024 * 1024 bytes)."""
    return f"{n / (1024 * 1024):.4g} MiB"


async def read_form(request: Request, limits: Limits) -> Form:
    """Parse ``multipart/form-data``; 413 past a limit (``limits``, or the owner's on the home's
    socket: ``limits_for``), 422 for anything malformed."""
    limits = limits_for(request, limits)
    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise UsageError("send the images as multipart/form-data (curl -F 'images=@photo.jpg')")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limits.max_request_bytes:
        raise TooLargeError(f"the request is {_mb(int(length))}; this server accepts at most "
                            f"{_mb(limits.max_request_bytes)} per request")
    parts: list[Part] = []
    header: dict[str, bytearray] = {"field": bytearray(), "value": bytearray()}
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise UsageError(f"more than {MAX_PARTS} parts in one request")
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        headers[bytes(header["field"]).lower()] = bytes(header["value"])
        header["field"].clear()
        header["value"].clear()

    def on_headers_finished() -> None:
        _, disp = parse_options_header(headers.get(b"content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = disp.get(b"filename")
        parts.append(Part(name, None if filename is None else filename.decode("utf-8", "replace")))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        part.data += data[start:end]
        if part.is_file and len(part.data) > limits.max_file_bytes:
            raise TooLargeError(f"{display_name(part.filename or part.name)}: over this server's limit of "
                                f"{_mb(limits.max_file_bytes)} per file")
        if not part.is_file and len(part.data) > MAX_FIELD_BYTES:
            raise TooLargeError(f"form field {part.name!r} is over {MAX_FIELD_BYTES} bytes")

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limits.max_request_bytes:
                raise TooLargeError(f"the request is over this server's limit of {_mb(limits.max_request_bytes)}")
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise UsageError(f"malformed multipart body ({exc})") from None
    form = Form()
    for part in parts:
        if part.is_file:
            files = form.files.setdefault(part.name, [])
            label = display_name(part.filename or "")[:1024] or f"<{part.name} {len(files) + 1}>"
            files.append((label, bytes(part.data)))
        else:
            try:
                form.fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"form field {part.name!r} is not UTF-8 text") from None
    return form
