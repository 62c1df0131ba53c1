"""One Chroma cosine collection per facedb collection and model pack, keyed by SQL face id.

A facedb collection's index collections are named by its *space* (``PackInfo.space`` when the
pack was bound with ``facedb.catalog.core.in_space``): none for ``default``, ``c<id>`` otherwise.

Chroma's embedded client is not process-safe: callers must hold the home lock
(``facedb.store.locking``) for the whole time a ``ChromaIndex`` is open, and ``close()`` it
before releasing the lock. Inside one process it is thread-safe: Chroma's client is, and the
client is only swapped (``reopen``) once the queries using it have finished.
"""
from __future__ import annotations

import functools
import logging
import re
import sqlite3
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import fasteners
import numpy as np

from .. import trace
from ..analysis.engines.base import PackInfo
from ..errors import DatabaseBusyError, IndexCorruptError, ModelError, UnavailableError
from ..store.faults import crash_point
from .clients import close_client, open_embedded, open_server, unreachable_server

#: HNSW parameters, recorded in every collection's configuration.
HNSW = {"space": "cosine", "max_neighbors": 32, "ef_construction": 200, "ef_search": 200}
FORMAT_VERSION = "1"
#: Log records after which Chroma 1.5 persists a collection's HNSW index (its default
#: ``sync_threshold``), when the collection's configuration does not say.
SYNC_THRESHOLD = 1000
#: Padding beyond the threshold: Chroma applies the log to the index in batches (``batch_size``).
PAD_MARGIN = 200
#: Chroma's own data file (its write log and metadata segment) in a persist folder.
CHROMA_SQLITE = "chroma.sqlite3"
#: Chroma 1.5's ``header.bin`` of an HNSW segment: a format int, then hnswlib's header
#: (offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset,
#: offsetData, maxlevel, enterpoint, maxM, maxM0, M, mult, ef_construction).
HEADER = struct.Struct("<iQQQQQQiIQQQdQ")

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


_preloading = False


def preload() -> None:
    """Start importing chromadb (~0.7 s) in a background thread, to overlap with model work."""
    import threading

    global _preloading
    if _preloading or "chromadb" in sys.modules:
        return
    _preloading = True

    def _import() -> None:
        with trace.span("chroma.import"):
            try:
                import chromadb  # noqa: F401
            except Exception:  # pragma: no cover - reported when the index is opened
                pass

    threading.Thread(target=_import, name="facedb-preload-chromadb", daemon=True).start()


def collection_name(pack: str, space: str = "") -> str:
    """``faces_<pack>`` (the ``default`` collection's, as before collections existed), or
    ``<space>_faces_<pack>`` for another collection."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", pack).strip("-_") or "pack"
    return (f"{space}_" if space else "") + f"faces_{slug}"[:60 - (len(space) + 1 if space else 0)]


def index_name(info: PackInfo) -> str:
    """The Chroma collection of a pack bound to a collection's space (see ``in_space``)."""
    return collection_name(info.name, getattr(info, "space", ""))


@dataclass(frozen=True)
class Neighbour:
    face_id: int
    distance: float


