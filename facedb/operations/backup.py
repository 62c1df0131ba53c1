"""Backup and restore: one portable snapshot file of a database, and its restore into an empty one.

The snapshot is a zip file (written 0600) that any facedb reads, whatever the catalog it came
from or goes to (SQLite or PostgreSQL, so it also moves a database from one to the other):

- ``manifest.json`` (the last member): format and facedb version, the catalog's Alembic revision,
  the source dialect, each pack's contract (dimension, weights fingerprint: a restore refuses
  other weights), faces per pack and rows per table;
- ``tables/<table>.jsonl``: the rows, one JSON object per line, in primary-key order (times as
  ISO 8601 UTC); deflated;
- ``tables/<table>.<column>.bin``: a binary column's bytes (face embeddings: float32), row after
  row in the same order, each row's length in its JSON line; stored (embeddings do not compress).

- ``index/chroma.sqlite3``, ``index/<segment>/<file>`` (format 2, an embedded index only): the
  index's files, captured under the home's write lock with the catalog's read (the two belong
  together); ``manifest["index"]`` says whether they are there, the Chroma version that wrote
  them and the faces each collection held. A restore copies them instead of rebuilding the
  index (seconds instead of ~30 minutes at 1M faces), checks them against the catalog, and
  rebuilds from the embeddings when they are absent (a snapshot of a Chroma server's database,
  a format 1 snapshot), from another Chroma version, restored onto a Chroma server, or not
  matching the catalog. They hold nothing of a deleted subject: every delete erases its vectors
  and metadata from Chroma's files (``ChromaIndex.erase``), and the capture leaves out free
  SQLite pages and unused HNSW slots (``facedb.index.shipping``).

The catalog stays the system of record: the restored index is checked against it, never the
other way round. What is read, and how one instant is seen while a server keeps writing, is
``facedb.catalog.snapshot``.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from sqlalchemy import DateTime, Table, func, select
from sqlalchemy.exc import DBAPIError

from ..analysis.engines import load_engine
from ..catalog import snapshot
from ..catalog.core import DEFAULT_PACK_KEY, PACK_PREFIX, SCHEMA_HEAD
from ..catalog.models import Base
from ..contract.lifecycle import BackupReport, RestoreReport
from ..contract.models import CheckReport, FailedItem
from ..errors import FacedbError, ModelError, UsageError
from ..index import shipping
from ..index.chroma_index import CHROMA_SQLITE
from ..store.faults import crash_point

#: ``db`` below is a ``facedb.api.FaceDB`` (the operations do not import the layer above them).
FaceDB = Any

FORMAT = "facedb-backup"
FORMAT_VERSION = 2
#: Formats this version restores (1: no index files; the index is rebuilt).
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
#: zlib level of the row members: 1 compresses JSON lines about 5x at a fraction of level 6's CPU.
COMPRESS_LEVEL = 1


def _member(zf: zipfile.ZipFile, name: str, compress: bool) -> IO[bytes]:
    info = zipfile.ZipInfo(name, date_time=time.gmtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16
    if compress:
        info._compresslevel = COMPRESS_LEVEL  # type: ignore[attr-defined]  # what ZipFile(compresslevel=) sets
    return zf.open(info, "w", force_zip64=True)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# -- backup ----------------------------------------------------------------------------------
def _indexed_counts(catalog: Any, index: Any) -> dict[str, int]:
    """``{"<collection>/<pack>": faces}``: each collection's faces that the catalog marks indexed,
    for each pack in use; raises ``_NotShipped`` when the index holds another number."""
    from .maintenance import collection_catalogs

    out: dict[str, int] = {}
    for each in collection_catalogs(catalog):
        for model in sorted(each.models_in_use()):
            rec = each.index_pack(model)
            if rec is None:
                continue
            sql, held = int(each.count_indexed(model)), int(index.count(rec))
            if sql != held:
                raise _NotShipped(f"the index of collection {each.collection!r} holds {held} faces of pack "
                                  f"{model!r} where the catalog has {sql} indexed: `facedb check --repair` fixes it")
            out[f"{each.collection}/{model}"] = sql
    return out


class _NotShipped(Exception):
    """Why the index is not shipped (or a shipped one not used): the restore rebuilds it."""


def _read_consistently(db: FaceDB, stack: ExitStack) -> tuple[Any, list[shipping.ShippedFile], dict[str, Any]]:
    """The catalog's consistent read (a connection), the index files to ship (none: the restore
    rebuilds the index) and the manifest's ``index`` entry.

    The embedded index is captured with the catalog's read under the home's write lock (writes
    and searches wait: about a second per GB of catalog and index), after the journal replay
    that any write does first (a delete a killed process left half-done is finished, so its
    vectors are erased before the copy); its face counts must match the catalog's, collection by
    collection. A Chroma server's database is read as before, without the lock."""
    base = db.store.base
    catalog = base.catalog
    entry: dict[str, Any] = {"engine": "chroma", "shipped": False}
    if db.settings.chroma_url:
        entry["note"] = "the index is a Chroma server: a restore rebuilds it from the catalog"
        return stack.enter_context(snapshot.consistent_read(catalog)), [], entry
    try:
        with base.exclusive() as index:
            conn = stack.enter_context(snapshot.consistent_read(catalog))
            entry["faces"] = _indexed_counts(catalog, index)
            cap = shipping.capture(Path(index.path))
            stack.callback(cap.close)
    except Exception as exc:  # noqa: BLE001 - any failure of the index leaves the catalog's snapshot whole
        # The catalog is the system of record: a snapshot without the index is still complete.
        stack.close()
        entry.pop("faces", None)
        entry["note"] = f"{exc}; a restore rebuilds it from the catalog"
        return stack.enter_context(snapshot.consistent_read(catalog)), [], entry
    files = cap.finish()  # outside the lock: the SQLite copy's VACUUM
    entry.update(shipped=True, chromadb=shipping.chromadb_version(),
                 files=[{"name": f.name, "size": f.size, "stored": len(f.data)} for f in files])
    return conn, files, entry


