"""The store: the catalog, the search index and the right to use them, in one place.

Inside a process the store is thread-safe: ``reading()`` (searches) may run in many threads at
once; ``writing()`` and ``exclusive()`` run alone. Across processes, a coordinator decides
(``facedb.store.coordination``):

- an **embedded** Chroma index lives in the home and is not process-safe: the process holds the
  home lock (``facedb.lock``) from the first thread's use to the last one's, unless the store is
  *held* (``hold()``, or ``exclusive=True`` for a server, which owns its home for its life);
- with the catalog in **PostgreSQL** and the index on a **Chroma server**, many processes share
  the stores: writes hold a shared PostgreSQL claim, replay and maintenance an exclusive one.

The journal is replayed before the index is first used (``Journal.replay``), so a write that a
killed process left half-done is finished or undone before anything else runs.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import fasteners

from ..catalog.database import Catalog
from ..config import Settings, ensure_private_dir, make_private_tree, private_umask
from ..errors import DatabaseBusyError
from ..index.chroma_index import ChromaIndex
from .coordination import HomeCoordinator, SharedCoordinator
from .journal import Journal
from .locking import HomeLock


class Store:
    """Owns the catalog, the coordinator and the Chroma index (embedded or a server) of one database."""

    def __init__(self, settings: Settings, *, exclusive: bool = False) -> None:
        self.settings = settings
        private_umask()  # before the first file of the home is created, by facedb or by Chroma
        ensure_private_dir(settings.home)
        if exclusive:  # a server: files an older version (or another umask) left readable
            make_private_tree(settings.home)
        self.catalog = Catalog(settings.db_url)
        self.journal = Journal(self.catalog)
        self.coordinator: HomeCoordinator | SharedCoordinator
        if settings.chroma_url and not self.catalog.is_sqlite:
            self.coordinator = SharedCoordinator(self.catalog.engine, settings.lock_timeout)
        else:
            self.coordinator = HomeCoordinator(HomeLock(settings.lock_path, settings.lock_timeout,
                                                        None if exclusive else settings.socket_path))
        self.shared = self.coordinator.shared
        self._rw = fasteners.ReaderWriterLock()
        self._mutex = threading.Lock()
        self._users = 0
        self._index: ChromaIndex | None = None
        self._recovered = False
        self._held = False
        if exclusive:
            with self._mutex:
                self._take()
                self._held = True

    # -- who may use the stores ---------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[ChromaIndex]:
        """Shared use of the index (searches). With shared stores, a search that overlapped a
        rebuild in another process is refused as busy (the caller retries)."""
        self._recover_if_needed()
        with self._rw.read_lock(), self._using(open_index=True, recover=True, alone=False) as index:
            assert index is not None
            before = self._generation()
            yield index
            if before != self._generation():
                raise DatabaseBusyError("the search index was being rebuilt (vacuum, reindex or repair); "
                                        "retry in a moment")

    @contextmanager
    def writing(self, *, open_index: bool = True, recover: bool = True) -> Iterator[ChromaIndex]:
        """One write (enroll batch, delete, rename). ``open_index=False`` for SQL-only work (the
        index is not opened, but may be open already); ``recover=False`` to look at the stores
        before any replay."""
        if recover:
            self._recover_if_needed()
        with self._rw.write_lock(), self.coordinator.claim("write"), \
                self._using(open_index=open_index, recover=recover, alone=True) as index:
            yield index  # type: ignore[misc]

    @contextmanager
    def exclusive(self, *, open_index: bool = True, recover: bool = True) -> Iterator[ChromaIndex]:
        """Maintenance (check, repair, vacuum, reindex): no write of any process runs meanwhile."""
        with self._rw.write_lock(), self.coordinator.claim("exclusive"), \
                self._using(open_index=open_index, recover=recover, alone=True) as index:
            yield index  # type: ignore[misc]

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the home locked and the index open across several calls of this thread's code."""
        with self._using(open_index=True, recover=True, alone=False):
            yield

    def open_index(self, recover: bool = True) -> ChromaIndex:
        """The index, opened now if it is not open yet. Caller holds ``writing()``/``exclusive()``."""
        with self._mutex:
            self._open_index(recover)
            assert self._index is not None
            return self._index

    def mark_recovered(self) -> None:
        """The caller (a repair) brought the index in line with the catalog: no replay needed."""
        with self._mutex:
            self._recovered = True

    def mark_dirty(self) -> None:
        """A write failed half-way: replay the journal before the index is used again."""
        with self._mutex:
            self._recovered = False

    def reset_index(self) -> ChromaIndex:
        """Close the index, delete it (the embedded files, or the server's collections) and open
        an empty one (``check --repair`` of an index that will not open). Caller holds ``exclusive()``."""
        import shutil

        with self._mutex:
            if self._index is not None:
                self._index.close()
                self._index = None
            if self.settings.chroma_url:
                packs = self.catalog.recorded_packs()
                ChromaIndex.wipe_server(self.settings.chroma_url,
                                        [(p, space) for _, _, space in self.catalog.collection_spaces() for p in packs])
            else:
                shutil.rmtree(self.settings.chroma_path, ignore_errors=True)
            self._index = self._new_index()
            return self._index

    def close_index(self) -> None:
        """Close the index now (``vacuum`` rewrites its files); it reopens on next use."""
        with self._mutex:
            if self._index is not None:
                self._index.close()
                self._index = None
                self._recovered = False

    def close(self) -> None:
        """Release everything: the index, the home lock, the catalog's connections. Each is
        released even when an earlier one fails (e.g. the home's permissions cannot be tightened
        on the way out): otherwise the index client's sockets and the pooled database connections
        stay open until garbage collection, in a server that goes on running."""
        try:
            with self._mutex:
                try:
                    if self._held:
                        self._held = False
                        self._leave()
                finally:
                    if self._index is not None:  # a Chroma server's client stays open between calls
                        self._index.close()
                        self._index = None
        finally:
            self.catalog.dispose()

    def recover_now(self) -> bool:
        """Replay the journal if no write of any process is in flight (a server's background
        check for what a dead process left); whether it ran."""
        # The same order as ``exclusive()``: this process's lock, then the claim (taking the claim
        # first deadlocked with a maintenance call of this process waiting for it under the lock).
        with self._rw.write_lock():
            if not self.coordinator.try_exclusive():
                return False
            try:
                with self._using(open_index=True, recover=False, alone=True) as index:
                    assert index is not None
                    self.journal.replay(index)
                    self._recovered = True
            finally:
                self.coordinator.release_exclusive()
        return True

    # -- internals --------------------------------------------------------------------------
    def _generation(self) -> str | None:
        return self.catalog.index_generation() if self.shared else None

    def _recover_if_needed(self) -> None:
        """Shared stores: replay under the exclusive claim, before this thread's own claim."""
        if self.shared and not self._recovered:
            with self.exclusive(recover=False) as index:
                self.journal.replay(index)
                self._recovered = True

    def _new_index(self) -> ChromaIndex:
        if self.settings.chroma_url:
            return ChromaIndex(url=self.settings.chroma_url, server_data=self.settings.chroma_data)
        return ChromaIndex(self.settings.chroma_path)

    @contextmanager
    def _using(self, *, open_index: bool, recover: bool, alone: bool) -> Iterator[ChromaIndex | None]:
        """``alone``: the caller holds the write lock, so no other thread uses the stores."""
        with self._mutex:
            self._take()
            try:
                if open_index:
                    # The replay writes: only by a writer, or by the only user of the store.
                    self._open_index(recover and (alone or self._users == 1))
            except BaseException:
                self._leave()
                raise
            index = self._index
        try:
            yield index
        finally:
            with self._mutex:
                self._leave()

    def _take(self) -> None:
        if self._users == 0:
            self.coordinator.enter()
        self._users += 1

    def _leave(self) -> None:
        self._users -= 1
        if self._users:
            return
        try:
            if self._index is not None and not self.shared:
                self._index.close()
                self._index = None
                self._recovered = False
            make_private_tree(self.settings.home)
        finally:
            self.coordinator.leave()

    def _open_index(self, recover: bool) -> None:
        if self._index is None:
            self._index = self._new_index()
            if not self.shared:
                self._recovered = False
        if recover and not self._recovered and not self.shared:
            self.journal.replay(self._index)
            self._recovered = True