def _guarded(fn: F) -> F:
    """Turn a Chroma server that cannot be reached into ``UnavailableError`` (503, exit 8)."""
    @functools.wraps(fn)
    def wrapper(self: ChromaIndex, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except (IndexCorruptError, ModelError, UnavailableError):
            raise
        except Exception as exc:
            if self.url and unreachable_server(exc):
                raise UnavailableError(f"the Chroma server at {self.url} cannot be reached ({exc}); "
                                       "facedb retries on the next request") from None
            raise

    return wrapper  # type: ignore[return-value]


class ChromaIndex:
    """The index: embedded (``path``, a folder in the home) or a Chroma server (``url``)."""

    @trace.traced("chroma.open")
    def __init__(self, path: Path | None = None, *, url: str | None = None,
                 server_data: Path | None = None) -> None:
        self.path = path
        self.url = url
        #: a Chroma server's data folder (its ``--path``) when facedb can write it (same machine):
        #: erasures then compact its SQLite file too (see ``compact``)
        self.server_data = server_data
        #: other processes write to a server meanwhile: nothing about it is cached here
        self.shared = url is not None
        self._client = self._connect()
        self._collections: dict[str, Any] = {}
        # count() costs ~20 ms at 300k vectors: cached while an embedded index stays open (the
        # caller holds the home, and every write goes through ``add``/``delete``, which forget it).
        self._counts: dict[str, int] = {}
        #: queries share the client; ``reopen`` waits for them and swaps it (see ``query``)
        self._client_lock = fasteners.ReaderWriterLock()
        self._generation = 0
        #: short answers retried on a fresh client since this index was opened (see ``query``)
        self.retries = 0

    def _connect(self) -> Any:
        return open_server(self.url) if self.url else open_embedded(self.path)  # type: ignore[arg-type]

    @classmethod
    def wipe_server(cls, url: str, packs: Sequence[tuple[str, str]]) -> None:
        """Delete facedb's collections, given as (pack, space), on a Chroma server (repair of an
        index that will not load)."""
        index = cls(url=url)
        try:
            for pack, space in packs:
                index.drop(pack, space)
        finally:
            index.close()

    @trace.traced("chroma.close")
    def close(self) -> None:
        """Release this process's Chroma client (and its files, once no other client shares it)."""
        self._collections.clear()
        self._counts.clear()
        client, self._client = self._client, None
        if client is not None:
            try:
                close_client(client)
            except Exception:  # pragma: no cover - a client broken by a damaged index
                log.debug("closing the Chroma client failed", exc_info=True)

    # -- collections -------------------------------------------------------------
    @_guarded
    def collection(self, info: PackInfo, create: bool = True) -> Any | None:
        """The pack's collection; refuses one built with other weights or dimension."""
        name = index_name(info)
        if name in self._collections:
            return self._collections[name]
        try:
            col = self._client.get_collection(name)
        except Exception as exc:
            if not _is_missing(exc):
                raise IndexCorruptError(
                    f"the index collection {name} cannot be loaded ({exc}); "
                    "run `facedb check --repair` to rebuild it from the catalog"
                ) from None
            if not create:
                return None
            try:
                col = self._client.create_collection(
                    name,
                    embedding_function=None,
                    configuration={"hnsw": dict(HNSW)},
                    metadata={"pack": info.name, "dim": info.dim, "fingerprint": info.fingerprint,
                              "format": FORMAT_VERSION},
                )
            except Exception as exc:  # another process of a shared index created it meanwhile
                if not (self.shared and "exist" in str(exc).lower()):
                    raise
                col = self._client.get_collection(name)
        meta = col.metadata or {}
        if meta.get("fingerprint") != info.fingerprint or int(meta.get("dim", -1)) != info.dim:
            raise ModelError(
                f"the index collection {name} was built with other model weights "
                f"(dim {meta.get('dim')}, fingerprint {str(meta.get('fingerprint'))[:12]}…) than the "
                f"loaded pack {info.name} (dim {info.dim}, fingerprint {info.fingerprint[:12]}…); "
                "vectors are not comparable. Run `facedb reindex` to re-embed the stored images."
            )
        self._collections[name] = col
        return col

    @_guarded
    def drop(self, pack: str, space: str = "", *, erase: bool = False) -> None:
        """Delete a collection. ``erase=True`` (a deleted facedb collection): Chroma keeps a
        dropped collection's segment folder, every vector included, so the folder is removed
        too (when facedb can reach it: the embedded index, or a server's given data folder) and
        ``compact`` clears the SQLite file (its log rows and metadata). Overwriting every vector
        first, as ``erase`` does, was measured at ~9 ms a face (26 s for 3,000): far slower
        than removing the files."""
        name = collection_name(pack, space)
        self._collections.pop(name, None)
        self._counts.pop(name, None)
        try:
            self._client.delete_collection(name)
        except Exception as exc:
            if not _is_missing(exc):
                raise
        if erase:
            crash_point("erase.before_compact")
            self.remove_orphan_folders()
            self.compact()

    # -- data --------------------------------------------------------------------
    @trace.traced("chroma.add")
    @_guarded
    def add(self, info: PackInfo, ids: Sequence[int], vectors: np.ndarray,
            subject_ids: Sequence[int], *, may_exist: bool = False) -> None:
        """Insert vectors for new face ids, each with its subject's id as Chroma metadata.

        No name goes to Chroma: the index answers face ids, and SQL names them. A name kept in
        Chroma's files would be one more copy of who a face is, in a store that a server may
        hold on another machine, and one more thing an erasure has to scrub.

        ``may_exist=True`` (journal replay: a killed process may have written some of them)
        first asks Chroma which ids it already holds and writes only the missing or changed
        ones. Upserts over existing ids (with deletes) can leave records unreachable by
        ``query()`` in Chroma 1.5 (upstream issue chroma-core/chroma#7758), so existing ids
        are never upserted again.
        """
        if not len(ids):
            return
        col = self.collection(info)
        assert col is not None  # created when missing
        self._counts.pop(index_name(info), None)
        vectors = np.asarray(vectors, dtype=np.float32)
        batch = max(1, min(5000, self._client.get_max_batch_size()))
        for i in range(0, len(ids), batch):
            if i:
                crash_point("index.between_batches")
            sl = slice(i, i + batch)
            keys = [str(x) for x in ids[sl]]
            vecs = vectors[sl]
            metas: list[dict[str, Any]] = [{"subject_id": int(s)} for s in subject_ids[sl]]
            if may_exist:
                keys, vecs, metas = self._missing_only(col, keys, vecs, metas)
                if not keys:
                    continue
            col.upsert(ids=keys, embeddings=vecs, metadatas=metas)

    @trace.traced("chroma.load")
    @_guarded
    def load(self, info: PackInfo, ids: Sequence[int], vectors: np.ndarray | Sequence[np.ndarray],
             subject_ids: Sequence[int]) -> None:
        """Bulk-load the collection that a restore's rebuild has just dropped (``operations/backup.py``):
        the same ids and metadata as ``add``, written with ``add`` (the ids are new to a new collection) in Chroma's client
        batches, by one writer. What was measured against it (``docs/benchmarks/chroma-load.md``):
        ``upsert``, batches of 1,000 and the client's maximum, two and three concurrent writers,
        the collection's HNSW ``batch_size``/``sync_threshold``/``num_threads``, embeddings as JSON
        lists instead of base64: none was faster beyond the noise of this shared machine, because
        a Chroma server spends its time in its HNSW inserts (~1 ms of CPU a face at 100k, 1.45 ms
        at 300k, on both cores), which only M and ef_construction decide.

        A collection that already holds faces (a drop that failed) goes through ``add``'s
        ``may_exist`` path instead: ``add`` never overwrites an id Chroma holds, and a stale
        vector under one must not survive a rebuild.

        ``vectors`` may be a list of one array a face (the catalog's rows): each Chroma batch is
        stacked on its own, so a load of 1M faces does not hold a second copy of them all."""
        if not len(ids):
            return
        col = self.collection(info)
        assert col is not None  # created when missing
        if int(col.count()):
            self.add(info, ids, np.asarray(vectors, dtype=np.float32), subject_ids, may_exist=True)
            return
        self._counts.pop(index_name(info), None)
        batch = max(1, min(5000, self._client.get_max_batch_size()))
        for i in range(0, len(ids), batch):
            if i:
                crash_point("index.between_batches")
            sl = slice(i, i + batch)
            col.add(ids=[str(x) for x in ids[sl]], embeddings=np.asarray(vectors[sl], dtype=np.float32),
                    metadatas=[{"subject_id": int(s)} for s in subject_ids[sl]])

    @staticmethod
    def _missing_only(col: Any, keys: list[str], vecs: np.ndarray,
                      metas: list[dict[str, Any]]) -> tuple[list[str], np.ndarray, list[dict[str, Any]]]:
        """Drop the entries Chroma already holds with the same vector; fix their metadata."""
        got = col.get(ids=keys, include=["embeddings", "metadatas"])
        stored = {k: (np.asarray(e, dtype=np.float32), m)
                  for k, e, m in zip(got["ids"], got["embeddings"], got["metadatas"])}
        keep: list[int] = []
        changed: list[str] = []
        for j, key in enumerate(keys):
            if key not in stored:
                keep.append(j)
            elif not np.allclose(stored[key][0], vecs[j], atol=1e-6):
                changed.append(key)
                keep.append(j)
            elif stored[key][1] != metas[j]:  # None drops a name an older facedb stored
                col.update(ids=[key], metadatas=[{**metas[j], **{k: None for k in stored[key][1] if k not in metas[j]}}])
        if changed:  # never expected (face ids are not reused); delete, then add afresh
            col.delete(ids=changed)
        return [keys[j] for j in keep], vecs[keep], [metas[j] for j in keep]

    @trace.traced("chroma.delete")
    @_guarded
    def delete(self, info: PackInfo, ids: Sequence[int]) -> None:
        if not len(ids):
            return
        col = self.collection(info, create=False)
        if col is None:
            return
        self._counts.pop(index_name(info), None)
        for i in range(0, len(ids), 5000):
            col.delete(ids=[str(x) for x in ids[i:i + 5000]])

    @trace.traced("chroma.erase")
    @_guarded
    def erase(self, info: PackInfo, ids: Sequence[int]) -> None:
        """Delete these faces so that no byte of their vectors stays in Chroma's files: the
        route measured in ``docs/experiments/chroma-erasure.md``.

        1. ``update`` each victim's vector with a random unit vector: hnswlib rewrites the same
           slot of the index in memory (ids Chroma does not hold are ignored, so a replay may
           run it again);
        2. delete ``sync_threshold`` ids that never existed: cheap log records that make Chroma
           persist the HNSW index (``data_level0.bin`` gets the overwritten slots) and purge its
           write log up to them;
        3. ``delete`` the victims (unsearchable, as ``delete`` does);
        4. ``compact``: the unused slots of every HNSW file are zeroed (``scrub_unused_slots``),
           and a ``secure_delete`` VACUUM of ``chroma.sqlite3`` removes the purged log rows and
           the deleted metadata (names) from SQLite's free pages.

        Step 1 costs about 10–30 ms a victim (each update re-links its graph node); the persist
        of step 2 rewrites the whole HNSW file and step 4 the whole SQLite file (metadata and
        log, ~300 bytes a face), so those two grow with the gallery: 0.12 s in all at 20k faces,
        0.9 s at 100k (docs/benchmarks/erasure.md). Safe to repeat after a crash at
        any step (the journal replays it). Relies on Chroma 1.5 behaviour, not API promises:
        ``tests/test_erasure.py`` byte-scans every file to catch an upgrade that breaks it."""
        if len(ids):
            col = self.collection(info, create=False)
            if col is not None:
                self._counts.pop(index_name(info), None)
                self._overwrite(col, [str(x) for x in ids])
                crash_point("erase.before_delete")
                for i in range(0, len(ids), 5000):
                    col.delete(ids=[str(x) for x in ids[i:i + 5000]])
        crash_point("erase.before_compact")
        self.compact()

    @trace.traced("chroma.overwrite")
    def _overwrite(self, col: Any, keys: Sequence[str]) -> None:
        """Steps 1 and 2 of ``erase``: random unit vectors over ``keys``, then the padding."""
        if not keys:
            return
        dim = self._dim(col)
        rng = np.random.default_rng()
        batch = max(1, min(5000, self._client.get_max_batch_size()))
        for i in range(0, len(keys), batch):
            chunk = list(keys[i:i + batch])
            junk = rng.standard_normal((len(chunk), dim)).astype(np.float32)
            junk /= np.linalg.norm(junk, axis=1, keepdims=True)
            col.update(ids=chunk, embeddings=junk)
        crash_point("erase.after_overwrite")
        hnsw = _hnsw_of(col)
        pad = int(hnsw.get("sync_threshold") or SYNC_THRESHOLD) + PAD_MARGIN
        tag = f"erase-pad-{time.time_ns()}"
        absent = [f"{tag}-{n}" for n in range(pad)]
        for i in range(0, pad, batch):
            col.delete(ids=absent[i:i + batch])

    @staticmethod
    def _dim(col: Any) -> int:
        dim = (col.metadata or {}).get("dim")
        if dim:
            return int(dim)
        got = col.get(limit=1, include=["embeddings"])
        return len(got["embeddings"][0]) if len(got["ids"]) else 1

    def _data_folder(self) -> Path | None:
        """The folder of Chroma's files that facedb may touch: the embedded index's, or the
        server's data folder when it was given."""
        return self.server_data if self.url else self.path

    def remove_orphan_folders(self) -> int:
        """Remove the segment folders that no segment of ``chroma.sqlite3`` refers to any more
        (Chroma leaves a dropped collection's folder, with its HNSW files, on disk); how many.

        Run while clients are open: Chroma records a collection's segments when it creates the
        collection, and writes their folders only later (at its first persist), so an unlisted
        folder belongs to no collection. A drop whose process was killed before this ran leaves
        its folder to the next erasing drop (the journal replay runs one)."""
        import shutil

        folder = self._data_folder()
        if folder is None or not (folder / CHROMA_SQLITE).is_file():
            return 0
        con = sqlite3.connect(str(folder / CHROMA_SQLITE), timeout=60)
        try:
            live = {str(row[0]) for row in con.execute("SELECT id FROM segments")}
        finally:
            con.close()
        removed = 0
        for child in folder.iterdir():
            if child.is_dir() and re.fullmatch(r"[0-9a-f-]{36}", child.name) and child.name not in live:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        return removed

    @trace.traced("chroma.scrub")
    def scrub_unused_slots(self) -> int:
        """Zero the unused slots of every HNSW ``data_level0.bin`` in the data folder; bytes zeroed.

        hnswlib allocates a collection's index for more elements than it holds and writes the
        whole allocation at every persist, unused slots included, uninitialised: they carry
        whatever the process's heap held before, which can be *other* faces' vectors (seen: a
        3-face collection's file held a subject of another collection, written by a process that
        had loaded it). An erase overwrites the victims' own slots only, so it also zeroes the
        unused ones here (the file's slots from ``cur_element_count`` of ``header.bin`` on;
        hnswlib never reads them). Seen with Chroma 1.5.9: a collection whose vectors were still
        all in the log had a 100-slot file with 0 elements, all of it stale heap. A collection that a process holds in memory can write its old
        unused bytes again at its next persist; ``vacuum`` in a fresh process rebuilds them."""
        if self.url or self.path is None:
            # A server may persist a segment while this runs (other processes write to it): its
            # new elements could be zeroed on disk. Only the embedded index, whose every write
            # goes through this process under the home lock, is scrubbed.
            return 0
        folder = self.path
        zeroed = 0
        for data in folder.glob("*/data_level0.bin"):
            try:
                head = (data.parent / "header.bin").read_bytes()
                if len(head) != HEADER.size:
                    continue
                _, _, max_elements, count, per, *_ = HEADER.unpack(head)
                size = data.stat().st_size
                if not per or size % per or count * per > size or size > max_elements * per:
                    continue  # not the layout this reads: leave the file alone
                with open(data, "r+b") as fh:
                    step = max(per, (4 << 20) // per * per)
                    for pos in range(count * per, size, step):
                        fh.seek(pos)
                        chunk = fh.read(min(step, size - pos))
                        if chunk.count(0) != len(chunk):
                            fh.seek(pos)
                            fh.write(bytes(len(chunk)))
                            zeroed += len(chunk)
            except OSError:  # a folder Chroma removed meanwhile
                continue
        return zeroed

    @trace.traced("chroma.compact")
    def compact(self) -> bool:
        """``PRAGMA secure_delete=ON; VACUUM`` of Chroma's SQLite file, from a connection of its
        own while the client stays open (measured safe with Chroma 1.5, embedded and server):
        rows Chroma deleted (purged log records with their vectors, deleted metadata with the
        subjects' names) stay readable in SQLite's free pages until then. Whether it ran: a
        Chroma server's file only when facedb was given its folder (``FACEDB_CHROMA_DATA``)."""
        folder = self._data_folder()
        if folder is None or not (folder / CHROMA_SQLITE).is_file():
            return False
        self.scrub_unused_slots()
        con = sqlite3.connect(str(folder / CHROMA_SQLITE), timeout=60, isolation_level=None)
        try:
            con.execute("PRAGMA secure_delete=ON")
            # the copy VACUUM builds stays in memory (~the file's size) instead of a temporary
            # file written and read back: one whole write of the file less per erasure
            con.execute("PRAGMA temp_store=MEMORY")
            con.execute("VACUUM")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            # The delete is done and journaled: the next erasure or replay compacts the file.
            raise DatabaseBusyError(f"Chroma's file {folder / CHROMA_SQLITE} stayed locked for 60 s, so the "
                                    "deleted faces' bytes are not compacted out of it yet; it is journaled: the "
                                    "next process to open the index, a server's periodic recovery or `facedb "
                                    "check --repair` finishes it") from None
        finally:
            con.close()
        return True

    @_guarded
    def relabel(self, info: PackInfo, ids: Sequence[int], subject_id: int) -> None:
        """These faces now belong to ``subject_id`` (a move, a merge, a rename). The name an
        older facedb stored beside the id is dropped on the way (``None`` deletes a key)."""
        col = self.collection(info, create=False)
        if col is None or not len(ids):
            return
        for i in range(0, len(ids), 5000):
            chunk = [str(x) for x in ids[i:i + 5000]]
            col.update(ids=chunk, metadatas=[{"subject_id": subject_id, "subject": None}] * len(chunk))

    @trace.traced("chroma.count")
    @_guarded
    def count(self, info: PackInfo) -> int:
        name = index_name(info)
        if name not in self._counts or self.shared:
            col = self.collection(info, create=False)
            self._counts[name] = 0 if col is None else int(col.count())
        return self._counts[name]

    @_guarded
    def ids(self, info: PackInfo) -> set[int]:
        col = self.collection(info, create=False)
        if col is None:
            return set()
        out: set[int] = set()
        total = col.count()
        step = 5000
        for offset in range(0, total, step):
            got = col.get(include=[], limit=step, offset=offset)
            out.update(int(x) for x in got["ids"])
        return out

    @trace.traced("chroma.query")
    @_guarded
    def query(self, info: PackInfo, vectors: np.ndarray, k: int) -> list[list[Neighbour]]:
        """The k nearest faces of each vector.

        HNSW never returns fewer than ``min(k, count)`` live records unless its graph lost some
        of them, so a short answer is an index fault, not a result. Chroma 1.5.9 gave such
        answers here, rarely, on the first query of a client opened right after a crash or a
        write by an earlier client; a fresh client then answered in full. So a short answer is
        retried once on a fresh client, and if it is still short the index is reported corrupt
        (``check --repair`` rebuilds it) instead of returning an incomplete ranking.
        """
        vecs = np.asarray(vectors, dtype=np.float32)
        for attempt in (1, 2):
            with self._client_lock.read_lock():
                generation = self._generation
                col = self.collection(info, create=False)
                if col is None:
                    return [[] for _ in range(len(vecs))]
                # Chroma answers min(k, count) rows when asked for k, so the count (a round trip
                # to a Chroma server: ~17 ms at 100k faces) is only needed to judge a short answer.
                res = self._query(col, vecs, k)
                if not _short(res, k):
                    break
                n = self.count(info)
                want = min(k, n)
            if n == 0 or not _short(res, want):
                break
            if attempt == 2:
                raise IndexCorruptError(
                    f"the search index returned fewer than {want} of its {n} faces for a query: some "
                    "faces are unreachable in the HNSW graph. Run `facedb check --repair` to rebuild it."
                )
            self.retries += 1
            log.warning("Chroma returned fewer than %d neighbours from %d faces; retrying on a fresh client",
                        want, n)
            self.reopen(if_generation=generation)
        return [
            [Neighbour(int(i), max(0.0, float(d))) for i, d in zip(ids, dists)]
            for ids, dists in zip(res["ids"], res["distances"])
        ]

    @_guarded
    def unreachable(self, info: PackInfo, ids: Sequence[int] | np.ndarray, vectors: np.ndarray, k: int = 10,
                    chunk: int = 1000) -> list[int]:
        """The ids that a query with their own stored vector does not return among its k nearest.

        Such a face is in the collection (``get`` finds it) but the HNSW graph cannot reach it, so
        no search would ever return it (chroma-core/chroma#7758 shows this after deletes and
        upserts). A face crowded out only by exact duplicates of its vector is not counted.
        """
        col = self.collection(info, create=False)
        n = self.count(info)
        if col is None or n == 0 or not len(ids):
            return []
        want = min(k, n)
        vecs = np.asarray(vectors, dtype=np.float32)
        bad: list[int] = []
        for i in range(0, len(ids), chunk):
            res = self._query(col, vecs[i:i + chunk], want)
            for fid, row, dists in zip(ids[i:i + chunk], res["ids"], res["distances"]):
                crowded = len(dists) == want and dists[-1] <= 1e-6
                if str(int(fid)) not in row and not crowded:
                    bad.append(int(fid))
        return bad

    @staticmethod
    def _query(col: Any, vectors: np.ndarray, n: int) -> dict[str, Any]:
        res: dict[str, Any] = col.query(query_embeddings=vectors, n_results=n, include=["distances"])
        return res

    def reopen(self, if_generation: int | None = None) -> None:
        """Drop this process's Chroma client and open a fresh one on the same path, once the
        queries using the old one have finished. With ``if_generation``, only if nobody else
        has reopened it since that generation (two threads seeing one fault reopen once)."""
        with self._client_lock.write_lock():
            if if_generation is not None and if_generation != self._generation:
                return
            self.close()
            self._client = self._connect()
            self._generation += 1

    @_guarded
    def configuration(self, info: PackInfo) -> dict[str, Any]:
        col = self.collection(info, create=False)
        return {} if col is None else _hnsw_of(col)


def _hnsw_of(col: Any) -> dict[str, Any]:
    """A collection's HNSW configuration. Reading it makes chromadb 1.5 warn that the collection
    has a "legacy embedding function config" (facedb gives embeddings itself and records no
    embedding function): that warning is about chromadb's own stored config, not an action to take."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="legacy embedding function config", category=DeprecationWarning)
        return dict((col.configuration or {}).get("hnsw") or {})


def _short(res: dict[str, Any], want: int) -> bool:
    return any(len(row) < want for row in res["ids"])


def _is_missing(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return "notfound" in text.replace(" ", "") or "does not exist" in text or "not found" in text
