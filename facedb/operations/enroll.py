"""Enrollment: files or uploads -> analysis (the worker pool) -> batched crash-safe writes.

Files are read and hashed lazily while the workers detect and embed; duplicates (same SHA-256)
are skipped before analysis; results are stored in write batches, each one short exclusive
write (SQL, Chroma, SQL: see ``facedb.store.journal``), so searches interleave with a long import.
"""
from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import trace
from ..analysis import files
from ..analysis.files import Upload
from ..analysis.packs import ActivePack
from ..analysis.pipeline import Analysis, Analyzer
from ..analysis.quality import DEFAULT_QUALITY_FLOOR, QualityFloor
from ..catalog.faces import StoredItem
from ..contract.models import EnrollReport, FailedItem, ImageFaces, ImportReport
from ..contract.names import normalize_subject_name, validate_subject_name
from ..errors import FacedbError, ImageError, UsageError
from ..store.stores import Store
from .resolve import Pick, picked, resolve_held

MultiFace = Literal["resolve", "largest", "skip"]
MULTI_FACE_POLICIES: tuple[MultiFace, ...] = ("resolve", "largest", "skip")
#: The default: a photo with several faces is resolved against the subject's other faces (see
#: ``facedb.operations.resolve``), never guessed.
DEFAULT_MULTI_FACE: MultiFace = "resolve"
#: Analysed images stored per write (one SQL transaction + one Chroma upsert), and the longest
#: wait before a smaller batch is stored anyway (so that progress becomes durable).
WRITE_BATCH = 256
ENV_WRITE_BATCH = "FACEDB_WRITE_BATCH"
WRITE_EVERY_S = 20.0
#: Files read and hashed (and checked against the catalog) at a time.
READ_BLOCK = 64
ProgressFn = Callable[[int], None]


def write_batch_size(explicit: int | None) -> int:
    """The write batch: ``explicit``, else ``FACEDB_WRITE_BATCH``, else ``WRITE_BATCH``."""
    if explicit is None:
        raw = os.environ.get(ENV_WRITE_BATCH, "")
        try:
            explicit = int(raw) if raw else WRITE_BATCH
        except ValueError:
            raise FacedbError(f"{ENV_WRITE_BATCH}={raw!r} is not a number of images") from None
    if explicit < 1:
        raise FacedbError(f"the write batch must be at least 1 image, not {explicit}")
    return explicit


@dataclass(frozen=True)
class _Item:
    """One input: a file to read, or bytes already here (an upload)."""

    subject: str
    label: str
    path: Path | None = None
    data: bytes | None = None
    source: str = "file"
    #: (reason, message): a file the client could not read (see ``Upload.failure``).
    failure: tuple[str, str] | None = None

    @property
    def stored_path(self) -> str:
        return str(self.path.absolute()) if self.path is not None else self.label

    def read(self) -> bytes:
        if self.failure is not None:
            raise ImageError(*self.failure)
        return self.data if self.data is not None else files.read_bytes(self.path)  # type: ignore[arg-type]


def upload_item(subject: str, up: Upload) -> _Item:
    if up.path:
        return _Item(subject, up.name, data=up.data, source="file", path=Path(up.path), failure=up.failure)
    return _Item(subject, up.name, data=up.data, source="upload", failure=up.failure)