class CollectionStore(Store):
    """One collection's view of a ``Store``: the same stores, home lock, coordinator and open
    index (every method is the shared store's), with ``catalog`` and ``journal`` bound to the
    collection. The operations (enroll, search, maintenance) work through such a view, so their
    SQL and their index collections are that collection's."""

    def __init__(self, base: Store, catalog: Catalog) -> None:  # noqa: D107 - no Store.__init__: shares base's
        self.base = base
        self.settings = base.settings
        self.coordinator = base.coordinator
        self.shared = base.shared
        self.catalog = catalog
        self.journal = Journal(catalog)

    @contextmanager
    def reading(self) -> Iterator[ChromaIndex]:
        with self.base.reading() as index:
            yield index

    @contextmanager
    def writing(self, *, open_index: bool = True, recover: bool = True) -> Iterator[ChromaIndex]:
        with self.base.writing(open_index=open_index, recover=recover) as index:
            yield index

    @contextmanager
    def exclusive(self, *, open_index: bool = True, recover: bool = True) -> Iterator[ChromaIndex]:
        with self.base.exclusive(open_index=open_index, recover=recover) as index:
            yield index

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self.base.hold():
            yield

    def open_index(self, recover: bool = True) -> ChromaIndex:
        return self.base.open_index(recover)

    def mark_recovered(self) -> None:
        self.base.mark_recovered()

    def mark_dirty(self) -> None:
        self.base.mark_dirty()

    def reset_index(self) -> ChromaIndex:
        return self.base.reset_index()

    def close_index(self) -> None:
        self.base.close_index()

    def close(self) -> None:
        """A view closes nothing: the shared store is closed by its owner."""

    def recover_now(self) -> bool:
        return self.base.recover_now()