def write_snapshot(db: FaceDB, out: IO[bytes]) -> dict[str, Any]:
    """Write the whole database (every collection, and the embedded index's files) as a
    snapshot to ``out`` (any writable binary stream, seekable or not); returns its manifest."""
    from .. import __version__

    catalog = db.store.base.catalog
    manifest: dict[str, Any] = {"format": FORMAT, "format_version": FORMAT_VERSION, "facedb_version": __version__,
                                "schema_revision": None,
                                "created_at": datetime.now(timezone.utc).isoformat(),
                                "source_dialect": catalog.engine.dialect.name, "tables": {}}
    with ExitStack() as stack:
        conn, files, manifest["index"] = _read_consistently(db, stack)
        zf = stack.enter_context(zipfile.ZipFile(out, "w", allowZip64=True))
        manifest["schema_revision"] = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        for table in snapshot.snapshot_tables():
            binary = snapshot.binary_columns(table)
            n = 0
            with _member(zf, f"tables/{table.name}.jsonl", compress=True) as fh:
                for rows in snapshot.read_rows(conn, table):
                    fh.write("".join(json.dumps(r, default=_plain, ensure_ascii=False) + "\n"
                                     for r in rows).encode("utf-8"))
                    n += len(rows)
            for column in binary:
                with _member(zf, f"tables/{table.name}.{column}.bin", compress=False) as fh:
                    lengths = io.BytesIO()
                    for values in snapshot.read_binary(conn, table, column):
                        fh.write(b"".join(values))
                        lengths.write(b"".join(len(v).to_bytes(4, "little") for v in values))
                with _member(zf, f"tables/{table.name}.{column}.len", compress=True) as fh:
                    fh.write(lengths.getvalue())
            manifest["tables"][table.name] = n
        settings: dict[str, str] = {str(k): str(v) for k, v in conn.execute(Base.metadata.tables["settings"].select())}
        faces = Base.metadata.tables["faces"]
        manifest["faces_by_pack"] = {m: int(c) for m, c in conn.execute(
            select(faces.c.model, func.count()).group_by(faces.c.model))}
        manifest["default_pack"] = settings.get(DEFAULT_PACK_KEY)
        manifest["packs"] = {k[len(PACK_PREFIX):]: json.loads(v) for k, v in sorted(settings.items())
                             if k.startswith(PACK_PREFIX)}
        while files:  # the index (vectors do not compress; Chroma's SQLite file does)
            f = files.pop(0)
            with _member(zf, shipping.PREFIX + f.name, compress=f.name == CHROMA_SQLITE) as fh:
                fh.write(f.data)
            del f
        with _member(zf, MANIFEST, compress=True) as fh:
            fh.write(json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8"))
    return manifest


def backup(db: FaceDB, path: str | os.PathLike[str] | IO[bytes]) -> BackupReport:
    """Write the snapshot to ``path`` (0600), atomically: a temporary file beside it, renamed
    when complete, so ``path`` is never a partial snapshot. ``path`` may also be a writable
    binary stream (the server's response)."""
    t0 = time.perf_counter()
    if not isinstance(path, (str, os.PathLike)):
        manifest = write_snapshot(db, path)
        return BackupReport(path="-", bytes=0, format_version=FORMAT_VERSION, facedb_version=manifest["facedb_version"],
                            schema_revision=str(manifest["schema_revision"]), created_at=manifest["created_at"],
                            faces_by_pack=manifest["faces_by_pack"], rows=manifest["tables"],
                            seconds=round(time.perf_counter() - t0, 3), **index_fields(manifest))
    target = Path(path).expanduser().absolute()
    if target.is_dir():
        raise UsageError(f"{target} is a directory: give the snapshot's file name")
    if not target.parent.is_dir():
        raise UsageError(f"{target.parent} does not exist: create it first, or write the snapshot elsewhere")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise FacedbError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            manifest = write_snapshot(db, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return report_of(target, manifest, time.perf_counter() - t0)


def report_of(path: Path, manifest: dict[str, Any], seconds: float) -> BackupReport:
    return BackupReport(path=str(path), bytes=path.stat().st_size, format_version=int(manifest["format_version"]),
                        facedb_version=str(manifest["facedb_version"]),
                        schema_revision=str(manifest["schema_revision"]), created_at=str(manifest["created_at"]),
                        faces_by_pack=manifest.get("faces_by_pack", {}), rows=manifest["tables"],
                        seconds=round(seconds, 3), **index_fields(manifest))


def index_fields(manifest: dict[str, Any]) -> dict[str, Any]:
    """The ``BackupReport`` fields about the index, from a manifest."""
    entry = manifest.get("index") or {}
    return {"index_shipped": bool(entry.get("shipped")), "index_note": entry.get("note")}


# -- restore ---------------------------------------------------------------------------------
def read_manifest(zf: zipfile.ZipFile, where: str) -> dict[str, Any]:
    """The snapshot's manifest, checked: a facedb snapshot this version can restore."""
    try:
        manifest = json.loads(zf.read(MANIFEST))
    except (KeyError, ValueError, zipfile.BadZipFile):
        raise UsageError(f"{where} is not a facedb snapshot (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UsageError(f"{where} is not a facedb snapshot")
    if manifest.get("format_version") not in READABLE_FORMATS:
        raise UsageError(f"{where} has snapshot format {manifest.get('format_version')}; this facedb reads "
                         f"formats {', '.join(map(str, READABLE_FORMATS))}: restore it with facedb "
                         f"{manifest.get('facedb_version')}")
    if manifest.get("schema_revision") != SCHEMA_HEAD:
        raise UsageError(f"{where} was made at catalog revision {manifest.get('schema_revision')} (facedb "
                         f"{manifest.get('facedb_version')}); this facedb restores revision {SCHEMA_HEAD}: restore "
                         "it with that facedb version, then open it with this one to upgrade it")
    return manifest


def other_weights(db: FaceDB, manifest: dict[str, Any]) -> dict[str, str]:
    """Packs whose snapshot faces were embedded with weights other than the ones here:
    ``{pack: why}`` (a pack that will not load here counts too)."""
    out: dict[str, str] = {}
    for name, n in sorted(manifest.get("faces_by_pack", {}).items()):
        rec = manifest.get("packs", {}).get(name)
        if not n or rec is None:
            continue
        try:
            info = load_engine(name, db.settings.models_dir).info
        except ModelError as exc:
            out[name] = f"it cannot be loaded here ({exc})"
            continue
        if info.fingerprint != rec.get("fingerprint") or info.dim != rec.get("dim"):
            out[name] = (f"its {n} faces were embedded with other weights (fingerprint "
                         f"{str(rec.get('fingerprint'))[:12]}…, dim {rec.get('dim')}) than the ones here "
                         f"({info.fingerprint[:12]}…, dim {info.dim})")
    return out


def _table_chunks(zf: zipfile.ZipFile, table: Table, mismatched: set[str]) -> Iterator[list[dict[str, Any]]]:
    """The snapshot's rows of ``table``, decoded, in chunks of ``snapshot.CHUNK``."""
    times = [c.name for c in table.columns if isinstance(c.type, DateTime) or
             isinstance(getattr(c.type, "impl", None), DateTime)]
    binary = snapshot.binary_columns(table)
    name = f"tables/{table.name}"
    if f"{name}.jsonl" not in zf.namelist():
        return
    blobs = {c: zf.open(f"{name}.{c}.bin") for c in binary}
    sizes = {c: zf.open(f"{name}.{c}.len") for c in binary}
    try:
        with zf.open(f"{name}.jsonl") as fh:
            chunk: list[dict[str, Any]] = []
            for line in io.TextIOWrapper(fh, encoding="utf-8"):
                row = json.loads(line)
                for c in times:
                    if row.get(c) is not None:
                        row[c] = datetime.fromisoformat(row[c])
                for c in binary:
                    n = int.from_bytes(sizes[c].read(4), "little")
                    row[c] = blobs[c].read(n)
                if table.name == "faces" and row["model"] in mismatched:
                    row["indexed"] = False  # re-embedded by the reindex that follows
                if table.name == "subject_templates" and row["model"] in mismatched:
                    continue  # recomputed by that reindex
                if table.name == "settings" and row["key"].startswith(PACK_PREFIX) and \
                        row["key"][len(PACK_PREFIX):] in mismatched:
                    continue  # the reindex records the contract of the weights here
                chunk.append(row)
                if len(chunk) >= snapshot.CHUNK:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
    finally:
        for f in (*blobs.values(), *sizes.values()):
            f.close()


def _build_index(catalog: Any, index: Any, rec: Any) -> int:
    """Build one collection's index of pack ``rec`` from the restored rows; the faces it holds.

    The rows came with their ``indexed`` marks and their subjects' templates (the sums of those
    faces), so the vectors of the faces marked indexed go straight to the index, without the
    per-subject template recompute that marking them again would cost; faces the source had not
    indexed yet (a write in flight at backup time) then go through the ordinary path, which marks
    them and updates their subjects' templates. Journaled as a rebuild: a process killed
    half-way leaves the flag, and the next one to open the index rebuilds it from the catalog."""
    from ..catalog.core import REBUILDING
    from ..store.journal import Journal

    catalog.set_flag(REBUILDING, rec.name, True)
    index.drop(rec.name, catalog.space)  # anything an earlier database left under this name
    faces = catalog.faces_for_index(rec.name, indexed=True)
    if faces:  # one bulk load into the new collection (``ChromaIndex.load``: its settings, measured)
        index.load(rec, [f.face_id for f in faces], [f.embedding for f in faces],
                   [f.subject_id for f in faces])
    del faces
    pending = [f.face_id for f in catalog.faces_for_index(rec.name, indexed=False)]
    if pending:
        Journal(catalog).add_from_catalog(index, rec, pending)
    catalog.bump_generation()
    catalog.set_flag(REBUILDING, rec.name, False)
    return int(catalog.count_indexed(rec.name))


def _shipped_index_usable(db: FaceDB, manifest: dict[str, Any], mismatched: dict[str, str]) -> None:
    """Raise ``_NotShipped`` (why) unless the snapshot's index files can be used here."""
    entry = manifest.get("index") or {}
    if not entry.get("shipped"):
        raise _NotShipped(f"the snapshot holds no index ({entry.get('note') or 'format ' + str(manifest.get('format_version'))})")
    if db.settings.chroma_url:
        raise _NotShipped("the index here is a Chroma server: the snapshot's embedded index files do not go into it")
    if mismatched:
        raise _NotShipped("packs are re-embedded from their photos (other weights)")
    here = shipping.chromadb_version()
    if entry.get("chromadb") != here:
        raise _NotShipped(f"the snapshot's index was written by chromadb {entry.get('chromadb')}, this is {here}")


def _install_index(db: FaceDB, zf: zipfile.ZipFile, manifest: dict[str, Any]) -> None:
    """Put the snapshot's index files in place of this home's (empty) index folder. Journaled as
    a rebuild of every collection's packs (``rebuilding:<pack>``): a process killed before
    ``_adopt_index`` clears the flags leaves them to the next one, which rebuilds from the catalog.
    Caller holds ``exclusive(open_index=False)``."""
    import shutil

    from ..catalog.core import REBUILDING
    from .maintenance import collection_catalogs

    base = db.store.base
    for each in collection_catalogs(base.catalog):
        for model in each.models_in_use():
            each.set_flag(REBUILDING, model, True)
    base.close_index()  # a server's open client: its files are replaced
    folder = Path(db.settings.chroma_path)
    shutil.rmtree(folder, ignore_errors=True)
    names = set(zf.namelist())

    def files() -> Iterator[tuple[str, IO[bytes], int]]:
        for f in manifest["index"]["files"]:
            member = shipping.PREFIX + str(f["name"])
            if member not in names:
                raise _NotShipped(f"the snapshot lacks the index file {f['name']}")
            with zf.open(member) as fh:
                yield str(f["name"]), fh, int(f["size"])

    shipping.install(folder, files())


def _adopt_index(db: FaceDB, index: Any, manifest: dict[str, Any]) -> int:
    """Check the installed index against the restored catalog (each collection's pack holds the
    faces the catalog marks indexed, as many as the snapshot recorded, built with the recorded
    weights), index the faces that were not yet (a write in flight at backup time), and clear
    the rebuild flags; the faces it holds. Raises ``_NotShipped`` on a mismatch."""
    from ..catalog.core import REBUILDING
    from ..store.journal import Journal
    from .maintenance import collection_catalogs

    recorded = dict((manifest.get("index") or {}).get("faces") or {})
    total = 0
    for each in collection_catalogs(db.store.base.catalog):
        for model in sorted(each.models_in_use()):
            rec = each.index_pack(model)
            if rec is None:
                continue
            key = f"{each.collection}/{model}"
            sql, held = int(each.count_indexed(model)), int(index.count(rec))
            if sql != held or recorded.get(key, sql) != held:
                raise _NotShipped(f"the shipped index of collection {each.collection!r} holds {held} faces of "
                                  f"pack {model!r} where the catalog has {sql}")
            pending = [f.face_id for f in each.faces_for_index(model, indexed=False)]
            if pending:
                Journal(each).add_from_catalog(index, rec, pending)
            total += int(each.count_indexed(model))
    for each in collection_catalogs(db.store.base.catalog):
        for model in each.models_in_use():
            each.set_flag(REBUILDING, model, False)
    db.store.base.catalog.bump_generation()
    return total


def _rebuild_index(db: FaceDB, index: Any, mismatched: dict[str, str]) -> int:
    """Every collection's index built from the restored embeddings; the faces it holds."""
    from .maintenance import collection_catalogs

    total = 0
    for each in collection_catalogs(db.store.base.catalog):
        for model in sorted(each.models_in_use()):
            rec = each.index_pack(model)
            if model in mismatched or rec is None:
                continue
            total += _build_index(each, index, rec)
    return total


def restore(db: FaceDB, path: str | os.PathLike[str], reindex_from_images: bool = False) -> RestoreReport:
    """Restore the snapshot at ``path`` into ``db``, whose catalog must be empty: rows inserted
    in one transaction, then the index: the snapshot's own files when it carries them and they
    check out against the catalog (``index_path`` "shipped"), otherwise built from the restored
    embeddings ("rebuilt", ``index_note`` says why); then every collection is checked, and a
    shipped index that does not check clean is rebuilt. Packs embedded with other weights are
    refused, unless ``reindex_from_images``: their faces are then re-embedded from the source
    photos (where they are still on disk, unchanged)."""
    t0 = time.perf_counter()
    source = Path(path).expanduser()
    base = db.store.base
    catalog = base.catalog
    try:
        zf = zipfile.ZipFile(source)
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise UsageError(f"{source} is not a facedb snapshot ({exc})") from None
    with zf:
        manifest = read_manifest(zf, str(source))
        mismatched = other_weights(db, manifest)
        if mismatched and not reindex_from_images:
            why = "; ".join(f"pack {k!r}: {v}" for k, v in mismatched.items())
            raise ModelError(f"{source} was made with other model weights ({why}); its vectors are not comparable "
                             "with this facedb's. Restore with --reindex-from-images to re-embed the stored photos "
                             "from their files (they must still be on disk), or with the same weights")
        t_check = time.perf_counter()  # rows_seconds: from here (the weights check loads the packs)
        with base.exclusive(open_index=False, recover=False):
            snapshot.refuse_non_empty(catalog)
            try:
                rows = snapshot.insert_rows(catalog, ((t, _table_chunks(zf, t, set(mismatched)))
                                                      for t in snapshot.snapshot_tables()))
            except (zipfile.BadZipFile, KeyError, ValueError, EOFError, DBAPIError) as exc:
                raise UsageError(f"{source} is damaged and was not restored (nothing was written): "
                                 f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
        catalog.refresh_statistics(force=True)  # a bulk load: the planner's statistics are new
        t_rows = time.perf_counter()
        db._rebound()
        report = RestoreReport(path=str(source), catalog=catalog.safe_url,
                               index=db.settings.chroma_url or str(db.settings.chroma_path), rows=rows,
                               rows_seconds=round(t_rows - t_check, 3))
        touched = False  # the index folder was replaced (wholly or in part)
        with base.exclusive(open_index=False, recover=False):
            try:
                _shipped_index_usable(db, manifest, mismatched)
                touched = True
                _install_index(db, zf, manifest)
                crash_point("restore.after_install")
                report.index_path = "shipped"
            except (_NotShipped, zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError) as exc:
                report.index_note = str(exc) if isinstance(exc, _NotShipped) else \
                    f"the snapshot's index files could not be copied ({type(exc).__name__}: {exc})"
    with base.exclusive(open_index=False, recover=False):
        if report.index_path == "shipped":
            try:
                report.indexed_faces = _adopt_index(db, base.open_index(recover=False), manifest)
            except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, the catalog rebuilds it
                report.index_path, report.index_note = "rebuilt", f"the shipped index failed its check: {exc}"
        if report.index_path == "rebuilt":
            index = base.reset_index() if touched else base.open_index(recover=False)
            report.indexed_faces = _rebuild_index(db, index, mismatched)
        base.mark_recovered()
    report.index_seconds = round(time.perf_counter() - t_rows, 3)
    for name in mismatched:
        for row in catalog.collection_rows():
            view = db.collection(row["name"])
            if view.pack_name == name and view.catalog.models_in_use().get(name):
                rep = view._maint.reindex(None)
                report.reindexed += rep.reindexed
                report.failed.extend(FailedItem(**f.to_dict()) for f in rep.failed)
    checks: list[CheckReport] = [db.collection(row["name"]).check() for row in catalog.collection_rows()]
    if report.index_path == "shipped" and not all(c.clean for c in checks):
        with base.exclusive(open_index=False, recover=False):
            report.index_path, report.index_note = "rebuilt", "the shipped index did not check clean"
            report.indexed_faces = _rebuild_index(db, base.reset_index(), mismatched)
            base.mark_recovered()
        checks = [db.collection(row["name"]).check() for row in catalog.collection_rows()]
    report.check = next((c for c in checks), None)
    report.clean = all(c.clean for c in checks)
    report.seconds = round(time.perf_counter() - t0, 3)
    return report
