"""FaceDB: the Python API, and the only place where the catalog (SQL) and the index (Chroma) meet.

Write order (crash consistency):
- enroll: (1) one SQL transaction stores images + faces with ``indexed = false``;
  (2) the vectors are upserted into Chroma; (3) SQL marks them ``indexed = true``.
- delete: (1) one SQL transaction removes the subject's rows and journals their face ids in
  ``pending_deletes``; (2) Chroma deletes them; (3) the journal rows are cleared.
Every search result is re-read from SQL, so a vector that is in Chroma but not (or no longer)
indexed in SQL is never returned. Each time a process takes the home lock it first replays
the journal (pending deletes, faces not yet indexed), so an interrupted command is completed
or undone before anything else runs. ``check`` reports drift and ``check --repair`` fixes it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select, update

from . import imaging
from .catalog.database import Catalog
from .catalog.models import Face as FaceRow
from .catalog.models import Failure, Image, Setting, Subject
from .config import DEFAULT_PACK, Settings, ensure_private_dir, make_private_tree, resolve_settings
from .engine import FaceEngine, PackInfo, load_engine
from .faults import crash_point
from .errors import FacedbError, ImageError, IndexCorruptError, ModelError, NotFoundError
from .index.chroma_index import ChromaIndex, Neighbour, preload
from .locking import HomeLock
from .pipeline import Analysis, Analyzer, default_workers
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
    SubjectDetail,
    SubjectInfo,
    VerifyResult,
)

MULTI_FACE_POLICIES = ("largest", "skip")
MAX_NAME_LENGTH = 256
#: Analysed images stored per locked write (one SQL transaction + one Chroma upsert), and
#: the longest wait before a smaller batch is stored anyway (so progress becomes durable).
WRITE_BATCH = 256
ENV_WRITE_BATCH = "FACEDB_WRITE_BATCH"
WRITE_EVERY_S = 20.0
#: Files read and hashed (and checked against the catalog) at a time.
READ_BLOCK = 64
#: ``check`` searches for every indexed face with its own vector up to this many, a sample beyond
REACH_SAMPLE = 10_000
ImageInput = str | os.PathLike[str] | bytes
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class _Item:
    subject: str
    path: Path


def validate_subject_name(name: str) -> str:
    """Subject names: 1-256 printable characters, no leading/trailing blanks."""
    if not isinstance(name, str) or not name.strip():
        raise FacedbError("subject name is empty")
    if name != name.strip():
        raise FacedbError(f"subject name {name!r} has leading or trailing blanks")
    if len(name) > MAX_NAME_LENGTH:
        raise FacedbError(f"subject name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if any(not ch.isprintable() for ch in name):
        raise FacedbError(f"subject name {name!r} contains control characters")
    return name


class FaceDB:
    """A face database in a home directory. Safe to use from several processes at once.

    >>> db = FaceDB(home="faces")                       # doctest: +SKIP
    >>> db.enroll("alice", ["alice1.jpg", "alice2.jpg"])  # doctest: +SKIP
    >>> db.search(["party.jpg"]).results[0].faces[0].identity  # doctest: +SKIP
    'alice'
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        db_url: str | None = None,
        pack: str | None = None,
        models_dir: str | os.PathLike[str] | None = None,
        lock_timeout: float | None = None,
        workers: int | None = None,
        threshold: float | None = None,
        write_batch: int | None = None,
    ) -> None:
        self.settings: Settings = resolve_settings(home, db_url, pack, models_dir, lock_timeout)
        self.workers = default_workers() if workers is None else max(1, workers)
        if write_batch is None:
            raw = os.environ.get(ENV_WRITE_BATCH, "")
            try:
                write_batch = int(raw) if raw else WRITE_BATCH
            except ValueError:
                raise FacedbError(f"{ENV_WRITE_BATCH}={raw!r} is not a number of images") from None
        if write_batch < 1:
            raise FacedbError(f"the write batch must be at least 1 image, not {write_batch}")
        self.write_batch = write_batch
        self._threshold_override = threshold
        ensure_private_dir(self.settings.home)
        self._lock = HomeLock(self.settings.lock_path, self.settings.lock_timeout)
        self.catalog = Catalog(self.settings.db_url)
        self._index: ChromaIndex | None = None
        self._engine: FaceEngine | None = None
        with self._locked(recover=False, open_index=False):
            self.catalog.upgrade()
            if self.catalog.get_setting("default_pack") is None:
                self.catalog.set_setting("default_pack", self.settings.pack or DEFAULT_PACK)
        self.pack_name: str = self.settings.pack or self.catalog.get_setting("default_pack") or DEFAULT_PACK

    # -- lifecycle ---------------------------------------------------------------
    def close(self) -> None:
        self.catalog.dispose()

    def __enter__(self) -> FaceDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def hold(self) -> Iterator[FaceDB]:
        """Keep the home locked (and the index open) across several calls."""
        with self._locked():
            yield self

    @contextmanager
    def _locked(self, recover: bool = True, open_index: bool = True) -> Iterator[ChromaIndex]:
        outer = self._lock.depth == 0
        self._lock.acquire()
        try:
            if open_index and self._index is None:
                self._index = ChromaIndex(self.settings.chroma_path)
                if recover:
                    self._replay_journal(self._index)
            yield self._index  # type: ignore[misc]
        finally:
            if outer:
                try:
                    if self._index is not None:
                        self._index.close()
                        self._index = None
                    make_private_tree(self.settings.home)
                finally:
                    self._lock.release()
            else:
                self._lock.release()

    # -- model pack --------------------------------------------------------------
    @property
    def engine(self) -> FaceEngine:
        if self._engine is None:
            self._engine = load_engine(self.pack_name, self.settings.models_dir)
        return self._engine

    @property
    def threshold(self) -> float:
        return self._threshold_override if self._threshold_override is not None else self.engine.info.threshold

    def _pack_record(self, name: str) -> PackInfo | None:
        raw = self.catalog.get_setting(f"pack:{name}")
        if raw is None:
            return None
        d = json.loads(raw)
        return PackInfo(name=name, dim=int(d["dim"]), threshold=float(d.get("threshold", 0.0)),
                        fingerprint=d["fingerprint"], description=d.get("description", ""))

    def _checked_info(self, register: bool = False) -> PackInfo:
        """The loaded pack's contract, refusing a database built with other weights."""
        info = self.engine.info
        rec = self._pack_record(info.name)
        if rec is None:
            if register:
                self.catalog.set_setting(f"pack:{info.name}", json.dumps(
                    {"dim": info.dim, "fingerprint": info.fingerprint, "threshold": info.threshold,
                     "description": info.description}))
            return info
        if rec.fingerprint != info.fingerprint or rec.dim != info.dim:
            raise ModelError(
                f"this database's {info.name!r} faces were embedded with other model weights "
                f"(fingerprint {rec.fingerprint[:12]}…, dim {rec.dim}) than the ones loaded now "
                f"({info.fingerprint[:12]}…, dim {info.dim}); their vectors are not comparable. "
                "Run `facedb reindex` to re-embed the stored images with the loaded weights."
            )
        if self.catalog.get_setting(f"reindexing:{info.name}"):
            raise IndexCorruptError(
                f"a reindex of pack {info.name!r} was interrupted; run `facedb reindex` again to finish it"
            )
        return info

    # -- journal replay (crash recovery) ------------------------------------------
    def _replay_journal(self, index: ChromaIndex) -> None:
        for model in self._recorded_packs():
            if self.catalog.get_setting(f"rebuilding:{model}"):
                rec = self._pack_record(model)
                if rec is not None:
                    self._rebuild(index, rec)
        for model, ids in self.catalog.pending_deletes().items():
            rec = self._pack_record(model)
            if rec is not None:
                index.delete(rec, ids)
            crash_point("journal.after_deletes")
            self.catalog.clear_pending_deletes(ids)
        for model in self.catalog.models_in_use():
            rec = self._pack_record(model)
            if rec is None or self.catalog.get_setting(f"reindexing:{model}"):
                continue
            self._index_pending(index, rec)

    def _index_pending(self, index: ChromaIndex, info: PackInfo) -> int:
        rows = self.catalog.unindexed_faces(info.name)
        if not rows:
            return 0
        ids = [r[0] for r in rows]
        index.add(info, ids, np.stack([r[1] for r in rows]), [r[2] for r in rows], [r[3] for r in rows],
                  may_exist=True)
        self.catalog.mark_indexed(ids)
        return len(ids)

    def _require_consistent(self, index: ChromaIndex, info: PackInfo) -> None:
        """Cheap invariant before a search: the index holds exactly the indexed SQL faces."""
        try:
            n_index = index.count(info)
        except (ModelError, IndexCorruptError):
            raise
        except Exception as exc:
            raise IndexCorruptError(
                f"the search index cannot be read ({exc}); run `facedb check --repair` to rebuild it"
            ) from None
        with self.catalog.session() as s:
            n_sql = s.scalar(select(func.count(FaceRow.id)).where(
                FaceRow.model == info.name, FaceRow.indexed.is_(True))) or 0
        if n_index != n_sql:
            raise IndexCorruptError(
                f"the search index holds {n_index} faces but the catalog has {n_sql} for pack "
                f"{info.name!r}; run `facedb check --repair` to rebuild the index from the catalog"
            )

    # -- enrollment ----------------------------------------------------------------
    def enroll(
        self,
        subject: str,
        paths: Sequence[str | os.PathLike[str]],
        *,
        multi_face: str = "largest",
        metadata: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
    ) -> EnrollReport:
        """Add the faces in ``paths`` (files or directories) to ``subject``, creating it if new."""
        validate_subject_name(subject)
        items = [_Item(subject, p) for p in imaging.iter_image_files(list(paths))]
        report = self._ingest(items, multi_face, {subject: metadata} if metadata else {}, progress)
        return report.subjects[0] if report.subjects else EnrollReport(subject=subject)

    def import_dir(
        self,
        root: str | os.PathLike[str],
        *,
        name_from: str = "dir",
        multi_face: str = "largest",
        progress: ProgressFn | None = None,
    ) -> ImportReport:
        """Bulk-enroll ``root/<subject>/<images>`` (``name_from='dir'``) or a flat folder whose
        file names start with the subject (``name_from='prefix'``: ``subject01.happy``,
        ``Ann_Lee_0001.jpg`` -> the part before the first dot, or before a trailing ``_NNNN``)."""
        base = Path(root)
        if not base.is_dir():
            raise FacedbError(f"{base}: not a directory")
        items: list[_Item] = []
        bad: list[FailedItem] = []
        if name_from == "dir":
            for child in sorted(base.iterdir()):
                if child.name.startswith("."):
                    continue
                if child.is_dir() and not child.is_symlink():
                    items.extend(_Item(child.name, p) for p in imaging.iter_image_files([child]))
                else:
                    bad.append(FailedItem(str(child), "no_subject",
                                          f"{child}: not inside a subject folder (expected {base}/<subject>/<image>)"))
        elif name_from == "prefix":
            for p in imaging.iter_image_files([base]):
                items.append(_Item(subject_from_filename(p.name), p))
        else:
            raise FacedbError(f"--name-from must be 'dir' or 'prefix', not {name_from!r}")
        report = self._ingest(items, multi_face, {}, progress)
        report.failed.extend(bad)
        return report

    def _ingest(self, items: list[_Item], multi_face: str, metadata: dict[str, dict[str, Any]],
                progress: ProgressFn | None) -> ImportReport:
        if multi_face not in MULTI_FACE_POLICIES:
            raise FacedbError(f"multi_face must be one of {MULTI_FACE_POLICIES}, not {multi_face!r}")
        info = self.engine.info
        reports: dict[str, EnrollReport] = {}
        out = ImportReport(model=info.name)
        valid: list[_Item] = []
        for it in items:
            rep = reports.setdefault(it.subject, EnrollReport(subject=it.subject))
            try:
                validate_subject_name(it.subject)
            except FacedbError as exc:
                rep.failed.append(FailedItem(str(it.path), "bad_subject_name", f"{it.path}: {exc}"))
                continue
            valid.append(it)
        with self._locked(open_index=False):
            self._checked_info(register=True)
        # Enrollment keeps one face per photo: embed only the largest (the others are counted).
        with Analyzer(info.name, self.settings.models_dir, self.workers, max_faces=1) as analyzer:
            analyzer.start(len(valid))
            todo: dict[int, tuple[_Item, str]] = {}
            pending: list[tuple[_Item, str, Analysis]] = []
            fresh = self._fresh_items(valid, reports, todo, pending, progress)
            last_write = time.monotonic()
            for res in analyzer.stream(fresh, len(valid)):
                it, digest = todo.pop(res.key)
                pending.append((it, digest, res))
                if len(pending) >= self.write_batch or (time.monotonic() - last_write > WRITE_EVERY_S
                                                        and len(pending) >= self.write_batch // 8):
                    self._write_pending(pending, multi_face, metadata, reports, progress)
                    last_write = time.monotonic()
            self._write_pending(pending, multi_face, metadata, reports, progress)
        out.subjects = list(reports.values())
        return out

    def _fresh_items(self, valid: list[_Item], reports: dict[str, EnrollReport],
                     todo: dict[int, tuple[_Item, str]], pending: list[tuple[_Item, str, Analysis]],
                     progress: ProgressFn | None) -> Iterator[tuple[int, bytes, str]]:
        """Read, hash and de-duplicate the files lazily, yielding only images to analyse.

        Unreadable files go straight to ``pending`` (stored as failures); duplicates of an
        enrolled image (or of an earlier file in this run) are counted and skipped."""
        seen: dict[str, str] = {}
        for start in range(0, len(valid), READ_BLOCK):
            block: list[tuple[int, _Item, bytes, str]] = []
            for i, it in enumerate(valid[start:start + READ_BLOCK], start):
                try:
                    data = imaging.read_bytes(it.path)
                except ImageError as exc:
                    pending.append((it, "", Analysis(i, [], reason=exc.reason, message=str(exc))))
                    continue
                block.append((i, it, data, hashlib.sha256(data).hexdigest()))
            known = self.catalog.known_sha256([d for *_, d in block])
            skipped = 0
            for i, it, data, digest in block:
                owner = known.get(digest) or seen.get(digest)
                if owner is not None:
                    self._count_duplicate(reports[it.subject], it, owner)
                    skipped += 1
                    continue
                seen[digest] = it.subject
                todo[i] = (it, digest)
                yield i, data, str(it.path)
            if progress and skipped:
                progress(skipped)

    def _write_pending(self, pending: list[tuple[_Item, str, Analysis]], multi_face: str,
                       metadata: dict[str, dict[str, Any]], reports: dict[str, EnrollReport],
                       progress: ProgressFn | None) -> None:
        """Store and empty ``pending`` (a no-op when it is empty)."""
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        self._write_batch(batch, multi_face, metadata, reports)
        if progress:
            progress(len(batch))

    @staticmethod
    def _count_duplicate(rep: EnrollReport, it: _Item, owner: str) -> None:
        if owner == it.subject:
            rep.duplicates += 1
        else:
            rep.failed.append(FailedItem(str(it.path), "enrolled_as_other",
                                         f"{it.path}: the same image is already enrolled as {owner!r}"))

    def _write_batch(self, batch: list[tuple[_Item, str, Analysis]], multi_face: str,
                     metadata: dict[str, dict[str, Any]], reports: dict[str, EnrollReport]) -> None:
        """Store one batch: SQL (not yet indexed) -> Chroma -> SQL indexed. Holds the lock."""
        info = self.engine.info
        new_faces: list[tuple[int, np.ndarray, int, str, EnrollReport]] = []
        with self._locked() as index:
            crash_point("enroll.before_sql")
            with self.catalog.session() as s:
                known = self.catalog.known_sha256([d for _, d, _ in batch if d])
                failed: list[tuple[_Item, str, FailedItem]] = []
                accepted: list[tuple[_Item, str, Analysis]] = []
                for it, digest, res in batch:
                    rep = reports[it.subject]
                    if digest and digest in known:  # stored meanwhile by another process
                        self._count_duplicate(rep, it, known[digest])
                        continue
                    failure = self._failure_for(it, res, multi_face)
                    if failure is not None:
                        rep.failed.append(failure)
                        failed.append((it, digest, failure))
                        continue
                    known[digest] = it.subject
                    accepted.append((it, digest, res))
                # A file stored now (as a face or as a failure) replaces its earlier failure record.
                self.catalog.forget_failures(s, [(str(it.path), it.subject) for it, _, _ in failed + accepted])
                s.add_all([Failure(path=str(it.path), sha256=digest or None, subject_name=it.subject,
                                   model=info.name, reason=f.reason, detail=f.message) for it, digest, f in failed])
                subjects = self.catalog.subjects_by_name(s, [it.subject for it, _, _ in accepted], metadata)
                images = [Image(subject_id=subjects[it.subject].id, path=str(it.path.absolute()), sha256=digest,
                                size_bytes=_file_size(it.path), width=res.width, height=res.height,
                                status="enrolled") for it, digest, res in accepted]
                s.add_all(images)
                s.flush()
                rows = [_face_row(res.faces[0], img.id, img.subject_id, info.name)
                        for img, (_, _, res) in zip(images, accepted)]
                s.add_all(rows)
                s.flush()
                new_faces = [(row.id, res.faces[0].embedding, row.subject_id, it.subject, reports[it.subject])
                             for row, (it, _, res) in zip(rows, accepted)]
            crash_point("enroll.after_sql")
            if new_faces:
                ids = [f[0] for f in new_faces]
                index.add(info, ids, np.stack([f[1] for f in new_faces]), [f[2] for f in new_faces],
                          [f[3] for f in new_faces])
                crash_point("enroll.after_chroma")
                self.catalog.mark_indexed(ids)
                crash_point("enroll.after_mark")
        for fid, _, _, _, rep in new_faces:
            rep.enrolled += 1
            rep.face_ids.append(fid)

    @staticmethod
    def _failure_for(it: _Item, res: Analysis, multi_face: str) -> FailedItem | None:
        if res.reason:
            return FailedItem(str(it.path), res.reason, res.message or res.reason)
        if not res.faces:
            return FailedItem(str(it.path), "no_face", f"{it.path}: no face found")
        if res.faces[0].embedding is None:  # an engine bug; this file fails alone, the batch goes on
            return FailedItem(str(it.path), "analysis_error", f"{it.path}: the largest face was not embedded")
        if len(res.faces) > 1 and multi_face == "skip":
            return FailedItem(str(it.path), "too_many_faces",
                              f"{it.path}: {len(res.faces)} faces found (--multi-face skip)")
        return None

    # -- search --------------------------------------------------------------------
    def detect(self, image: ImageInput) -> list:
        """All faces in one image (path or bytes), largest first."""
        loaded = _load_input(image)
        return self.engine.analyze(loaded.pixels)

    def search(
        self,
        images: Sequence[ImageInput],
        *,
        k: int = 3,
        threshold: float | None = None,
        by: str = "subject",
        reference: bool = False,
    ) -> SearchReport:
        """Who is in each image? Every face, with its top-k subjects (or faces with by='face')."""
        if by not in ("subject", "face"):
            raise FacedbError(f"by must be 'subject' or 'face', not {by!r}")
        if k < 1:
            raise FacedbError("k must be at least 1")
        preload()
        thr = self.threshold if threshold is None else float(threshold)
        info = self.engine.info
        images = list(images)
        results = [ImageResult(image="<stdin>" if isinstance(im, bytes) else str(im)) for im in images]
        found: dict[int, list[Any]] = {}
        for a in self._analyse_probes(images, [r.image for r in results]):
            res = results[a.key]
            if a.reason:
                res.error, res.reason = a.message or a.reason, a.reason
            elif not a.faces:
                res.error, res.reason = f"{res.image}: no face found", "no_face"
            found[a.key] = a.faces
        probes: list[tuple[ImageResult, Any]] = [(results[i], f) for i in sorted(found) for f in found[i]]
        report = SearchReport(model=info.name, threshold=thr, by=by, k=k, results=results, reference=reference)
        if not probes:
            return report
        vectors = np.stack([f.embedding for _, f in probes])
        if reference:
            from .index.reference import ReferenceIndex  # imports scikit-learn: not under the lock
            ReferenceIndex.preload()
        with self._locked() as index:
            info = self._checked_info()
            self._require_consistent(index, info)
            total = index.count(info)
            ranked = _ranked(lambda v, n: index.query(info, v, n), vectors, k, by, total,
                             self.catalog)
            agree: list[bool | None] = [None] * len(probes)
            if reference:
                from .index.reference import ReferenceIndex

                ids, mat = self.catalog.embeddings(info.name)
                ref = ReferenceIndex(ids, mat)
                ref_ranked = _ranked(ref.query, vectors, k, by, len(ids), self.catalog)
                agree = [_agrees(a, b) for a, b in zip(ranked, ref_ranked)]
        for (res, face), matches, ok in zip(probes, ranked, agree):
            out = [Match(h.subject, round(d, 6), d <= thr, h.face_id, h.image_path) for h, d in matches]
            identity = out[0].subject if out and out[0].match else None
            res.faces.append(FaceResult(bbox=[round(v, 1) for v in face.bbox], score=round(face.score, 4),
                                        identity=identity, matches=out, reference_agrees=ok))
        return report

    def _analyse_probes(self, images: list[ImageInput], labels: list[str]) -> Iterator[Analysis]:
        """Detect and embed every face of every probe image (in any order; ``key`` = position).

        Many files go through the worker pool (read lazily, one process per core); a few
        images, or image bytes, are analysed here, which avoids the pool's start-up cost."""
        info = self.engine.info
        n_files = sum(not isinstance(im, bytes) for im in images)
        with Analyzer(info.name, self.settings.models_dir, self.workers) as analyzer:
            unread: list[Analysis] = []

            def inputs() -> Iterator[tuple[int, bytes, str]]:
                for i, im in enumerate(images):
                    if isinstance(im, bytes):
                        yield i, im, labels[i]
                        continue
                    try:
                        yield i, imaging.read_bytes(im), labels[i]
                    except ImageError as exc:
                        unread.append(Analysis(i, [], reason=exc.reason, message=str(exc)))

            for a in analyzer.stream(inputs(), n_files):
                yield a
            yield from unread

    # -- verification -------------------------------------------------------------
    def verify(self, image: ImageInput, subject: str, *, threshold: float | None = None) -> VerifyResult:
        """1:1 — is the (largest) face in ``image`` this subject?"""
        thr = self.threshold if threshold is None else float(threshold)
        info = self.engine.info
        with self.catalog.session() as s:
            sub = self.catalog.subject(s, subject)
            sub_id = sub.id
        label = "<stdin>" if isinstance(image, bytes) else str(image)
        faces = self.engine.analyze(_load_input(image).pixels)
        if not faces:
            raise ImageError("no_face", f"{label}: no face found")
        ids, mat = self.catalog.embeddings(info.name, subject_id=sub_id)
        if not len(ids):
            raise NotFoundError(f"subject {subject!r} has no faces enrolled with pack {info.name!r}")
        self._checked_info()
        dists = 1.0 - mat @ faces[0].embedding
        j = int(np.argmin(dists))
        d = max(0.0, float(dists[j]))
        hit = self.catalog.hits([int(ids[j])])[int(ids[j])]
        return VerifyResult(image=label, subject=subject, model=info.name, threshold=thr, distance=round(d, 6),
                            match=d <= thr, face_id=int(ids[j]), matched_image=hit.image_path,
                            faces_in_image=len(faces))

    # -- management ----------------------------------------------------------------
    def delete(self, subject: str) -> DeleteReport:
        """Remove a subject, its images, faces and vectors. No search returns them afterwards."""
        with self._locked() as index:
            with self.catalog.session() as s:
                sub = self.catalog.subject(s, subject)
                n_images = s.scalar(select(func.count(Image.id)).where(Image.subject_id == sub.id)) or 0
            by_model = self.catalog.delete_subject(subject)
            crash_point("delete.after_sql")
            for model, ids in by_model.items():
                rec = self._pack_record(model)
                if rec is not None:
                    index.delete(rec, ids)
                crash_point("delete.after_chroma")
                self.catalog.clear_pending_deletes(ids)
        return DeleteReport(subject=subject, images=int(n_images), faces=sum(len(v) for v in by_model.values()))

    def rename(self, old: str, new: str) -> None:
        validate_subject_name(new)
        with self._locked() as index:
            with self.catalog.session() as s:
                sub = self.catalog.subject(s, old)
                if s.scalar(select(Subject).where(Subject.name == new)) is not None:
                    raise FacedbError(f"a subject named {new!r} already exists")
                sub.name = new
                s.execute(update(Failure).where(Failure.subject_name == old).values(subject_name=new))
                sub_id = sub.id
                rows = s.execute(select(FaceRow.id, FaceRow.model).where(FaceRow.subject_id == sub_id)).all()
            by_model: dict[str, list[int]] = {}
            for fid, model in rows:
                by_model.setdefault(model, []).append(fid)
            for model, ids in by_model.items():
                rec = self._pack_record(model)
                if rec is not None:
                    index.rename_subject(rec, ids, sub_id, new)

    def subjects(self) -> list[SubjectInfo]:
        return [SubjectInfo(**row) for row in self.catalog.subject_rows()]

    def show(self, subject: str) -> SubjectDetail:
        with self.catalog.session() as s:
            sub = self.catalog.subject(s, subject)
            images = []
            for img in s.scalars(select(Image).where(Image.subject_id == sub.id).order_by(Image.id)):
                faces = s.scalars(select(FaceRow).where(FaceRow.image_id == img.id)).all()
                images.append({
                    "image_id": img.id, "path": img.path, "sha256": img.sha256, "size_bytes": img.size_bytes,
                    "width": img.width, "height": img.height, "status": img.status,
                    "faces": [{"face_id": f.id, "model": f.model, "bbox": [round(v, 1) for v in f.bbox],
                               "score": round(f.score, 4), "indexed": f.indexed} for f in faces],
                })
            detail = SubjectDetail(name=sub.name, metadata=sub.info,
                                   created_at=sub.created_at.isoformat() if sub.created_at else None,
                                   images=images, failures=[])
        detail.failures = [_failure_dict(f) for f in self.catalog.failures(subject=subject)]
        return detail

    def failures(self, subject: str | None = None, reason: str | None = None) -> list[dict[str, Any]]:
        return [_failure_dict(f) for f in self.catalog.failures(subject=subject, reason=reason)]

    def stats(self) -> dict[str, Any]:
        with self.catalog.session() as s:
            n_sub = s.scalar(select(func.count(Subject.id))) or 0
            n_img = s.scalar(select(func.count(Image.id))) or 0
            reasons = dict(s.execute(select(Failure.reason, func.count(Failure.id)).group_by(Failure.reason)).all())
        size = disk_bytes(self.settings.home)
        return {
            "home": str(self.settings.home), "catalog": self.catalog.safe_url, "pack": self.pack_name,
            "subjects": int(n_sub), "images": int(n_img), "faces_by_model": self.catalog.models_in_use(),
            "failures_by_reason": {k: int(v) for k, v in reasons.items()}, "disk_bytes": int(size),
        }

    def models(self) -> list[dict[str, Any]]:
        from .engine import known_packs

        in_use = self.catalog.models_in_use()
        out = []
        for name, desc in sorted(known_packs().items()):
            rec = self._pack_record(name)
            out.append({"name": name, "description": desc, "faces": in_use.get(name, 0),
                        "active": name == self.pack_name,
                        "dim": rec.dim if rec else None,
                        "fingerprint": rec.fingerprint if rec else None})
        return out

    # -- integrity -----------------------------------------------------------------
    def check(self, repair: bool = False) -> CheckReport:
        """Compare the catalog with the index for the active pack; ``repair`` fixes drift from SQL.

        An index that cannot even be opened is reported; with ``repair`` it is deleted (it holds
        biometric data, so it is not kept aside) and rebuilt from the catalog's embeddings.
        """
        info = self.engine.info
        with self._locked(recover=False, open_index=False):
            rec = self._pack_record(info.name) or info
            pending_del = sum(len(v) for v in self.catalog.pending_deletes().values())
            pending_idx = len(self.catalog.unindexed_faces(info.name))
            sql_ids = self.catalog.face_ids(info.name)
            error = None
            idx_ids: set[int] = set()
            checked, unreachable = 0, []
            try:
                self._index = ChromaIndex(self.settings.chroma_path)
                idx_ids = self._index.ids(rec)
                checked, unreachable = self._unreachable(self._index, rec, idx_ids)
            except ModelError:
                raise
            except Exception as exc:
                error = str(exc)
            report = CheckReport(model=info.name, catalog_faces=len(sql_ids), index_faces=len(idx_ids),
                                 missing_from_index=sorted(sql_ids - idx_ids),
                                 orphans_in_index=sorted(idx_ids - sql_ids), pending_index=pending_idx,
                                 pending_deletes=pending_del, index_error=error, reach_checked=checked,
                                 unreachable_in_index=unreachable)
            if repair and not report.clean:
                if error:
                    if self._index is not None:
                        self._index.close()
                    shutil.rmtree(self.settings.chroma_path, ignore_errors=True)
                    self._index = ChromaIndex(self.settings.chroma_path)
                    self._replay_journal_sql_only()
                    for model in self.catalog.models_in_use():
                        other = self._pack_record(model)
                        if other is not None:
                            self._add_from_catalog(self._index, other, None)
                else:
                    assert self._index is not None
                    # Replay first (it indexes faces whose Chroma add finished but whose SQL mark
                    # did not), then compare again: only what is still wrong is drift to fix.
                    self._replay_journal(self._index)
                    sql_now, idx_now = self.catalog.face_ids(info.name), self._index.ids(rec)
                    if idx_now - sql_now:
                        self._index.delete(rec, sorted(idx_now - sql_now))
                    if sql_now - idx_now:
                        self._add_from_catalog(self._index, rec, sorted(sql_now - idx_now))
                    if report.unreachable_in_index:  # only a new graph reconnects them
                        self._rebuild(self._index, rec)
                report.repaired = True
        return report

    def _unreachable(self, index: ChromaIndex, info: PackInfo, idx_ids: set[int]) -> tuple[int, list[int]]:
        """(faces checked, faces the index holds but cannot find with their own vector).

        Every indexed face up to ``REACH_SAMPLE``, a random sample of that size beyond. A face
        found unreachable is checked again on a fresh Chroma client before it is reported (a
        client's first answers can be short right after a crash; see ``ChromaIndex.query``).
        """
        ids, mat = self.catalog.embeddings(info.name)
        keep = np.isin(ids, np.fromiter(idx_ids, dtype=np.int64, count=len(idx_ids)))
        ids, mat = ids[keep], mat[keep]
        if len(ids) > REACH_SAMPLE:
            pick = np.sort(np.random.default_rng().choice(len(ids), REACH_SAMPLE, replace=False))
            ids, mat = ids[pick], mat[pick]
        bad = index.unreachable(info, ids, mat)
        if bad:
            index.reopen()
            again = np.isin(ids, bad)
            bad = index.unreachable(info, ids[again], mat[again])
        return len(ids), sorted(bad)

    def _add_from_catalog(self, index: ChromaIndex, info: PackInfo, face_ids: Sequence[int] | None) -> None:
        with self.catalog.session() as s:
            q = (select(FaceRow.id, FaceRow.embedding, FaceRow.subject_id, Subject.name)
                 .join(Subject).where(FaceRow.model == info.name))
            rows = s.execute(q).all()
        wanted = None if face_ids is None else set(face_ids)
        rows = [r for r in rows if wanted is None or r[0] in wanted]
        for i in range(0, len(rows), 5000):
            part = rows[i:i + 5000]
            index.add(info, [r[0] for r in part], np.stack([np.frombuffer(r[1], dtype=np.float32) for r in part]),
                      [r[2] for r in part], [r[3] for r in part])
        self.catalog.mark_indexed([r[0] for r in rows])

    def _rebuild(self, index: ChromaIndex, info: PackInfo) -> None:
        """Drop the pack's collection and rebuild it from the catalog's embeddings.

        Journaled as ``rebuilding:<pack>``: a process killed half-way is finished by the next
        one to take the lock."""
        self.catalog.set_setting(f"rebuilding:{info.name}", "1")
        try:
            index.drop(info.name)
        except Exception:
            pass
        crash_point("vacuum.after_drop")
        self._replay_journal_sql_only()
        self._add_from_catalog(index, info, None)
        self.catalog.set_setting(f"rebuilding:{info.name}", "")

    def _replay_journal_sql_only(self) -> None:
        for ids in self.catalog.pending_deletes().values():
            self.catalog.clear_pending_deletes(ids)

    def vacuum(self) -> dict[str, Any]:
        """Rewrite every store so deleted embeddings are physically gone from disk."""
        with self._locked() as index:
            before = disk_bytes(self.settings.home)
            # Every pack this database ever used, even one whose last face was deleted.
            for model in sorted(set(self.catalog.models_in_use()) | set(self._recorded_packs())):
                rec = self._pack_record(model)
                if rec is not None:
                    self._rebuild(index, rec)
            index.close()
            self._index = None
            _sqlite_vacuum(self.settings.chroma_path / "chroma.sqlite3")
            _remove_orphan_segments(self.settings.chroma_path)
            self.catalog.compact()
            after = disk_bytes(self.settings.home)
        return {"bytes_before": before, "bytes_after": after}

    def _recorded_packs(self) -> list[str]:
        with self.catalog.session() as s:
            keys = s.scalars(select(Setting.key).where(Setting.key.like("pack:%"))).all()
        return [k[len("pack:"):] for k in keys]

    def reindex(self, progress: ProgressFn | None = None) -> dict[str, Any]:
        """Re-embed every stored image (from its source path) with the loaded pack."""
        info = self.engine.info
        with self._locked(open_index=False):
            self.catalog.set_setting(f"reindexing:{info.name}", "1")
            self.catalog.set_setting(f"pack:{info.name}", json.dumps(
                {"dim": info.dim, "fingerprint": info.fingerprint, "threshold": info.threshold,
                 "description": info.description}))
        with self.catalog.session() as s:
            images = s.execute(select(Image.id, Image.path, Image.sha256, Image.subject_id)).all()
        gone: list[FailedItem] = []
        done = 0
        with self._locked() as index:
            index.drop(info.name)
            for image_id, path, digest, subject_id in images:
                p = Path(path)
                try:
                    data = imaging.read_bytes(p)
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise ImageError("changed", f"{p}: the file changed since it was enrolled")
                    faces = self.engine.analyze(imaging.decode(data, str(p)).pixels)
                    if not faces:
                        raise ImageError("no_face", f"{p}: no face found by pack {info.name}")
                except ImageError as exc:
                    gone.append(FailedItem(str(p), exc.reason, str(exc)))
                    with self.catalog.session() as s:
                        s.execute(delete(FaceRow).where(FaceRow.image_id == image_id, FaceRow.model == info.name))
                        s.execute(update(Image).where(Image.id == image_id).values(status="source_missing"))
                    continue
                with self.catalog.session() as s:
                    s.execute(delete(FaceRow).where(FaceRow.image_id == image_id, FaceRow.model == info.name))
                    s.add(_face_row(faces[0], image_id, subject_id, info.name))
                done += 1
                if progress:
                    progress(1)
            self._add_from_catalog(index, info, None)
            self.catalog.set_setting(f"reindexing:{info.name}", "")
        return {"model": info.name, "reindexed": done, "failed": [g.to_dict() for g in gone]}


# -- helpers -------------------------------------------------------------------------

def subject_from_filename(name: str) -> str:
    """``subject01.happy`` -> ``subject01``; ``Ann_Lee_0001.jpg`` -> ``Ann_Lee``."""
    stem = name.split(".", 1)[0]
    head, sep, tail = stem.rpartition("_")
    if sep and tail.isdigit() and head:
        return head
    return stem


def _load_input(image: ImageInput) -> imaging.LoadedImage:
    if isinstance(image, bytes):
        return imaging.decode(image, "<stdin>")
    return imaging.load(image)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _face_row(face: Any, image_id: int, subject_id: int, model: str) -> FaceRow:
    x1, y1, x2, y2 = face.bbox
    return FaceRow(image_id=image_id, subject_id=subject_id, model=model, x1=x1, y1=y1, x2=x2, y2=y2,
                   score=face.score, landmarks=[list(p) for p in face.landmarks], dim=int(face.embedding.size),
                   embedding=np.asarray(face.embedding, dtype=np.float32).tobytes(), indexed=False)


def _failure_dict(f: Failure) -> dict[str, Any]:
    return {"path": f.path, "subject": f.subject_name, "reason": f.reason, "message": f.detail,
            "model": f.model, "created_at": f.created_at.isoformat() if f.created_at else None}


QueryFn = Callable[[np.ndarray, int], list[list[Neighbour]]]


def _ranked(query: QueryFn, vectors: np.ndarray, k: int, by: str, total: int, catalog: Catalog
            ) -> list[list[tuple[Any, float]]]:
    """Top-k (hit, distance) per probe: nearest faces, or nearest subjects by their best face.

    For subjects, neighbours are fetched until k distinct subjects are seen (or all faces):
    any subject not seen then is farther than every face seen, so the answer is exact.
    Hits that SQL does not know as indexed are dropped (never a searchable orphan).
    """
    out: list[list[tuple[Any, float]]] = [[] for _ in range(len(vectors))]
    todo = list(range(len(vectors)))
    n = k if by == "face" else max(4 * k, 32)
    while todo and total > 0:
        n = min(n, total)
        neigh = query(vectors[todo], n)
        hits = catalog.hits({nb.face_id for row in neigh for nb in row})
        again = []
        for pos, row in zip(todo, neigh):
            chosen: list[tuple[Any, float]] = []
            seen: set[int] = set()
            for nb in row:
                h = hits.get(nb.face_id)
                if h is None or not h.indexed:
                    continue
                if by == "subject":
                    if h.subject_id in seen:
                        continue
                    seen.add(h.subject_id)
                chosen.append((h, nb.distance))
                if len(chosen) == k:
                    break
            out[pos] = chosen
            if len(chosen) < k and n < total:
                again.append(pos)
        todo = again
        n *= 4
    return out


def _agrees(a: list[tuple[Any, float]], b: list[tuple[Any, float]], tol: float = 1e-4) -> bool:
    """Same ranked answer (ids), allowing reordering only between near-equal distances."""
    if len(a) != len(b):
        return False
    if [h.face_id for h, _ in a] == [h.face_id for h, _ in b]:
        return all(abs(da - db) <= tol for (_, da), (_, db) in zip(a, b))
    return all(abs(da - db) <= tol for (_, da), (_, db) in zip(a, b)) and (
        {h.subject_id for h, _ in a} == {h.subject_id for h, _ in b})


def disk_bytes(root: Path) -> int:
    """Total size of the files under ``root``; files that vanish meanwhile are skipped."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.stat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _sqlite_vacuum(path: Path) -> None:
    if not path.exists():
        return
    con = sqlite3.connect(str(path))
    try:
        con.execute("PRAGMA secure_delete=ON")
        con.execute("VACUUM")
    finally:
        con.close()


def _remove_orphan_segments(chroma_path: Path) -> None:
    """Delete HNSW segment directories that no live segment of chroma.sqlite3 refers to."""
    db = chroma_path / "chroma.sqlite3"
    if not db.exists():
        return
    con = sqlite3.connect(str(db))
    try:
        live = {row[0] for row in con.execute("SELECT id FROM segments")}
    finally:
        con.close()
    import shutil

    for child in chroma_path.iterdir():
        if child.is_dir() and child.name not in live:
            shutil.rmtree(child, ignore_errors=True)
