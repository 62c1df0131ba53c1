"""The thin client: the CLI's backend when a ``facedb serve`` owns the home, or ``--server URL``.

It offers the verbs of ``FaceDB`` and returns the same result models, so every command
prints and exits the same way through a server as directly. It imports no numpy, OpenCV,
Chroma or SQLAlchemy: files are read here and sent as bytes (in requests within the server's
limits), and the answers are rebuilt from their JSON. It checks no option itself: it sends what
it is given, and the server judges it with the request models of ``facedb.contract.requests`` (a
``UsageError`` comes back with the same problems as ``FaceDB`` finds), so it never imports pydantic,
whose import alone costs more than a search through a server.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from . import trace
from .analysis import files
from .analysis.files import Upload
from .analysis.quality import DEFAULT_QUALITY_FLOOR, QualityFloor, format_quality_floor
from .contract.models import (
    AuditEntry,
    CheckReport,
    CollectionInfo,
    DeleteReport,
    EnrollReport,
    FailedItem,
    FailureRecord,
    ImageResult,
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
from .contract.names import validate_subject_name
from .errors import FacedbError, ImageError, TooLargeError, UnavailableError, error_from
from .store.sockets import server_listening

if TYPE_CHECKING:
    from .contract.backend import By, MultiFace, NameFrom, Scope, Scoring
    from .contract.discover import DiscoverReport, ForgetReport
    from .contract.faces import FaceSearchReport, FacesRemoveReport, FacesReport, MergeReport, MoveReport
    from .contract.lifecycle import BackupReport, RestoreReport
    from .contract.review import ReviewReport

# The results of the less common verbs (review, discover, single faces, backup) are imported by
# the methods that build them: every command starts this module, and building their dataclasses
# up front costs a search through a server a few milliseconds.

#: Images and bytes per request at most (within the server's default limits; a server with
#: lower ones answers 413 and the chunk is split).
CHUNK_FILES = 32
CHUNK_BYTES = 48 * 1024 * 1024
ProgressFn = Callable[[int], None]


def socket_path(home: str | os.PathLike[str] | None) -> Path:
    from .config import SOCKET_NAME, resolve_home

    return resolve_home(home) / SOCKET_NAME


def connect(server: str | None, api_key: str | None, home: str | os.PathLike[str] | None,
            collection: str | None = None) -> Client | None:
    """A client for ``server`` (a URL), or for the server owning ``home``; None: use FaceDB."""
    if server:
        return Client(server, api_key=api_key, collection=collection)
    path = socket_path(home)
    if server_listening(path):
        return Client("http://facedb.local", uds=path, collection=collection)
    return None


#: Calls that are the server's, not one collection's: they keep their path whatever the collection.
SERVER_WIDE = ("/v1/keys", "/v1/audit", "/v1/collections", "/v1/vacuum", "/v1/backup", "/v1/restore")


def collection_path(path: str, collection: str | None) -> str:
    """``path`` as the server routes it for ``collection``: a collection other than ``default``
    puts its calls under ``/v1/collections/{collection}/...``; server-wide calls (keys, audit,
    the collections themselves, vacuum) and unversioned ones (``/healthz``) keep their path."""
    if not collection or collection == "default" or not path.startswith("/v1/"):
        return path
    if any(path == p or path.startswith(p + "/") for p in SERVER_WIDE):
        return path
    return f"/v1/collections/{quote(collection, safe='')}{path[3:]}"


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the home's unix socket."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("facedb.local", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def form_value(value: Any) -> str | None:
    """A keyword of the Python API as a form field or query value (None: not sent). No checks:
    the server's request models judge the value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def form(**values: Any) -> dict[str, str]:
    """Form fields (or a query) from keywords, leaving out the absent ones."""
    out = {}
    for name, value in values.items():
        text = form_value(value)
        if text is not None:
            out[name] = text
    return out


