"""Keeping the index honest: check and repair it from the catalog, vacuum (erase deleted
vectors' bytes), reindex (re-embed with the loaded pack), and the numbers behind ``stats``."""
from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..analysis.engines import PackInfo, known_packs
from ..analysis.packs import ActivePack
from ..analysis.pipeline import Analyzer
from ..catalog.core import REBUILDING, REINDEXING
from ..catalog.database import Catalog
from ..contract.models import CheckReport, FailedItem, PackStatus, ReindexReport, Stats, VacuumReport
from ..errors import FacedbError, ImageError, ModelError
from ..index.chroma_index import ChromaIndex
from ..store.journal import Journal
from ..store.stores import Store
from ..wording import plural

#: ``check`` searches for every indexed face with its own vector up to this many, a sample beyond
REACH_SAMPLE = 10_000
ProgressFn = Callable[[int], None]


class Maintenance:
    def __init__(self, store: Store, pack: ActivePack, analyzer: Analyzer) -> None:
        self.store = store
        self.pack = pack
        self.analyzer = analyzer

    # -- check / repair ----------------------------------------------------------------
    def check(self, repair: bool) -> CheckReport:
        """Compare the catalog with the index for the active pack, in this collection; ``repair``
        fixes drift from SQL.

        An index that cannot even be opened is reported; with ``repair`` it is deleted (it holds
        biometric data, so it is not kept aside) and rebuilt from the catalog's embeddings.
        """
        info = self.pack.info
        catalog = self.store.catalog
        with self.store.exclusive(open_index=False, recover=False):
            rec = catalog.index_pack(info.name) or info
            pending_del = sum(len(v) for v in catalog.pending_deletes().values())
            pending_idx = len(catalog.unindexed_faces(info.name))
            sql_ids = catalog.face_ids(info.name)
            error = None
            idx_ids: set[int] = set()
            checked, unreachable = 0, list[int]()
            index: ChromaIndex | None = None
            try:
                index = self.store.open_index(recover=False)
                idx_ids = index.ids(rec)
                checked, unreachable = self._unreachable(index, rec, idx_ids)
            except ModelError:
                raise
            except Exception as exc:
                error = str(exc)
            report = CheckReport(pack=info.name, catalog_faces=len(sql_ids), index_faces=len(idx_ids),
                                 missing_from_index=sorted(sql_ids - idx_ids),
                                 orphans_in_index=sorted(idx_ids - sql_ids), pending_index=pending_idx,
                                 pending_deletes=pending_del, index_error=error, reach_checked=checked,
                                 unreachable_in_index=unreachable, stale_templates=catalog.stale_templates(info.name))
            if repair and not report.clean:
                report.repairs = self._repair(index if error is None else None, rec, bool(report.unreachable_in_index))
                stale = catalog.stale_templates(info.name)
                if stale:
                    catalog.rebuild_templates(info.name, stale)
                    report.repairs.append(f"recomputed {plural(len(stale), 'template')}")
                report.repaired = True
        return report

    def _repair(self, index: ChromaIndex | None, rec: PackInfo, unreachable: bool) -> list[str]:
        """Bring the index in line with the catalog; what was done. Caller holds ``writing()``."""
        catalog, journal = self.store.catalog, self.store.journal
        done: list[str] = []
        if index is None:  # it will not open: start from an empty one, for every collection
            index = self.store.reset_index()
            for each in collection_catalogs(catalog):
                each_journal = Journal(each)
                each_journal.forget_pending_deletes()
                for model in each.models_in_use():
                    other = each.index_pack(model)
                    if other is not None:
                        each_journal.add_from_catalog(index, other)
            done.append("reset the index and rebuilt it from the catalog")
        else:
            # Replay first (it indexes faces whose Chroma add finished but whose SQL mark did
            # not), then compare again: only what is still wrong is drift to fix.
            journal.replay(index)
            done.append("replayed the journal")
            sql_now, idx_now = catalog.face_ids(rec.name), index.ids(rec)
            if idx_now - sql_now:
                index.erase(rec, sorted(idx_now - sql_now))
                done.append(f"removed {plural(len(idx_now - sql_now), 'orphan')}")
            if sql_now - idx_now:
                journal.add_from_catalog(index, rec, sorted(sql_now - idx_now))
                done.append(f"added {len(sql_now - idx_now)} missing")
            if unreachable:  # only a new graph reconnects them
                journal.rebuild(index, rec)
                done.append("rebuilt the collection")
        self.store.mark_recovered()
        return done

    def _unreachable(self, index: ChromaIndex, info: PackInfo, idx_ids: set[int]) -> tuple[int, list[int]]:
        """(faces checked, faces the index holds but cannot find with their own vector).

        Every indexed face up to ``REACH_SAMPLE``, a random sample of that size beyond. A face
        found unreachable is checked again on a fresh Chroma client before it is reported (a
        client's first answers can be short right after a crash; see ``ChromaIndex.query``).
        """
        ids, mat = self.store.catalog.embeddings(info.name)
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

    # -- vacuum -------------------------------------------------------------------------
    def vacuum(self) -> VacuumReport:
        """Rewrite every store (every collection's index) so deleted embeddings are physically gone from disk."""
        catalog, home = self.store.catalog, self.store.settings.home
        with self.store.exclusive() as index:
            before = disk_bytes(home)
            # Every collection; every pack this database ever used, even one whose last face was deleted.
            jobs = [(Journal(each), rec) for each in collection_catalogs(catalog)
                    for model in sorted(set(each.models_in_use()) | set(each.recorded_packs()))
                    if (rec := each.index_pack(model)) is not None]
            if not self.store.settings.chroma_url:
                # The embedded index is rebuilt from nothing: Chroma may keep a deleted collection's
                # segment files (and its log) where no rebuild of the live ones would reach them.
                # Journaled first: a process killed before the rebuilds end is finished by the next.
                for journal, rec in jobs:
                    journal.catalog.set_flag(REBUILDING, rec.name, True)
                index = self.store.reset_index()
            for journal, rec in jobs:
                journal.rebuild(index, rec)
            if not self.store.settings.chroma_url:  # the embedded index's own files
                self.store.close_index()
                chroma = self.store.settings.chroma_path
                _sqlite_vacuum(chroma / "chroma.sqlite3")
                _remove_orphan_segments(chroma)
            catalog.compact()
            after = disk_bytes(home)
        return VacuumReport(bytes_before=before, bytes_after=after)

    # -- reindex ------------------------------------------------------------------------
    def reindex(self, progress: ProgressFn | None) -> ReindexReport:
        """Re-embed every stored image (from its source file) with the loaded pack.

        Journaled as ``reindexing:<pack>``: an interrupted reindex refuses searches of that pack
        until ``reindex`` runs again. Uploaded photos are not kept, so they cannot be re-embedded:
        they are reported and their faces of this pack dropped."""
        info = self.pack.info
        catalog = self.store.catalog
        with self.store.exclusive(open_index=False):
            catalog.set_flag(REINDEXING, info.name, True)
            catalog.record_pack(info)
        images = catalog.images_for_reindex()
        failed: list[FailedItem] = []
        done = 0
        with self.store.exclusive() as index:
            index.drop(info.name, catalog.space)
            readable: dict[int, tuple[int, int, str, str]] = {}

            def inputs() -> Iterator[tuple[int, bytes, str]]:
                for key, (image_id, path, digest, subject_id, source) in enumerate(images):
                    try:
                        if source != "file":
                            raise ImageError("not_on_disk", f"{path}: an uploaded photo (facedb keeps no copy); "
                                                            "enroll it again to embed it with this pack")
                        data = _read_unchanged(Path(path), digest)
                    except ImageError as exc:
                        failed.append(FailedItem(path=path, reason=exc.reason, message=str(exc)))
                        catalog.replace_face(image_id, subject_id, info.name, None)
                        continue
                    readable[key] = (image_id, subject_id, path, digest)
                    yield key, data, path

            for a in self.analyzer.stream(inputs(), len(images), max_faces=1):
                image_id, subject_id, path, _ = readable[a.key]
                face = a.faces[0] if a.faces and a.faces[0].embedding is not None else None
                if face is None:
                    failed.append(FailedItem(path=path, reason=a.reason or "no_face",
                                             message=a.message or f"{path}: no face found by pack {info.name}"))
                else:
                    done += 1
                catalog.replace_face(image_id, subject_id, info.name, face)
                if progress:
                    progress(1)
            self.store.journal.add_from_catalog(index, info)
            catalog.set_flag(REINDEXING, info.name, False)
        return ReindexReport(pack=info.name, reindexed=done, failed=failed)

    # -- numbers -----------------------------------------------------------------------
    def stats(self) -> Stats:
        n_sub, n_img, reasons = self.store.catalog.counts()
        settings = self.store.settings
        return Stats(home=str(settings.home), catalog=self.store.catalog.safe_url, pack=self.pack.name,
                     subjects=n_sub, images=n_img, faces_by_pack=self.store.catalog.models_in_use(),
                     failures_by_reason=reasons, disk_bytes=disk_bytes(settings.home))

    def packs(self) -> list[PackStatus]:
        in_use = self.store.catalog.models_in_use()
        out = []
        for name, desc in sorted(known_packs().items()):
            rec = self.store.catalog.pack_record(name)
            out.append(PackStatus(name=name, description=desc, faces=in_use.get(name, 0), active=name == self.pack.name,
                                  dim=rec.dim if rec else None, fingerprint=rec.fingerprint if rec else None))
        return out