class Ingestor:
    def __init__(self, store: Store, pack: ActivePack, analyzer: Analyzer, write_batch: int) -> None:
        self.store = store
        self.pack = pack
        self.analyzer = analyzer
        self.write_batch = write_batch

    def enroll(self, subject: str, inputs: Sequence[str | os.PathLike[str] | Upload], *, multi_face: MultiFace,
               metadata: dict[str, Any] | None, progress: ProgressFn | None,
               quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR, aligned: bool = False,
               face: int | None = None) -> EnrollReport:
        subject = validate_subject_name(subject)  # NFC: one person however the name was typed
        paths = [p for p in inputs if not isinstance(p, Upload)]
        items = [_Item(subject, str(p), path=p) for p in files.iter_image_files(paths)]
        items += [upload_item(subject, up) for up in inputs if isinstance(up, Upload)]
        if face is not None and len(items) != 1:
            raise UsageError(f"choosing a face (--face {face}) needs exactly one photo, not {len(items)}")
        report = self.ingest(items, multi_face, {subject: metadata} if metadata else {}, progress, quality_floor,
                             aligned=aligned, face=face)
        return report.subjects[0] if report.subjects else EnrollReport(subject=subject)

    def import_dir(self, root: str | os.PathLike[str], *, name_from: Literal["dir", "prefix"], multi_face: MultiFace,
                   progress: ProgressFn | None, quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR,
                   aligned: bool = False) -> ImportReport:
        groups, skipped = files.group_subject_files(root, name_from)
        # NFC: macOS folder names are NFD
        items = [_Item(normalize_subject_name(subject), str(p), path=p) for subject, paths in groups.items() for p in paths]
        bad = [FailedItem(path=s.path, reason=s.reason, message=s.message) for s in skipped]
        report = self.ingest(items, multi_face, {}, progress, quality_floor, aligned=aligned)
        report.failed.extend(bad)
        return report

    @trace.traced("ingest.total")
    def ingest(self, items: list[_Item], multi_face: MultiFace, metadata: dict[str, dict[str, Any]],
               progress: ProgressFn | None, quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR, *,
               aligned: bool = False, face: int | None = None) -> ImportReport:
        """Analyse and store ``items``. With ``multi_face="resolve"`` a photo with several faces is
        held back until every single-face photo of the run is stored, then resolved against its
        subject's faces (``operations.resolve``): so the outcome does not depend on the order the
        files arrive in. ``face``: take this face (0 = the largest) of every photo."""
        if multi_face not in MULTI_FACE_POLICIES:
            raise FacedbError(f"multi_face must be one of {MULTI_FACE_POLICIES}, not {multi_face!r}")
        if face is not None and face < 0:
            raise UsageError(f"the face to take is counted from 0 (the largest), not {face}")
        info = self.pack.info
        reports: dict[str, EnrollReport] = {}
        valid: list[_Item] = []
        for it in items:
            rep = reports.setdefault(it.subject, EnrollReport(subject=it.subject))
            try:
                validate_subject_name(it.subject)
            except FacedbError as exc:
                rep.failed.append(FailedItem(path=it.label, reason="bad_subject_name", message=f"{it.label}: {exc}"))
                continue
            valid.append(it)
        with self.store.writing(open_index=False):
            self.pack.contract(register=True)
        todo: dict[int, tuple[_Item, str, int]] = {}
        pending: list[tuple[_Item, str, int, Analysis]] = []
        held: list[tuple[_Item, str, int, Analysis]] = []
        picks: dict[int, Pick] = {}
        fresh = self._fresh_items(valid, reports, todo, pending, progress)
        last_write = time.monotonic()
        # Enrollment keeps one face per photo. With "largest" or "skip" only the largest is
        # embedded (the others are counted); resolving or choosing a face needs them all.
        max_faces = 1 if multi_face != "resolve" and face is None else None
        for res in self.analyzer.stream(fresh, len(valid), max_faces=max_faces, aligned=aligned):
            it, digest, size = todo.pop(res.key)
            if face is not None:
                picks[res.key] = picked(it.label, res, face)
            elif multi_face == "resolve" and not res.reason and len(res.faces) > 1:
                held.append((it, digest, size, res))  # resolved once the subject's single faces are in
                continue
            pending.append((it, digest, size, res))
            if len(pending) >= self.write_batch or (time.monotonic() - last_write > WRITE_EVERY_S
                                                    and len(pending) >= self.write_batch // 8):
                self._write_pending(pending, multi_face, metadata, reports, progress, quality_floor, picks)
                last_write = time.monotonic()
        self._write_pending(pending, multi_face, metadata, reports, progress, quality_floor, picks)
        if held:
            picks.update(resolve_held(self.store.catalog, info.name, self.pack.threshold,
                                      [(it.subject, it.label, res) for it, _, _, res in held]))
            for start in range(0, len(held), self.write_batch):
                pending.extend(held[start:start + self.write_batch])
                self._write_pending(pending, multi_face, metadata, reports, progress, quality_floor, picks)
        return ImportReport(pack=info.name, subjects=list(reports.values()))

    def _fresh_items(self, valid: list[_Item], reports: dict[str, EnrollReport], todo: dict[int, tuple[_Item, str, int]],
                     pending: list[tuple[_Item, str, int, Analysis]], progress: ProgressFn | None
                     ) -> Iterator[tuple[int, bytes, str]]:
        """Read, hash and de-duplicate the inputs lazily, yielding only images to analyse.

        Unreadable files go straight to ``pending`` (stored as failures); duplicates of an
        enrolled image (or of an earlier input of this run) are counted and skipped."""
        seen: dict[str, str] = {}
        for start in range(0, len(valid), READ_BLOCK):
            block: list[tuple[int, _Item, bytes, str]] = []
            for i, it in enumerate(valid[start:start + READ_BLOCK], start):
                try:
                    data = it.read()
                except ImageError as exc:
                    pending.append((it, "", 0, Analysis(i, [], reason=exc.reason, message=str(exc))))
                    continue
                block.append((i, it, data, hashlib.sha256(data).hexdigest()))
            known = self.store.catalog.known_sha256([d for *_, d in block])
            skipped = 0
            for i, it, data, digest in block:
                owner = known.get(digest) or seen.get(digest)
                if owner is not None:
                    _count_duplicate(reports[it.subject], it, owner)
                    skipped += 1
                    continue
                seen[digest] = it.subject
                todo[i] = (it, digest, len(data))
                yield i, data, it.label
            if progress and skipped:
                progress(skipped)

    def _write_pending(self, pending: list[tuple[_Item, str, int, Analysis]], multi_face: MultiFace,
                       metadata: dict[str, dict[str, Any]], reports: dict[str, EnrollReport],
                       progress: ProgressFn | None, quality_floor: QualityFloor, picks: dict[int, Pick]) -> None:
        """Store and empty ``pending`` (a no-op when it is empty)."""
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        with trace.span("ingest.write_batch", images=len(batch)):
            self._write_batch(batch, multi_face, metadata, reports, quality_floor, picks)
        if progress:
            progress(len(batch))

    def _write_batch(self, batch: list[tuple[_Item, str, int, Analysis]], multi_face: MultiFace,
                     metadata: dict[str, dict[str, Any]], reports: dict[str, EnrollReport],
                     quality_floor: QualityFloor, picks: dict[int, Pick]) -> None:
        """Store one batch: SQL (not yet indexed) -> Chroma -> SQL indexed, under the write lock."""
        from ..store.faults import crash_point

        info = self.pack.info
        chosen = [_choice(res, multi_face, picks.get(res.key)) for _, _, _, res in batch]
        rows = [_stored_item(it, digest, size, res, pick, quality_floor)
                for (it, digest, size, res), pick in zip(batch, chosen)]
        with self.store.writing() as index:
            crash_point("enroll.before_sql")
            try:
                new_faces = self.store.catalog.store_batch(rows, info.name, metadata)
                crash_point("enroll.after_sql")
                self.store.journal.index_new_faces(index, info, new_faces)
            except BaseException:
                self.store.mark_dirty()
                raise
        for it, row, pick in zip(batch, rows, chosen):
            rep = reports[it[0].subject]
            res = it[3]
            if not res.reason:  # analysed: how many faces, and which one was stored
                rep.images.append(ImageFaces(image=it[0].label, faces=len(res.faces),
                                             taken=pick.taken if row.outcome == "stored" else None))
            if row.outcome == "duplicate":
                _count_duplicate(rep, it[0], row.owner or "")
            elif row.outcome == "failed":
                reason, message = row.failure or ("no_face", f"{it[0].label}: no face found")
                rep.failed.append(FailedItem(path=it[0].label, reason=reason, message=message))
            else:
                rep.enrolled += 1
                rep.face_ids.append(int(row.face_id or 0))


def _count_duplicate(rep: EnrollReport, it: _Item, owner: str) -> None:
    if owner == it.subject:
        rep.duplicates += 1
    else:
        rep.failed.append(FailedItem(path=it.label, reason="enrolled_as_other",
                                     message=f"{it.label}: the same image is already enrolled as {owner!r}"))


def _choice(res: Analysis, multi_face: MultiFace, pick: Pick | None) -> Pick:
    """Which face of ``res`` to store: the resolution's or the caller's choice, else the largest
    (refused under ``skip`` when there are several)."""
    if pick is not None:
        return pick
    if len(res.faces) > 1 and multi_face == "skip":
        return Pick(None, ("too_many_faces", f"{len(res.faces)} faces found (--multi-face skip)"))
    return Pick(0)


def _stored_item(it: _Item, digest: str, size: int, res: Analysis, pick: Pick,
                 quality_floor: QualityFloor) -> StoredItem:
    row = StoredItem(subject=it.subject, label=it.label, path=it.stored_path, digest=digest, source=it.source, size_bytes=size,
                     width=res.width, height=res.height)
    failure = _failure_for(it, res, pick, quality_floor)
    if failure is not None:
        row.failure = (failure.reason, failure.message)
    else:
        row.face = res.faces[pick.taken or 0]
    return row


def _failure_for(it: _Item, res: Analysis, pick: Pick, quality_floor: QualityFloor) -> FailedItem | None:
    if res.reason:
        return FailedItem(path=it.label, reason=res.reason, message=res.message or res.reason)
    if not res.faces:
        return FailedItem(path=it.label, reason="no_face", message=f"{it.label}: no face found")
    if pick.refusal is not None:
        return FailedItem(path=it.label, reason=pick.refusal[0], message=f"{it.label}: {pick.refusal[1]}")
    taken = pick.taken or 0
    if res.faces[taken].embedding is None:  # an engine bug; this file fails alone, the batch goes on
        return FailedItem(path=it.label, reason="analysis_error", message=f"{it.label}: face {taken} was not embedded")
    quality = res.faces[taken].quality or {}
    low = [f"{key} {quality[key]:.1f} < {floor:g}" for key, floor in (quality_floor or {}).items()
           if key in quality and quality[key] < floor]
    if low:
        return FailedItem(path=it.label, reason="low_quality", message=f"{it.label}: the face is below the quality floor ({', '.join(low)})")
    return None