def _quote_header(value: str) -> str:
    """A multipart header parameter, escaped as browsers do (HTML: ``"`` CR LF as %22 %0D %0A)."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def encode_multipart(files: Sequence[tuple[str, Upload]], fields: dict[str, str]) -> tuple[bytes, str]:
    """(body, content type) of a ``multipart/form-data`` request."""
    boundary = secrets.token_hex(16)
    out = bytearray()
    for name, value in fields.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header(name)}"\r\n\r\n'
                .encode()) + value.encode() + b"\r\n"
    for name, up in files:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote_header(name)}"; '
                f'filename="{_quote_header(up.name)}"\r\nContent-Type: application/octet-stream\r\n\r\n'
                .encode("utf-8", "surrogateescape")) + up.data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


class Transport:
    """JSON over HTTP to one server, on the standard library's ``http.client``: importing an HTTP
    client library costs more than the whole request (httpx: about 0.3 s here)."""

    TIMEOUT_S = 3600.0

    def __init__(self, base_url: str, *, api_key: str | None = None, uds: Path | None = None) -> None:
        self._uds = uds
        url = urlsplit(base_url)
        if uds is None and (url.scheme not in ("http", "https") or not url.hostname):
            raise FacedbError(f"--server must be an http:// or https:// URL, not {base_url!r}")
        self._url = url
        self._prefix = url.path.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key and uds is None else {}
        self.where = str(uds) if uds is not None else base_url
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._uds is not None:
                self._conn = _UnixConnection(self._uds, self.TIMEOUT_S)
            elif self._url.scheme == "https":
                self._conn = http.client.HTTPSConnection(self._url.hostname or "", self._url.port, timeout=self.TIMEOUT_S)
            else:
                self._conn = http.client.HTTPConnection(self._url.hostname or "", self._url.port, timeout=self.TIMEOUT_S)
        return self._conn

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                json_body: Any = None, files: Sequence[tuple[str, Upload]] = (),
                data: dict[str, str] | None = None) -> Any:
        """The decoded JSON answer; an error answer is raised as the facedb error it describes."""
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        body: bytes | None = None
        if files or data:
            body, headers["Content-Type"] = encode_multipart(files, data or {})
        elif json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more
            conn = self._connection()
            try:
                with trace.span("client.request"):
                    try:
                        conn.request(method, target, body=body, headers=headers)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # the server may have answered early (413) and closed: read that answer
                    resp = conn.getresponse()
                    raw = resp.read()
                if resp.will_close:
                    self.close()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                self.close()
                if attempt == 2 or not isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                                        ConnectionResetError)):
                    raise UnavailableError(f"cannot reach the facedb server at {self.where}: {exc}") from None
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if resp.status >= 400:
            if isinstance(answer, dict) and "error" in answer:
                raise error_from(answer.get("kind"), str(answer["error"]), answer.get("reason"),
                                 answer.get("problems"))
            raise UnavailableError(f"the facedb server at {self.where} answered HTTP {resp.status}")
        return answer


    def transfer(self, method: str, path: str, *, send: Path | None = None, receive: Any = None,
                 params: dict[str, str] | None = None) -> Any:
        """A request whose body is the file ``send`` (streamed) or whose answer is streamed into
        the binary file ``receive`` (backup and restore); otherwise as ``request``."""
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        headers = dict(self._headers)
        self.close()  # a fresh connection: no retry of a half-sent stream
        conn = self._connection()
        try:
            if send is not None:
                headers["Content-Type"] = "application/zip"
                headers["Content-Length"] = str(send.stat().st_size)
                with open(send, "rb") as body:
                    conn.request(method, target, body=body, headers=headers)
            else:
                conn.request(method, target, headers=headers)
            resp = conn.getresponse()
            if resp.status < 400 and receive is not None:
                while block := resp.read(1 << 20):
                    receive.write(block)
                raw = b""
            else:
                raw = resp.read()
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise UnavailableError(f"cannot reach the facedb server at {self.where}: {exc}") from None
        finally:
            self.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if resp.status >= 400:
            if isinstance(answer, dict) and "error" in answer:
                raise error_from(answer.get("kind"), str(answer["error"]), answer.get("reason"))
            raise UnavailableError(f"the facedb server at {self.where} answered HTTP {resp.status}")
        return answer


class Client:
    """The verbs of ``FaceDB``, over HTTP (a URL with an API key, or the home's unix socket)."""

    def __init__(self, base_url: str, *, api_key: str | None = None, uds: Path | None = None,
                 collection: str | None = None) -> None:
        self.local = uds is not None
        #: the collection the calls use (None or ``default``: the server's default collection)
        self.collection = collection
        self._http = Transport(base_url, api_key=api_key, uds=uds)
        self._health: dict[str, Any] | None = None
        self._pack: str | None = None

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Every call goes through here: the one place a path is put under the collection."""
        return self._http.request(method, collection_path(path, self.collection), **kwargs)

    def health(self) -> dict[str, Any]:
        if self._health is None:
            self._health = self._request("GET", "/healthz")
        return self._health

    @property
    def pack_name(self) -> str:
        if self._pack is None:
            self._pack = str(self.health()["pack"])
        return self._pack

    @property
    def threshold(self) -> float:
        return float(self.health()["threshold"])

    def _chunks(self, uploads: Iterator[tuple[int, Upload | FailedItem]]
                ) -> Iterator[tuple[int, FailedItem] | list[tuple[int, Upload]]]:
        """Group keyed uploads into requests of at most ``CHUNK_FILES`` images and
        ``CHUNK_BYTES`` bytes; a file larger than ``CHUNK_BYTES`` goes alone (the owner's socket
        takes files up to the direct path's limit). Failures (files unreadable here) come out
        alone, as (key, item)."""
        chunk: list[tuple[int, Upload]] = []
        size = 0
        for key, up in uploads:
            if isinstance(up, FailedItem):
                yield key, up
                continue
            if chunk and (len(chunk) >= CHUNK_FILES or size + len(up.data) > CHUNK_BYTES):
                yield chunk
                chunk, size = [], 0
            chunk.append((key, up))
            size += len(up.data)
        if chunk:
            yield chunk

    def _post_images(self, path: str, field: str, chunk: list[tuple[int, Upload]], data: dict[str, str],
                     ) -> Iterator[tuple[list[tuple[int, Upload]], Any] | tuple[int, FailedItem]]:
        """POST a chunk of images; a chunk the server finds too large (413: its limits may be
        lower than ours) is split until each image goes alone, and an image still too large
        fails alone with the server's reason."""
        fields = dict(data)
        if self.local and field == "images" and "/subjects/" in path:  # the files the owner's server may reopen
            fields["source_paths"] = json.dumps([up.path for _, up in chunk])
        if any(up.failure for _, up in chunk):
            fields["read_failures"] = json.dumps([list(up.failure) if up.failure else None for _, up in chunk])
        try:
            yield chunk, self._request("POST", path, files=[(field, up) for _, up in chunk], data=fields)
        except TooLargeError as exc:
            if len(chunk) == 1:
                key, up = chunk[0]
                # The server's message names the file already (``name: over ...``): once is enough.
                msg = str(exc)
                if not msg.startswith(f"{files.display_name(up.name)}: "):
                    msg = f"{files.display_name(up.name)}: {msg}"
                yield key, FailedItem(path=up.name, reason="too_large", message=msg)
                return
            half = len(chunk) // 2
            yield from self._post_images(path, field, chunk[:half], data)
            yield from self._post_images(path, field, chunk[half:], data)

    def _read(self, paths: Sequence[str | os.PathLike[str]]) -> Iterator[Upload | FailedItem]:
        """Each file's bytes (with its absolute path for the owner's server), or why not."""
        for p in paths:
            label = str(p)
            try:
                data = files.read_bytes(p)
            except ImageError as exc:
                yield FailedItem(path=label, reason=exc.reason, message=str(exc))
                continue
            yield Upload(label, data, str(Path(p).absolute()) if self.local else None)

    @staticmethod
    def _multipart(field: str, uploads: Sequence[Upload]) -> list[tuple[str, Upload]]:
        return [(field, up) for up in uploads]

    @staticmethod
    def _upload(image: str | os.PathLike[str] | bytes | Upload) -> Upload:
        if isinstance(image, Upload):
            return image
        if isinstance(image, bytes):
            return Upload("<stdin>", image)
        return Upload(str(image), files.read_bytes(image))

    # -- enrollment ------------------------------------------------------------------------------
    def enroll(self, subject: str, paths: Sequence[str | os.PathLike[str] | Upload], *, multi_face: MultiFace = "resolve",
               metadata: dict[str, Any] | None = None, progress: ProgressFn | None = None,
               quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR, aligned: bool = False,
               face: int | None = None) -> EnrollReport:
        subject = validate_subject_name(subject)  # NFC, as the server stores it
        rep = EnrollReport(subject=subject)
        local = files.iter_image_files([p for p in paths if not isinstance(p, Upload)])
        given = [p for p in paths if isinstance(p, Upload)]

        def inputs() -> Iterator[tuple[int, Upload | FailedItem]]:
            for key, item in enumerate(self._read(local)):
                # A file unreadable here goes to the server all the same, as an empty part with
                # its failure: the server stores it, as enrolling the file directly does.
                yield key, (item if isinstance(item, Upload) else Upload(
                    item.path, b"", str(Path(item.path).absolute()) if self.local else None,
                    failure=(item.reason, item.message)))
            for up in given:
                yield 0, up

        floor = quality_floor if isinstance(quality_floor, str) else format_quality_floor(quality_floor)
        data = form(multi_face=multi_face, quality_floor=floor, metadata=metadata or None, aligned=aligned, face=face)
        path = f"/v1/subjects/{quote(subject, safe='')}/images"
        for chunk in self._chunks(inputs()):
            sent = [chunk] if isinstance(chunk, tuple) else self._post_images(path, "images", chunk, data)
            for done in sent:
                if isinstance(done[0], int):  # (key, FailedItem)
                    rep.failed.append(done[1])
                    if progress:
                        progress(1)
                    continue
                part_chunk, body = done
                self._pack = body["pack"]
                part = EnrollReport.from_dict(body["subjects"][0])
                rep.enrolled += part.enrolled
                rep.duplicates += part.duplicates
                rep.failed.extend(part.failed)
                rep.face_ids.extend(part.face_ids)
                rep.images.extend(part.images)
                if progress:
                    progress(len(part_chunk))
        return rep

    def import_dir(self, root: str | os.PathLike[str], *, name_from: NameFrom = "dir", multi_face: MultiFace = "resolve",
                   progress: ProgressFn | None = None, quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR,
                   aligned: bool = False) -> ImportReport:
        groups, skipped = files.group_subject_files(root, name_from)
        if not groups:  # nothing will reach the server: the options are checked here, as it would
            from .contract.requests import EnrollOptions

            EnrollOptions.of(multi_face, None, quality_floor)
        loose = [FailedItem(path=s.path, reason=s.reason, message=s.message) for s in skipped]
        out = ImportReport(pack=self.pack_name, failed=loose)
        for subject, paths in groups.items():
            try:
                validate_subject_name(subject)
            except FacedbError as exc:
                out.subjects.append(EnrollReport(subject=subject, failed=[
                    FailedItem(path=str(p), reason="bad_subject_name", message=f"{p}: {exc}") for p in paths]))
                continue
            out.subjects.append(self.enroll(subject, paths, multi_face=multi_face, progress=progress,
                                            quality_floor=quality_floor, aligned=aligned))
        return out

    # -- search ------------------------------------------------------------------------------------
    def search(self, images: Sequence[str | os.PathLike[str] | bytes | Upload], *, k: int = 3,
               threshold: float | None = None, by: By = "subject", reference: bool = False,
               scoring: Scoring = "template", sample_fps: float = 4.0, progress: ProgressFn | None = None,
               aligned: bool = False) -> SearchReport:
        results: list[ImageResult | None] = [None] * len(images)

        def inputs() -> Iterator[tuple[int, Upload | FailedItem]]:
            for i, im in enumerate(images):
                try:
                    yield i, self._upload(im)
                except ImageError as exc:
                    yield i, FailedItem(path=str(im), reason=exc.reason, message=str(exc))

        header: dict[str, Any] | None = None
        fields = form(k=k, by=by, reference=reference, scoring=scoring, threshold=threshold, sample_fps=sample_fps)
        for chunk in self._chunks(inputs()):
            for done in ([chunk] if isinstance(chunk, tuple) else self._post_images("/v1/search", "images", chunk, fields)):
                if isinstance(done[0], int):
                    i, bad = done
                    results[i] = ImageResult(image=bad.path, error=bad.message, reason=bad.reason)
                    if progress:
                        progress(1)
                    continue
                part_chunk, body = done
                if progress:
                    progress(len(part_chunk))
                header = {key: body[key] for key in ("pack", "threshold", "by", "k", "reference", "scoring")}
                for (i, _), res in zip(part_chunk, body["results"]):
                    results[i] = ImageResult.from_dict(res)
        if header is None:  # nothing reached the server: the options are checked here, as it would
            from .contract.requests import SearchOptions, parse

            opts = parse(SearchOptions, {"k": k, "threshold": threshold, "by": by, "reference": reference,
                                         "scoring": scoring, "sample_fps": sample_fps})
            header = {"pack": self.pack_name, "threshold": self.threshold if opts.threshold is None else opts.threshold,
                      "by": opts.by, "k": opts.k, "reference": opts.reference,
                      "scoring": opts.scoring if opts.by == "subject" else "best"}
        return SearchReport(results=[r for r in results if r is not None], **header)

    def verify(self, image: str | os.PathLike[str] | bytes | Upload, subject: str, *,
               threshold: float | None = None, aligned: bool = False) -> VerifyResult:
        data = form(subject=subject, threshold=threshold, aligned=aligned)
        up = self._upload(image)
        return VerifyResult.from_dict(self._request("POST", "/v1/verify", files=self._multipart("image", [up]),
                                                    data=data))

    # -- management -------------------------------------------------------------------------------
    def delete(self, subject: str, *, vacuum: bool = False) -> DeleteReport:
        params = {"vacuum": "true"} if vacuum else {}
        return DeleteReport.from_dict(self._request("DELETE", f"/v1/subjects/{quote(subject, safe='')}", params=params))

    def rename(self, old: str, new: str) -> None:
        self._request("PATCH", f"/v1/subjects/{quote(old, safe='')}", json_body={"name": new})

    def subjects(self) -> list[SubjectInfo]:
        return [SubjectInfo.from_dict(d) for d in self._request("GET", "/v1/subjects")]

    def show(self, subject: str) -> SubjectDetail:
        return SubjectDetail.from_dict(self._request("GET", f"/v1/subjects/{quote(subject, safe='')}"))

    def failures(self, subject: str | None = None, reason: str | None = None) -> list[FailureRecord]:
        params = {k: v for k, v in (("subject", subject), ("reason", reason)) if v}
        return [FailureRecord.from_dict(d) for d in self._request("GET", "/v1/failures", params=params)]

    def stats(self) -> Stats:
        return Stats.from_dict(self._request("GET", "/v1/stats"))

    def packs(self) -> list[PackStatus]:
        return [PackStatus.from_dict(d) for d in self._request("GET", "/v1/packs")]

    def check(self, repair: bool = False) -> CheckReport:
        if repair:
            return CheckReport.from_dict(self._request("POST", "/v1/check/repair"))
        return CheckReport.from_dict(self._request("GET", "/v1/check"))

    def vacuum(self) -> VacuumReport:
        return VacuumReport.from_dict(self._request("POST", "/v1/vacuum"))

    def reindex(self, progress: ProgressFn | None = None) -> ReindexReport:
        rep = ReindexReport.from_dict(self._request("POST", "/v1/reindex"))
        if progress:
            progress(rep.reindexed + len(rep.failed))
        return rep

    # -- keys and audit -----------------------------------------------------------------------------
    def create_key(self, name: str, scope: Scope, collection: str | None = None) -> KeyInfo:
        body = {k: v for k, v in (("name", name), ("scope", scope), ("collection", collection)) if v is not None}
        return KeyInfo.from_dict(self._request("POST", "/v1/keys", json_body=body))

    def keys(self) -> list[KeyInfo]:
        return [KeyInfo.from_dict(d) for d in self._request("GET", "/v1/keys")]

    def revoke_key(self, name: str) -> KeyInfo:
        return KeyInfo.from_dict(self._request("DELETE", f"/v1/keys/{quote(name, safe='')}"))

    def audit(self, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        params = form(since=since, limit=limit)
        return [AuditEntry.from_dict(d) for d in self._request("GET", "/v1/audit", params=params)]

    # -- collections ---------------------------------------------------------------------------------
    def collections(self) -> list[CollectionInfo]:
        return [CollectionInfo.from_dict(d) for d in self._request("GET", "/v1/collections")]

    def create_collection(self, name: str, pack: str | None = None, threshold: float | None = None) -> CollectionInfo:
        body = {k: v for k, v in (("name", name), ("pack", pack), ("threshold", threshold)) if v is not None}
        return CollectionInfo.from_dict(self._request("POST", "/v1/collections", json_body=body))

    def delete_collection(self, name: str) -> CollectionInfo:
        return CollectionInfo.from_dict(self._request("DELETE", f"/v1/collections/{quote(name, safe='')}"))

    # -- review ---------------------------------------------------------------------------------------
    def review(self) -> ReviewReport:
        from .contract.review import ReviewReport

        return ReviewReport.from_dict(self._request("GET", "/v1/review"))

    # -- discovery --------------------------------------------------------------------------------
    def discover(self, paths: Sequence[str | os.PathLike[str] | bytes | Upload], *, threshold: float | None = None,
                 cluster_threshold: float = 0.5, save: str | None = None,
                 sample_fps: float = 4.0, progress: ProgressFn | None = None) -> DiscoverReport:
        """``FaceDB.discover`` on the server: every photo in ONE request (faces of different
        requests could not be clustered together), so the server's request limit bounds a run;
        folders are walked here as ``import`` walks them, files that cannot be read fail here.
        With ``save`` it goes to ``/v1/discover/runs`` (write scope: the run is stored)."""
        from .contract.discover import DiscoverReport, validate_run_name

        if save is not None:
            validate_run_name(save)
        ups: list[Upload] = []
        failed: list[FailedItem] = []
        for p in paths:
            if isinstance(p, (bytes, Upload)):
                ups.append(self._upload(p))
                continue
            for item in self._read(files.iter_image_files([p])):
                if isinstance(item, FailedItem):
                    failed.append(item)
                else:
                    ups.append(item)
        if not ups and save is None:  # nothing will reach the server: the options are checked here, as it would
            from .contract.requests import DiscoverOptions, parse

            opts = parse(DiscoverOptions, {"threshold": threshold, "cluster_threshold": cluster_threshold,
                                           "sample_fps": sample_fps})
            return DiscoverReport(pack=self.pack_name, threshold=self.threshold if opts.threshold is None
                                  else opts.threshold, cluster_threshold=opts.cluster_threshold, failed=failed)
        fields = form(threshold=threshold, cluster_threshold=cluster_threshold, sample_fps=sample_fps)
        if save is not None:
            fields["name"] = save
        if self.local:  # the files the owner's server may reopen (enroll-cluster)
            fields["source_paths"] = json.dumps([up.path for up in ups])
        rep = DiscoverReport.from_dict(self._request("POST", "/v1/discover/runs" if save is not None else "/v1/discover",
                                                     files=self._multipart("images", ups), data=fields))
        rep.failed = failed + rep.failed
        if progress:
            progress(len(ups) + len(failed))
        return rep

    def forget_run(self, run: str) -> ForgetReport:
        from .contract.discover import ForgetReport

        return ForgetReport.from_dict(self._request("DELETE", f"/v1/discover/runs/{quote(run, safe='')}"))

    def enroll_cluster(self, run: str, cluster_id: int, name: str, *,
                       quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR) -> EnrollReport:
        floor = quality_floor if isinstance(quality_floor, str) else format_quality_floor(quality_floor)
        body = {"name": name, "quality_floor": floor}
        return EnrollReport.from_dict(self._request(
            "POST", f"/v1/discover/runs/{quote(run, safe='')}/clusters/{int(cluster_id)}/enroll", json_body=body))
    # -- single faces ---------------------------------------------------------------------------------
    def faces(self, subject: str) -> FacesReport:
        from .contract.faces import FacesReport

        return FacesReport.from_dict(self._request("GET", "/v1/faces", params={"subject": subject}))

    def remove_faces(self, face_ids: Sequence[int], *, vacuum: bool = False) -> FacesRemoveReport:
        """In parts of ``MAX_FACE_IDS`` (each part is one write), the vacuum once, after the last."""
        from .contract.faces import MAX_FACE_IDS, FacesRemoveReport

        ids = list(dict.fromkeys(int(f) for f in face_ids))
        parts = [ids[i:i + MAX_FACE_IDS] for i in range(0, len(ids), MAX_FACE_IDS)] or [[]]
        total: FacesRemoveReport | None = None
        for n, part in enumerate(parts, 1):
            body = {"face_ids": part, "vacuum": vacuum and n == len(parts)}
            rep = FacesRemoveReport.from_dict(self._request("POST", "/v1/faces/remove", json_body=body))
            if total is None:
                total = rep
            else:
                total.face_ids += rep.face_ids
                total.faces += rep.faces
                total.images += rep.images
                for name, count in rep.subjects.items():
                    total.subjects[name] = total.subjects.get(name, 0) + count
                total.vacuum = rep.vacuum
        assert total is not None
        return total

    def move_faces(self, face_ids: Sequence[int], to: str) -> MoveReport:
        from .contract.faces import MAX_FACE_IDS, MoveReport

        ids = list(dict.fromkeys(int(f) for f in face_ids))
        parts = [ids[i:i + MAX_FACE_IDS] for i in range(0, len(ids), MAX_FACE_IDS)] or [[]]
        total: MoveReport | None = None
        for part in parts:
            rep = MoveReport.from_dict(self._request("POST", "/v1/faces/move", json_body={"face_ids": part, "to": to}))
            if total is None:
                total = rep
            else:
                total.moved = sorted(total.moved + rep.moved)
                total.already = sorted(total.already + rep.already)
                total.images += rep.images
                for name, count in rep.subjects.items():
                    total.subjects[name] = total.subjects.get(name, 0) + count
        assert total is not None
        return total

    def merge(self, source: str, target: str) -> MergeReport:
        from .contract.faces import MergeReport

        return MergeReport.from_dict(self._request("POST", "/v1/merge", json_body={"source": source, "target": target}))

    def search_face(self, face_id: int, *, k: int = 3, threshold: float | None = None, by: By = "subject",
                    scoring: Scoring = "template") -> FaceSearchReport:
        from .contract.faces import FaceSearchReport

        return FaceSearchReport.from_dict(self._request("GET", f"/v1/faces/{int(face_id)}/search",
                                                        params=form(k=k, threshold=threshold, by=by, scoring=scoring)))
    # -- backup and restore --------------------------------------------------------------------------
    def backup(self, path: str | os.PathLike[str]) -> BackupReport:
        """The server writes the snapshot as it reads it; it lands in ``path`` (0600) only when
        complete (a zip whose manifest reads back)."""
        import time
        import zipfile

        from .contract.lifecycle import BackupReport

        t0 = time.perf_counter()
        target = Path(path).expanduser().absolute()
        if target.is_dir() or not target.parent.is_dir():
            raise FacedbError(f"{target}: give a file name in an existing directory")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                self._http.transfer("GET", collection_path("/v1/backup", self.collection), receive=out)
            try:
                with zipfile.ZipFile(tmp) as zf:
                    manifest = json.loads(zf.read("manifest.json"))
            except (zipfile.BadZipFile, KeyError, ValueError):
                raise UnavailableError(f"the snapshot the server at {self._http.where} sent is incomplete "
                                       "(it failed while writing it): try again") from None
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return BackupReport(path=str(target), bytes=target.stat().st_size,
                            format_version=int(manifest["format_version"]),
                            facedb_version=str(manifest["facedb_version"]),
                            schema_revision=str(manifest["schema_revision"]), created_at=str(manifest["created_at"]),
                            faces_by_pack=manifest.get("faces_by_pack", {}), rows=manifest["tables"],
                            seconds=round(time.perf_counter() - t0, 3),
                            index_shipped=bool((manifest.get("index") or {}).get("shipped")),
                            index_note=(manifest.get("index") or {}).get("note"))

    def restore(self, path: str | os.PathLike[str], *, reindex_from_images: bool = False) -> RestoreReport:
        """Send the snapshot to the server, which restores it into its (empty) database."""
        from .contract.lifecycle import RestoreReport

        source = Path(path).expanduser()
        if not source.is_file():
            raise FacedbError(f"{source}: no such file")
        params = {"reindex_from_images": "true"} if reindex_from_images else None
        return RestoreReport.from_dict(self._http.transfer("POST", collection_path("/v1/restore", self.collection),
                                                           send=source, params=params))