def collection_catalogs(catalog: Catalog) -> list[Catalog]:
    """The catalog bound to each collection of the database, in turn."""
    return [catalog.scoped(cid, name) for cid, name, _ in catalog.collection_spaces()]


def clean_chroma_folder(path: Path) -> VacuumReport:
    """Erase what deleted collections left in a Chroma data folder (a ``chroma run --path``, with
    that server stopped): HNSW segment folders no live segment refers to, then VACUUM of its
    ``chroma.sqlite3``. Chroma keeps a deleted collection's files, deleted vectors included, so
    after ``facedb vacuum`` on a Chroma server this finishes the erasure on the server's disk."""
    db = path / "chroma.sqlite3"
    if not db.is_file():
        raise FacedbError(f"{path} is not a Chroma data folder (no chroma.sqlite3 in it)")
    before = disk_bytes(path)
    _remove_orphan_segments(path)
    _sqlite_vacuum(db)
    return VacuumReport(bytes_before=before, bytes_after=disk_bytes(path))


def _read_unchanged(path: Path, digest: str) -> bytes:
    from ..analysis import files

    data = files.read_bytes(path)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ImageError("changed", f"{path}: the file changed since it was enrolled")
    return data


def disk_bytes(root: Path) -> int:
    """Total size of the files under ``root``; files that vanish meanwhile are skipped."""
    total = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
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
    import shutil

    db = chroma_path / "chroma.sqlite3"
    if not db.exists():
        return
    con = sqlite3.connect(str(db))
    try:
        live = {row[0] for row in con.execute("SELECT id FROM segments")}
    finally:
        con.close()
    for child in chroma_path.iterdir():
        if child.is_dir() and child.name not in live:
            shutil.rmtree(child, ignore_errors=True)
