"""The store: the catalog, the search index and the right to use them, in one place.

Chroma's embedded store is not process-safe, so a process uses the index only while it holds
the home lock (``facedb.lock``). Inside the process the store is thread-safe:

- ``reading()`` (searches) may run in many threads at once; ``writing()`` runs alone.
- The home lock is taken when the first thread starts using the store and released when the
  last one is done, unless the store is *held* (``hold()``, or ``exclusive=True`` for a server,
  which owns its home for its whole life): the index then stays open between calls.
- Whenever the index is opened, the journal is replayed first (``Journal.replay``), so a
  write that a killed process left half-done is finished or undone before anything else runs.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import fasteners

from .catalog.database import Catalog
from .config import Settings, ensure_private_dir, make_private_tree
from .index.chroma_index import ChromaIndex
from .journal import Journal
from .locking import HomeLock


class Store:
    """Owns the catalog, the home lock and the (embedded) Chroma index of one database."""

    def __init__(self, settings: Settings, *, exclusive: bool = False) -> None:
        self.settings = settings
        ensure_private_dir(settings.home)
        self.catalog = Catalog(settings.db_url)
        self.journal = Journal(self.catalog)
        self._home_lock = HomeLock(settings.lock_path, settings.lock_timeout,
                                   None if exclusive else settings.socket_path)
        self._rw = fasteners.ReaderWriterLock()
        self._mutex = threading.Lock()
        self._users = 0
        self._index: ChromaIndex | None = None
        self._recovered = False
        self._held: list[object] = []
        if exclusive:
            self._take()
            self._held.append(self)

    # -- who may use the stores ---------------------------------------------------------
    @contextmanager
    def reading(self) -> Iterator[ChromaIndex]:
        """Shared use of the index (searches); journal replayed if it was just opened."""
        with self._rw.read_lock(), self._using(open_index=True, recover=True, alone=False) as index:
            assert index is not None
            yield index

    @contextmanager
    def writing(self, *, open_index: bool = True, recover: bool = True) -> Iterator[ChromaIndex]:
        """Exclusive use. ``open_index=False`` for SQL-only work (the index is not opened, but
        may be open already); ``recover=False`` to look at the stores before any replay."""
        with self._rw.write_lock(), self._using(open_index=open_index, recover=recover, alone=True) as index:
            yield index  # type: ignore[misc]

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the home locked and the index open across several calls of this thread's code."""
        with self._using(open_index=True, recover=True, alone=False):
            yield

    def open_index(self, recover: bool = True) -> ChromaIndex:
        """The index, opened now if it is not open yet. Caller holds ``writing()``."""
        with self._mutex:
            self._open_index(recover)
            assert self._index is not None
            return self._index

    def mark_recovered(self) -> None:
        """The caller (a repair) brought the index in line with the catalog: no replay needed."""
        with self._mutex:
            self._recovered = True

    def reset_index(self) -> ChromaIndex:
        """Close the index, delete its files and open an empty one (``check --repair`` of an
        index that will not open). Caller holds ``writing()``."""
        import shutil

        with self._mutex:
            if self._index is not None:
                self._index.close()
                self._index = None
            shutil.rmtree(self.settings.chroma_path, ignore_errors=True)
            self._index = ChromaIndex(self.settings.chroma_path)
            return self._index

    def close_index(self) -> None:
        """Close the index now (``vacuum`` rewrites its files); it reopens on next use."""
        with self._mutex:
            if self._index is not None:
                self._index.close()
                self._index = None
                self._recovered = False

    def close(self) -> None:
        """Release everything: the index, the home lock, the catalog's connections."""
        with self._mutex:
            if self._held:
                self._held.clear()
                self._leave()
        self.catalog.dispose()

    # -- internals --------------------------------------------------------------------------
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
            self._home_lock.acquire()
        self._users += 1

    def _leave(self) -> None:
        self._users -= 1
        if self._users:
            return
        try:
            if self._index is not None:
                self._index.close()
                self._index = None
                self._recovered = False
            make_private_tree(self.settings.home)
        finally:
            self._home_lock.release()

    def _open_index(self, recover: bool) -> None:
        if self._index is None:
            self._index = ChromaIndex(self.settings.chroma_path)
            self._recovered = False
        if recover and not self._recovered:
            self.journal.replay(self._index)
            self._recovered = True

    def mark_dirty(self) -> None:
        """A write failed half-way: replay the journal before the index is used again."""
        with self._mutex:
            self._recovered = False
