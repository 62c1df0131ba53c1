"""``FaceDB``: the Python API. The CLI and the HTTP server are thin layers over it.

It is a facade: each verb is one call into ``facedb.operations`` — ``enroll`` (enrollment),
``search`` (1:N, 1:1), ``maintenance`` (check, repair, vacuum, reindex), ``gatekeeper`` (API
keys, audit) — over ``facedb.store`` (the catalog, the index and the right to use them).
Thread-safe: searches run in parallel, writes one at a time, and every write and search is
audited.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Literal

from . import trace
from .analysis.engines import Face
from .analysis.files import Upload
from .analysis.packs import ActivePack
from .analysis.pipeline import Analyzer, default_workers
from .analysis.quality import DEFAULT_QUALITY_FLOOR, QualityFloor
from .catalog.core import DEFAULT_PACK_KEY
from .catalog.subjects import deleted_label
from .config import DEFAULT_PACK, Settings, resolve_settings
from .contract.models import (
    AuditEntry,
    CheckReport,
    DeleteReport,
    EnrollReport,
    FailureRecord,
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
from .errors import FacedbError
from .operations import gatekeeper
from .operations.enroll import Ingestor, MultiFace, write_batch_size
from .operations.maintenance import Maintenance
from .operations.migrate import MigrateReport
from .operations.search import By, ImageInput, Scoring, Searcher
from .store.stores import Store
from .wording import plural

ProgressFn = Callable[[int], None]
PathLike = str | os.PathLike[str]


class FaceDB:
    """A face database in a home directory.

    By default the home is locked only while a call runs, so several processes can share it;
    ``exclusive=True`` (what ``facedb serve`` uses) holds it, with the index open and the worker
    pool started, until ``close()``.

    >>> db = FaceDB(home="faces")                       # doctest: +SKIP
    >>> db.enroll("alice", ["alice1.jpg", "alice2.jpg"])  # doctest: +SKIP
    >>> db.search(["party.jpg"]).results[0].faces[0].identity  # doctest: +SKIP
    'alice'
    """

    def __init__(self, home: PathLike | None = None, *, db_url: str | None = None, pack: str | None = None,
                 models_dir: PathLike | None = None, lock_timeout: float | None = None, workers: int | None = None,
                 threshold: float | None = None, write_batch: int | None = None, exclusive: bool = False,
                 chroma_url: str | None = None) -> None:
        with trace.span("facedb.open"):
            self._open(resolve_settings(home, db_url, pack, models_dir, lock_timeout, chroma_url), workers,
                       threshold, write_batch, exclusive)

    def _open(self, settings: Settings, workers: int | None, threshold: float | None, write_batch: int | None,
              exclusive: bool) -> None:
        self.settings = settings
        batch = write_batch_size(write_batch)
        self.store = Store(self.settings, exclusive=exclusive)
        self.catalog = self.store.catalog
        with self.store.exclusive(open_index=False, recover=False):  # one process migrates at a time
            self.catalog.upgrade()
            if self.catalog.get_setting(DEFAULT_PACK_KEY) is None:
                self.catalog.set_setting(DEFAULT_PACK_KEY, self.settings.pack or DEFAULT_PACK)
        self.pack_name: str = self.settings.pack or self.catalog.get_setting(DEFAULT_PACK_KEY) or DEFAULT_PACK
        self.pack = ActivePack(self.catalog, self.pack_name, self.settings.models_dir, threshold)
        self.analyzer = Analyzer(self.pack_name, self.settings.models_dir,
                                 default_workers() if workers is None else max(1, workers))
        self.gate = gatekeeper.Gatekeeper(self.catalog)
        self._ingest = Ingestor(self.store, self.pack, self.analyzer, batch)
        self._search = Searcher(self.store, self.pack, self.analyzer)
        self._maint = Maintenance(self.store, self.pack, self.analyzer)
        if exclusive:  # a server: load the model, replay the journal, start the workers now
            self.pack.contract()
            with self.store.writing():
                pass
            self.analyzer.start()

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.gate.flush()
        self.analyzer.close()
        self.store.close()

    def __enter__(self) -> FaceDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def hold(self) -> Iterator[FaceDB]:
        """Keep the home locked and the index open across several calls."""
        with self.store.hold():
            yield self

    @property
    def threshold(self) -> float:
        return self.pack.threshold

    # -- enrollment ------------------------------------------------------------------------
    def enroll(self, subject: str, paths: Sequence[PathLike | Upload], *, multi_face: MultiFace = "largest",
               metadata: dict[str, Any] | None = None, progress: ProgressFn | None = None,
               quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR) -> EnrollReport:
        """Add the faces in ``paths`` (files, directories, or uploaded bytes) to ``subject``,
        creating it if new. Photos already stored (same SHA-256) are skipped; a face below the
        quality floor is refused (``low_quality``; ``quality_floor=None`` to keep every face)."""
        with self.gate.audited("enroll", subject) as note:
            rep = self._ingest.enroll(subject, paths, multi_face=multi_face, metadata=metadata, progress=progress,
                                      quality_floor=quality_floor)
            note(rep.enrolled + rep.duplicates + len(rep.failed), rep.enrolled, bool(rep.failed))
        return rep

    def import_dir(self, root: PathLike, *, name_from: Literal["dir", "prefix"] = "dir",
                   multi_face: MultiFace = "largest", progress: ProgressFn | None = None,
                   quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR) -> ImportReport:
        """Bulk-enroll ``root/<subject>/<images>`` (``name_from='dir'``) or a flat folder whose file
        names start with the subject (``'prefix'``: ``subject01.happy``, ``Ann_Lee_0001.jpg``)."""
        with self.gate.audited("import") as note:
            rep = self._ingest.import_dir(root, name_from=name_from, multi_face=multi_face, progress=progress,
                                          quality_floor=quality_floor)
            note(rep.enrolled + rep.duplicates + rep.n_failed, rep.enrolled, bool(rep.n_failed))
        return rep

    # -- search ------------------------------------------------------------------------------
    def detect(self, image: ImageInput) -> list[Face]:
        """All faces in one image (path, bytes or ``Upload``), largest first."""
        return self._search.detect(image)

    def search(self, images: Sequence[ImageInput], *, k: int = 3, threshold: float | None = None,
               by: By = "subject", reference: bool = False, scoring: Scoring = "template") -> SearchReport:
        """Who is in each image? Every face, with its top-k subjects (or faces with by='face').

        Subjects are scored by their template (the normalised mean of all their faces), or with
        ``scoring="best"`` by their closest face."""
        with self.gate.audited("search") as note:
            rep = self._search.search(images, k=k, threshold=threshold, by=by, reference=reference, scoring=scoring)
            faces = [f for r in rep.results for f in r.faces]
            note(len(rep.results), len(faces), bool(rep.n_failed),
                 f"named {sum(f.identity is not None for f in faces)} of {plural(len(faces), 'face')}")
        return rep

    def verify(self, image: ImageInput, subject: str, *, threshold: float | None = None) -> VerifyResult:
        """1:1 — is this subject in ``image``? Answered for the image's face closest to the subject
        (``face_index`` and ``face_bbox`` say which: 0 = the largest face)."""
        with self.gate.audited("verify", subject) as note:
            res = self._search.verify(image, subject, threshold=threshold)
            note(1, 1, False, "match" if res.match else "no match")
        return res

    # -- management ---------------------------------------------------------------------------
    def delete(self, subject: str, *, vacuum: bool = False) -> DeleteReport:
        """Remove a subject, its images, faces and vectors: no search returns them afterwards.
        ``vacuum`` also rewrites the stores so the bytes are erased now."""
        with self.gate.audited("delete", subject) as note:
            with self.store.writing() as index:
                sid, n_images, n_faces = self.store.journal.delete_subject(index, subject)
            note(n_images, n_faces, subject=deleted_label(sid))
        rep = DeleteReport(subject=subject, images=n_images, faces=n_faces)
        if vacuum:
            rep.vacuum = self.vacuum()
        return rep

    def rename(self, old: str, new: str) -> None:
        validate_subject_name(new)
        with self.gate.audited("rename", old) as note, self.store.writing() as index:
            self.store.journal.rename_subject(index, old, new)
            note(0, 0, False, f"renamed from {old}"[:128], subject=new)

    def subjects(self) -> list[SubjectInfo]:
        return [SubjectInfo(**row) for row in self.catalog.subject_rows()]

    def show(self, subject: str) -> SubjectDetail:
        return SubjectDetail(**self.catalog.subject_detail(subject))

    def failures(self, subject: str | None = None, reason: str | None = None) -> list[FailureRecord]:
        return [FailureRecord(**f) for f in self.catalog.failures(subject=subject, reason=reason)]

    def face_thumbnail(self, face_id: int, size: int = 112) -> bytes | None:
        """A JPEG of an enrolled face, cropped from its source photo while that file is on disk
        and unchanged; None when it is not (facedb keeps no copy of photos)."""
        from .analysis.thumbnails import face_thumbnail

        return face_thumbnail(self.catalog, face_id, size)

    def stats(self) -> Stats:
        return self._maint.stats()

    def packs(self) -> list[PackStatus]:
        """Every model pack facedb knows, the active one, and this database's faces of each."""
        return self._maint.packs()

    # -- integrity -----------------------------------------------------------------------------
    def check(self, repair: bool = False) -> CheckReport:
        """Compare the catalog with the index; ``repair`` fixes drift from the catalog."""
        if not repair:
            return self._maint.check(repair=False)
        with self.gate.audited("repair") as note:
            rep = self._maint.check(repair=True)
            note(0, rep.catalog_faces, False, "clean" if rep.clean else "repaired")
        return rep

    def index_face_ids(self) -> set[int]:
        """Face ids the search index holds for the active pack (a diagnostic: ``check``
        compares them with the catalog's)."""
        with self.store.reading() as index:
            return index.ids(self.pack.contract())

    def vacuum(self) -> VacuumReport:
        """Rewrite every store so deleted embeddings are physically gone from disk."""
        with self.gate.audited("vacuum"):
            return self._maint.vacuum()

    def reindex(self, progress: ProgressFn | None = None) -> ReindexReport:
        """Re-embed every stored image (from its source file) with the loaded pack."""
        with self.gate.audited("reindex") as note:
            rep = self._maint.reindex(progress)
            note(rep.reindexed + len(rep.failed), rep.reindexed, bool(rep.failed))
        return rep

    def migrate_to(self, *, db_url: str | None = None, chroma_url: str | None = None,
                   home: PathLike | None = None) -> MigrateReport:
        """Copy this database to other stores (e.g. PostgreSQL + a Chroma server, or a new
        embedded home), verified by ``check`` there; this one is left as it is."""
        from pathlib import Path

        from .operations.migrate import migrate

        target_home = Path(home).expanduser().absolute() if home else self.settings.home
        if not chroma_url and target_home == self.settings.home:
            raise FacedbError("give the target: --to-chroma-url (a Chroma server) or --to-home (a new directory)")
        if not db_url and not home:
            raise FacedbError("give the target catalog: --to-db-url, or --to-home for a SQLite file in it")
        target = FaceDB(home=target_home, db_url=db_url, chroma_url=chroma_url, pack=self.pack_name, workers=1)
        try:
            with self.gate.audited("migrate", detail=f"to {target.catalog.safe_url}"[:128]):
                return migrate(self, target)
        finally:
            target.close()

    # -- API keys and audit --------------------------------------------------------------------
    def create_key(self, name: str, scope: gatekeeper.Scope) -> KeyInfo:
        """A new API key for ``facedb serve``; the secret is in the result, and nowhere else."""
        gatekeeper.validate_key_name(name)
        gatekeeper.validate_scope(scope)
        key = gatekeeper.new_key()
        with self.gate.audited("key_create", detail=f"{name} ({scope})"):
            row = self.catalog.create_key(name, scope, gatekeeper.key_hash(key))
        return KeyInfo(**row, key=key)

    def keys(self) -> list[KeyInfo]:
        return [KeyInfo(**row) for row in self.catalog.keys()]

    def revoke_key(self, name: str) -> KeyInfo:
        with self.gate.audited("key_revoke", detail=name):
            return KeyInfo(**self.catalog.revoke_key(name))

    def audit(self, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        if since is not None:
            since = since.astimezone(timezone.utc) if since.tzinfo else since.replace(tzinfo=timezone.utc)
        self.gate.flush()
        return [AuditEntry(**row) for row in self.catalog.audit(since, limit)]
