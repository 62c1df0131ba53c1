"""``FaceDB``: the Python API. The CLI and the HTTP server are thin layers over it.

It is a facade: each verb is one call into ``facedb.operations`` — ``enroll`` (enrollment),
``search`` (1:N, 1:1), ``maintenance`` (check, repair, vacuum, reindex), ``gatekeeper`` (API
keys, audit) — over ``facedb.store`` (the catalog, the index and the right to use them).
Thread-safe: searches run in parallel, writes one at a time, and every write and search is
audited.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import IO, Any, Literal

from . import trace
from .analysis.engines import Face
from .analysis.files import Upload
from .analysis.packs import ActivePack
from .analysis.pipeline import Analyzer, default_workers
from .analysis.quality import DEFAULT_QUALITY_FLOOR, QualityFloor, format_quality_floor
from .analysis.video import DEFAULT_SAMPLE_FPS
from .catalog.core import DEFAULT_COLLECTION, DEFAULT_PACK_KEY
from .catalog.subjects import deleted_label
from .config import DEFAULT_PACK, Settings, resolve_settings
from .contract.discover import DEFAULT_CLUSTER_THRESHOLD, DiscoverReport, ForgetReport, validate_run_name
from .contract.faces import FaceSearchReport, FacesRemoveReport, FacesReport, MergeReport, MoveReport
from .contract.lifecycle import BackupReport, RestoreReport
from .contract.models import (
    AuditEntry,
    CheckReport,
    CollectionInfo,
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
from .contract.names import normalize_subject_name, validate_subject_name
from .contract.requests import (
    AuditQuery,
    CollectionCreateBody,
    DiscoverOptions,
    EnrollClusterBody,
    EnrollOptions,
    FaceSearchOptions,
    KeyCreateBody,
    SearchOptions,
    VerifyOptions,
    parse,
)
from .contract.review import ReviewReport
from .errors import FacedbError, NotFoundError, UsageError
from .operations import gatekeeper
from .operations.collections import CollectionPack
from .operations.enroll import Ingestor, MultiFace, write_batch_size
from .operations.faces import FaceEditor
from .operations.maintenance import Maintenance
from .operations.migrate import MigrateReport
from .operations.search import By, ImageInput, Scoring, Searcher
from .store.stores import CollectionStore, Store
from .wording import plural

ProgressFn = Callable[[int], None]
PathLike = str | os.PathLike[str]


class _Elsewhere(Exception):
    """``search_async``: the search goes the usual way (not a ``FacedbError``: not audited)."""


class FaceDB:
    """A face database in a home directory.

    By default the home is locked only while a call runs, so several processes can share it;
    ``exclusive=True`` (what ``facedb serve`` uses) holds it, with the index open and the worker
    pool started, until ``close()``.

    >>> db = FaceDB(home="faces")                       # doctest: +SKIP
    >>> db.enroll("alice", ["alice1.jpg", "alice2.jpg"])  # doctest: +SKIP
    >>> db.search(["party.jpg"]).results[0].faces[0].identity  # doctest: +SKIP
    'alice'

    A database holds several collections (galleries), each with its own subjects, pack and
    threshold; a ``FaceDB`` is bound to one (``collection``, default ``default``), and
    ``db.collection(name)`` is a view bound to another that shares this one's stores.
    """

    def __init__(self, home: PathLike | None = None, *, db_url: str | None = None, pack: str | None = None,
                 models_dir: PathLike | None = None, lock_timeout: float | None = None, workers: int | None = None,
                 threshold: float | None = None, write_batch: int | None = None, exclusive: bool = False,
                 chroma_url: str | None = None, collection: str = DEFAULT_COLLECTION) -> None:
        with trace.span("facedb.open"):
            self._open(resolve_settings(home, db_url, pack, models_dir, lock_timeout, chroma_url), workers,
                       threshold, write_batch, exclusive, collection)

    def _open(self, settings: Settings, workers: int | None, threshold: float | None, write_batch: int | None,
              exclusive: bool, collection: str) -> None:
        self.settings = settings
        self._root = True
        self._exclusive = exclusive
        self._batch = write_batch_size(write_batch)
        self._workers = default_workers() if workers is None else max(1, workers)
        #: analysis workers per pack, shared by this FaceDB and its collection views
        self._analyzers: dict[str, Analyzer] = {}
        self._packs: dict[str, ActivePack] = {}
        self._views: dict[str, FaceDB] = {}
        self._shared_lock = threading.Lock()
        base = Store(self.settings, exclusive=exclusive)
        try:
            with base.exclusive(open_index=False, recover=False):  # one process migrates at a time
                base.catalog.upgrade()
                if base.catalog.get_setting(DEFAULT_PACK_KEY) is None:
                    base.catalog.set_setting(DEFAULT_PACK_KEY, self.settings.pack or DEFAULT_PACK)
                base.catalog.ensure_default_collection()
                base.catalog.refresh_statistics()
            self.gate = gatekeeper.Gatekeeper(base.catalog)
            self._bind(base, self._collection_row(base, collection), threshold, explicit_pack=self.settings.pack)
        except BaseException:
            base.close()
            raise
        if exclusive:  # a server: load the model, replay the journal, start the workers now
            self.pack.contract()
            with self.store.writing():
                pass
            self.analyzer.start()

    @staticmethod
    def _collection_row(base: Store, name: str) -> dict[str, Any]:
        row = base.catalog.collection_row(name)
        if row is None:
            raise NotFoundError(f"no collection named {name!r}: create it with `facedb collections create {name}` "
                                "(see `facedb collections list`)")
        return row

    def _bind(self, base: Store, row: dict[str, Any], threshold: float | None, explicit_pack: str | None) -> None:
        """Bind this object to collection ``row``: its catalog, store view, pack and operations."""
        self.collection_name: str = row["name"]
        self.catalog = base.catalog.scoped(row["id"], row["name"])
        self.store = CollectionStore(base, self.catalog)
        default_pack = base.catalog.get_setting(DEFAULT_PACK_KEY) or DEFAULT_PACK
        self.pack_name: str = explicit_pack or row["pack"] or default_pack
        self.analyzer = self._analyzer(self.pack_name)
        thr = threshold if threshold is not None else row["threshold"]
        self.pack = CollectionPack(self.catalog, self.pack_name, self.settings.models_dir, thr,
                                   shared=self._packs.setdefault(self.pack_name, ActivePack(
                                       base.catalog, self.pack_name, self.settings.models_dir)))
        self._ingest = Ingestor(self.store, self.pack, self.analyzer, self._batch)
        self._search = Searcher(self.store, self.pack, self.analyzer)
        self._maint = Maintenance(self.store, self.pack, self.analyzer)
        self._faces = FaceEditor(self.store, self.pack, self._search)

    def _analyzer(self, pack: str) -> Analyzer:
        with self._shared_lock:
            found = self._analyzers.get(pack)
            if found is None:
                found = self._analyzers[pack] = Analyzer(pack, self.settings.models_dir, self._workers)
            return found

    # -- collections -----------------------------------------------------------------------
    def collection(self, name: str) -> FaceDB:
        """A view of collection ``name``: the same stores (home lock, catalog, index client),
        gatekeeper and, for the same pack, analysis workers. Views are cached; closing one does
        nothing (the FaceDB it came from closes everything)."""
        if name == self.collection_name:
            return self
        with self._shared_lock:
            view = self._views.get(name)
        if view is not None:
            return view
        base = self.store.base
        row = self._collection_row(base, name)
        view = object.__new__(FaceDB)
        view.settings, view.gate, view._root, view._exclusive = self.settings, self.gate, False, self._exclusive
        view._batch, view._workers = self._batch, self._workers
        view._analyzers, view._packs, view._views, view._shared_lock = (self._analyzers, self._packs, self._views,
                                                                        self._shared_lock)
        view._bind(base, row, None, explicit_pack=None)
        if self._exclusive:
            view.analyzer.start()
        with self._shared_lock:
            return self._views.setdefault(name, view)

    def collections(self) -> list[CollectionInfo]:
        """Every collection of the database, with its subject and face counts."""
        return [CollectionInfo(**row) for row in self.store.base.catalog.collection_rows()]

    def create_collection(self, name: str, pack: str | None = None, threshold: float | None = None) -> CollectionInfo:
        """A new, empty collection; ``pack`` / ``threshold`` default to the database's pack and its
        calibrated threshold."""
        from .analysis.engines import known_packs
        from .operations.collections import validate_collection_name, validate_threshold

        validate_collection_name(name)
        body = parse(CollectionCreateBody, {"name": name, "pack": pack, "threshold": threshold})
        pack = body.pack
        thr = validate_threshold(body.threshold)
        if pack is not None and pack not in known_packs() and not os.path.isdir(pack):
            raise FacedbError(f"unknown pack {pack!r}: one of {', '.join(sorted(known_packs()))}, or a directory "
                              "of InsightFace ONNX files (see `facedb packs`)")
        with self.gate.audited("collection_create", detail=name[:128]):
            row = self.store.base.catalog.create_collection(name, pack, thr)
        return CollectionInfo(**row)

    def delete_collection(self, name: str) -> CollectionInfo:
        """Erase a collection the way a subject delete does: its subjects, images, faces,
        vectors, templates and failures leave SQL and the index, and its index files are removed
        (``ChromaIndex.drop(erase=True)``): no byte of its embeddings remains. ``default`` cannot be deleted."""
        if name == DEFAULT_COLLECTION:
            raise FacedbError("the collection 'default' cannot be deleted (delete its subjects instead)")
        base = self.store.base
        with self.gate.audited("collection_delete", detail=name[:128]) as note:
            with base.writing() as index:
                n_subjects, n_faces = base.journal.delete_collection(index, name)
            note(n_subjects, n_faces)
        with self._shared_lock:
            self._views.pop(name, None)
        return CollectionInfo(name=name, subjects=n_subjects, faces=n_faces)

    def _audited(self, action: str, subject: str | None = None, detail: str | None = None) -> Any:
        """The audit entry of a call on this collection."""
        return self.gate.audited(action, subject, detail, collection=self.collection_name)

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the stores, the workers and every view (a view's own ``close`` does nothing)."""
        if not getattr(self, "_root", False):
            return
        self.gate.flush()
        for analyzer in list(self._analyzers.values()):
            analyzer.close()
        self.store.base.close()

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
    def enroll(self, subject: str, paths: Sequence[PathLike | Upload], *, multi_face: MultiFace = "resolve",
               metadata: dict[str, Any] | None = None, progress: ProgressFn | None = None,
               quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR, aligned: bool = False,
               face: int | None = None) -> EnrollReport:
        """Add the faces in ``paths`` (files, directories, or uploaded bytes) to ``subject``,
        creating it if new. Photos already stored (same SHA-256) are skipped; a face below the
        quality floor is refused (``low_quality``; ``quality_floor=None`` to keep every face).
        ``metadata`` may be JSON text and ``quality_floor`` its text form, as the CLI has them.

        A photo with several faces is resolved (``multi_face="resolve"``): the one face consistent
        with the subject's other faces is taken, else it is refused as ``ambiguous_faces``
        (``facedb.operations.resolve``); ``"largest"`` takes the largest, ``"skip"`` refuses it;
        ``face=N`` takes face N (0 = the largest) of the one photo given. ``aligned``: the photos
        are aligned 112x112 face crops, embedded whole without detection."""
        opts = EnrollOptions.of(multi_face, metadata, quality_floor, aligned=aligned, face=face)
        subject = normalize_subject_name(subject)
        with self._audited("enroll", subject) as note:
            rep = self._ingest.enroll(subject, paths, multi_face=opts.multi_face, metadata=opts.metadata,
                                      progress=progress, quality_floor=opts.floor, aligned=opts.aligned,
                                      face=opts.face)
            note(rep.enrolled + rep.duplicates + len(rep.failed), rep.enrolled, bool(rep.failed))
        return rep

    def import_dir(self, root: PathLike, *, name_from: Literal["dir", "prefix"] = "dir",
                   multi_face: MultiFace = "resolve", progress: ProgressFn | None = None,
                   quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR, aligned: bool = False) -> ImportReport:
        """Bulk-enroll ``root/<subject>/<images>`` (``name_from='dir'``) or a flat folder whose file
        names start with the subject (``'prefix'``: ``subject01.happy``, ``Ann_Lee_0001.jpg``)."""
        opts = EnrollOptions.of(multi_face, None, quality_floor, aligned=aligned)
        with self._audited("import") as note:
            rep = self._ingest.import_dir(root, name_from=name_from, multi_face=opts.multi_face, progress=progress,
                                          quality_floor=opts.floor, aligned=opts.aligned)
            note(rep.enrolled + rep.duplicates + rep.n_failed, rep.enrolled, bool(rep.n_failed))
        return rep

    # -- search ------------------------------------------------------------------------------
    def detect(self, image: ImageInput) -> list[Face]:
        """All faces in one image (path, bytes or ``Upload``), largest first."""
        return self._search.detect(image)

    def search(self, images: Sequence[ImageInput], *, k: int = 3, threshold: float | None = None,
               by: By = "subject", reference: bool = False, scoring: Scoring = "template",
               sample_fps: float = DEFAULT_SAMPLE_FPS, progress: ProgressFn | None = None,
               aligned: bool = False) -> SearchReport:
        """Who is in each image? Every face, with its top-k subjects (or faces with by='face').
        A video (recognised by its first bytes) is answered by its ``appearances``: faces followed
        across frames sampled ``sample_fps`` times a second, each named by a vote of its frames.
        ``progress(1)`` is called as each input is answered (and ``progress(0)`` after each
        analysed frame of a video: raising from it stops the search).

        Subjects are scored by their template (the normalised mean of all their faces), or with
        ``scoring="best"`` by their closest face. ``aligned``: the images are aligned 112x112 face
        crops, each embedded whole without detection."""
        opts = parse(SearchOptions, {"k": k, "threshold": threshold, "by": by, "reference": reference,
                                     "scoring": scoring, "sample_fps": sample_fps, "aligned": aligned})
        with self._audited("search") as note:
            rep = self._search.search(images, **opts.keywords(), progress=progress)
            faces = [f for r in rep.results for f in r.faces]
            note(len(rep.results), len(faces), bool(rep.n_failed),
                 f"named {sum(f.identity is not None for f in faces)} of {plural(len(faces), 'face')}")
        return rep

    async def search_async(self, image: Upload, *, k: int = 3, threshold: float | None = None,
                           by: By = "subject", reference: bool = False, scoring: Scoring = "template",
                           sample_fps: float = DEFAULT_SAMPLE_FPS, aligned: bool = False) -> SearchReport | None:
        """``search([image])`` on the running event loop, when it can be answered there without a
        thread (``Searcher.search_async``: a photo, the default scoring, a worker idle); else None,
        and the caller runs ``search`` in a thread. Audited as ``search`` is."""
        if not self._search.analyzer.idle():  # the usual case under load: declined before any set-up
            return None
        opts = parse(SearchOptions, {"k": k, "threshold": threshold, "by": by, "reference": reference,
                                     "scoring": scoring, "sample_fps": sample_fps, "aligned": aligned})
        kw = opts.keywords()
        del kw["sample_fps"]  # only a video uses it, and a video goes the usual way
        try:
            with self._audited("search") as note:
                rep = await self._search.search_async(image, **kw)
                if rep is None:
                    raise _Elsewhere  # not audited here: the search in a thread will be
                faces = [f for r in rep.results for f in r.faces]
                note(len(rep.results), len(faces), bool(rep.n_failed),
                     f"named {sum(f.identity is not None for f in faces)} of {plural(len(faces), 'face')}")
        except _Elsewhere:
            return None
        return rep

    def discover(self, paths: Sequence[PathLike | bytes | Upload], *, threshold: float | None = None,
                 cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD, save: str | None = None,
                 sample_fps: float = DEFAULT_SAMPLE_FPS, progress: ProgressFn | None = None) -> DiscoverReport:
        """Who are the people in these photos (files, folders, or uploaded bytes)? Every face, in
        exactly one cluster per person: enrolled people named as ``search`` names them, the others
        grouped by face (``cluster_threshold``: the mean cosine distance under which two groups
        merge; lower splits more). Read-only, unless ``save`` names the run to keep (its faces,
        clusters and embeddings, in the catalog only) for ``enroll_cluster``. A video gives one face
        per track (a face followed across frames sampled ``sample_fps`` times a second), with
        ``frame_s``: when its best frame is."""
        from .operations.discover import Discoverer, saved_rows

        opts = parse(DiscoverOptions, {"threshold": threshold, "cluster_threshold": cluster_threshold,
                                       "sample_fps": sample_fps})
        if save is not None:
            validate_run_name(save)
        with self._audited("discover") as note:
            found = Discoverer(self._search).discover(paths, threshold=opts.threshold,
                                                      cluster_threshold=opts.cluster_threshold,
                                                      sample_fps=opts.sample_fps, progress=progress)
            rep = found.report
            if save is not None:
                self.catalog.save_discover_run(save, rep.pack, rep.threshold, rep.cluster_threshold,
                                               saved_rows(found.faces, found.cluster_of))
                rep.run = save
            note(found.images, rep.faces, bool(rep.failed),
                 f"{plural(len(rep.clusters), 'cluster')} of {plural(rep.faces, 'face')}"
                 + (" saved" if save is not None else ""))
        return rep

    def forget_run(self, run: str) -> ForgetReport:
        """Erase a saved discover run: its faces, clusters and embeddings leave the catalog."""
        with self._audited("discover_forget") as note:
            faces, clusters = self.catalog.forget_discover_run(run)
            note(0, faces)
        return ForgetReport(run=run, faces=faces, clusters=clusters)

    def enroll_cluster(self, run: str, cluster_id: int, name: str, *,
                       quality_floor: QualityFloor = DEFAULT_QUALITY_FLOOR) -> EnrollReport:
        """Enroll the faces of cluster ``cluster_id`` of a saved run as subject ``name``: their
        photos go through ``enroll`` (duplicates, the quality floor and every other enrollment
        rule apply). Photos where the cluster's face is not the largest, or that were sent as bytes,
        are reported as failed (``not_largest_face``, ``not_on_disk``) rather than guessed."""
        from .operations.discover import cluster_inputs

        floor = quality_floor if isinstance(quality_floor, str) else format_quality_floor(quality_floor)
        parse(EnrollClusterBody, {"name": name, "quality_floor": floor})
        paths, failed = cluster_inputs(self.catalog.discover_cluster_faces(run, cluster_id))
        rep = (self.enroll(name, paths, multi_face="largest", quality_floor=quality_floor) if paths
               else EnrollReport(subject=validate_subject_name(name)))
        rep.failed.extend(failed)
        return rep

    def verify(self, image: ImageInput, subject: str, *, threshold: float | None = None,
               aligned: bool = False) -> VerifyResult:
        """1:1 — is this subject in ``image``? Answered for the image's face closest to the subject
        (``face_index`` and ``face_bbox`` say which: 0 = the largest face)."""
        opts = parse(VerifyOptions, {"subject": subject, "threshold": threshold, "aligned": aligned})
        subject = normalize_subject_name(opts.subject)
        with self._audited("verify", subject) as note:
            res = self._search.verify(image, subject, threshold=opts.threshold, aligned=opts.aligned)
            note(1, 1, False, "match" if res.match else "no match")
        return res

    # -- management ---------------------------------------------------------------------------
    def delete(self, subject: str, *, vacuum: bool = False) -> DeleteReport:
        """Remove a subject, its images, faces and vectors: no search returns them afterwards,
        and no byte of its embeddings stays in the home's files (``Journal.erase_faces``; a
        Chroma server's own file needs ``FACEDB_CHROMA_DATA``). ``vacuum`` also rebuilds the index."""
        subject = normalize_subject_name(subject)
        with self._audited("delete", subject) as note:
            with self.store.writing() as index:
                sid, n_images, n_faces = self.store.journal.delete_subject(index, subject)
            note(n_images, n_faces, subject=deleted_label(sid))
        rep = DeleteReport(subject=subject, images=n_images, faces=n_faces)
        if vacuum:
            rep.vacuum = self.vacuum()
        return rep

    def rename(self, old: str, new: str) -> None:
        old, new = normalize_subject_name(old), validate_subject_name(new)
        with self._audited("rename", old) as note, self.store.writing() as index:
            self.store.journal.rename_subject(index, old, new)
            note(0, 0, False, f"renamed from {old}"[:128], subject=new)

    def subjects(self) -> list[SubjectInfo]:
        return [SubjectInfo(**row) for row in self.catalog.subject_rows()]

    def show(self, subject: str) -> SubjectDetail:
        return SubjectDetail(**self.catalog.subject_detail(normalize_subject_name(subject)))

    def failures(self, subject: str | None = None, reason: str | None = None) -> list[FailureRecord]:
        subject = normalize_subject_name(subject) if subject else subject
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
        with self._audited("repair") as note:
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
        with self._audited("reindex") as note:
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
    def create_key(self, name: str, scope: gatekeeper.Scope, collection: str | None = None) -> KeyInfo:
        """A new API key for ``facedb serve``; the secret is in the result, and nowhere else.
        ``collection`` limits the key to that collection (403 anywhere else)."""
        gatekeeper.validate_key_name(name)
        gatekeeper.validate_scope(scope)
        body = parse(KeyCreateBody, {"name": name, "scope": scope, "collection": collection})
        scope, collection = body.scope, body.collection
        if collection is not None:
            self._collection_row(self.store.base, collection)
        key = gatekeeper.new_key()
        detail = f"{name} ({scope}" + (f", {collection})" if collection else ")")
        with self.gate.audited("key_create", detail=detail[:128]):
            row = self.store.base.catalog.create_key(name, scope, gatekeeper.key_hash(key), collection)
        return KeyInfo(**row, key=key)

    def keys(self) -> list[KeyInfo]:
        return [KeyInfo(**row) for row in self.store.base.catalog.keys()]

    def revoke_key(self, name: str) -> KeyInfo:
        with self.gate.audited("key_revoke", detail=name):
            try:
                return KeyInfo(**self.store.base.catalog.revoke_key(name))
            finally:
                self.gate.forget_keys()  # the key fails on the next request, not KEY_TRUST_S later

    def audit(self, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        """The audit trail, oldest first: entries ``since`` a time (or a duration ago as text:
        ``"30m"``, ``"7d"``), the newest ``limit``."""
        q = parse(AuditQuery, {"since": since, "limit": limit})
        since, limit = q.since, q.limit
        if since is not None:
            since = since.astimezone(timezone.utc) if since.tzinfo else since.replace(tzinfo=timezone.utc)
        self.gate.flush()
        return [AuditEntry(**row) for row in self.store.base.catalog.audit(since, limit)]

    # -- review ----------------------------------------------------------------------------------
    def review(self) -> ReviewReport:
        """What looks wrong in this collection's gallery: faces that look like somebody else
        (``outliers``), two names for one person (``look_alikes``) and one photo under two names
        (``duplicates``), each with its distances (see ``facedb.operations.review``). Read-only."""
        from .operations.review import Reviewer

        return Reviewer(self.store, self.pack).review()
    # -- single faces (faces list/remove/move, merge, search --face-id) ---------------------------
    def faces(self, subject: str) -> FacesReport:
        """Every face of ``subject``: its photo, box, quality and cosine distance to the subject's
        template (the normalised mean of its faces): the faces to look at first are the far ones."""
        return self._faces.list_faces(normalize_subject_name(subject))

    def remove_faces(self, face_ids: Sequence[int], *, vacuum: bool = False) -> FacesRemoveReport:
        """Remove single faces (and photos left without one) from the catalog and the index, as a
        subject delete does: no search returns them afterwards; ``vacuum`` also erases the bytes
        now. A subject left without faces stays, empty (``delete`` removes it)."""
        with self._audited("faces_remove") as note:
            rep = self._faces.remove(face_ids)
            only = next(iter(rep.subjects)) if len(rep.subjects) == 1 else None
            note(rep.images, rep.faces, False, f"removed {plural(rep.faces, 'face')}", subject=only)
        if vacuum:
            rep.vacuum = self.vacuum()
        return rep

    def move_faces(self, face_ids: Sequence[int], to: str) -> MoveReport:
        """Give faces (with their photos) to subject ``to``, which must exist in this collection."""
        to = normalize_subject_name(to)
        with self._audited("faces_move", to) as note:
            rep = self._faces.move(face_ids, to)
            note(rep.images, len(rep.moved), False, f"moved {plural(len(rep.moved), 'face')}")
        return rep

    def merge(self, source: str, target: str) -> MergeReport:
        """SOURCE's photos and faces join TARGET (both of this collection) and SOURCE is deleted;
        TARGET keeps its metadata values and gains the keys only SOURCE had."""
        source, target = normalize_subject_name(source), normalize_subject_name(target)
        if source == target:
            raise UsageError(f"cannot merge subject {source!r} into itself")
        with self._audited("merge", target) as note:
            rep = self._faces.merge(source, target)
            note(rep.images, rep.faces, False, f"merged from {source}"[:128])
        return rep

    def search_face(self, face_id: int, *, k: int = 3, threshold: float | None = None, by: By = "subject",
                    scoring: Scoring = "template") -> FaceSearchReport:
        """Who is closest to enrolled face ``face_id`` (its stored embedding is the probe)? The
        face itself is left out (``excluded``), and its own subject is scored without it."""
        opts = parse(FaceSearchOptions, {"k": k, "threshold": threshold, "by": by, "scoring": scoring})
        with self._audited("search_face") as note:
            rep = self._faces.search_face(face_id, **opts.keywords())
            note(0, 1, False, "named" if rep.identity is not None else "unknown")
        return rep
    # -- backup and restore ------------------------------------------------------------------
    def backup(self, path: PathLike | IO[bytes]) -> BackupReport:
        """Write one consistent snapshot of the whole database (every collection, the keys
        hashed, the audit trail, the packs' contracts) to ``path`` (0600); writes go on meanwhile.
        See docs/storage.md "Backup and restore"."""
        from .operations.backup import backup

        self.gate.flush()
        with self.gate.audited("backup") as note:
            rep = backup(self, path)
            note(0, sum(rep.faces_by_pack.values()))
        return rep

    def restore(self, path: PathLike, *, reindex_from_images: bool = False) -> RestoreReport:
        """Restore the snapshot at ``path`` into this database, which must be empty; the index is
        built from the restored embeddings and every collection checked. A snapshot made with
        other model weights is refused unless ``reindex_from_images`` re-embeds its photos."""
        from .operations.backup import restore

        try:
            rep = restore(self, path, reindex_from_images=reindex_from_images)
        finally:
            self.gate.forget_keys()  # the snapshot's keys replace the ones this server trusted
        self.gate.record("restore", faces=rep.indexed_faces + rep.reindexed, outcome="ok" if rep.clean else "partial")
        return rep

    def _rebound(self) -> None:
        """Bind again to this collection's row, and forget the views: a restore replaced the
        collections (their ids, packs and thresholds) and the database's default pack."""
        with self._shared_lock:
            self._views.clear()
        self._bind(self.store.base, self._collection_row(self.store.base, self.collection_name), None,
                   explicit_pack=self.settings.pack)
