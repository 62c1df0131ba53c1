"""Reading a multipart upload as it streams in, in memory only, within the server's limits.

Starlette's own form parser spools files over 1 MB to a temporary file on disk; face photos
are biometric data, so this parser (on python-multipart) keeps every part in memory and
refuses the request (413) the moment a file or the whole body passes its limit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..analysis.files import display_name
from ..errors import TooLargeError, UsageError

#: A text field (k, by, metadata...) is never longer than this.
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 10_000


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_file_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 64 * 1024 * 1024


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
    """Parse ``multipart/form-data``; 413 past a limit, 422 for anything malformed."""
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
