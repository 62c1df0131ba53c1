"""Who may use the stores when, across processes.

- ``HomeCoordinator`` (an embedded Chroma index in the home, whatever the catalog): one process
  at a time holds the home lock (``facedb.lock``); inside it the store's thread locks are enough.
- ``SharedCoordinator`` (the catalog in PostgreSQL and the index on a Chroma server): many facedb
  processes, on one machine or several, use the stores at once. PostgreSQL advisory locks (held
  on a dedicated connection, so they vanish when the process dies) order them: each write holds
  the *write* claim shared; journal replay and repair take it exclusively (so they run only when
  no write is in flight anywhere, and what they find unfinished belongs to a dead process).
  Searches take no lock: a rebuild (vacuum, reindex, repair of unreachable faces) makes the
  catalog's index *generation* odd while it runs, and a search that saw an odd generation, or a
  different one before and after its query, is answered "busy, retry" (``Store.reading``).
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import DatabaseBusyError, UnavailableError
from .locking import HomeLock

#: The advisory lock key (64-bit): "facedb" + 1.
WRITE_CLAIM = 0x66616365_64620001


class HomeCoordinator:
    """The home lock: this process alone uses the stores while it holds it."""

    shared = False

    def __init__(self, lock: HomeLock) -> None:
        self.lock = lock

    def enter(self) -> None:
        self.lock.acquire()

    def leave(self) -> None:
        self.lock.release()

    @contextmanager
    def claim(self, kind: str) -> Iterator[None]:
        """Cross-process claims are implied by the home lock."""
        yield

    def try_exclusive(self) -> bool:
        return True

    def release_exclusive(self) -> None:
        return None


class SharedCoordinator:
    """PostgreSQL advisory locks between the facedb processes sharing the two servers."""

    shared = True

    def __init__(self, engine: Any, timeout: float) -> None:
        self.engine = engine
        self.timeout = timeout
        self._local = threading.local()

    def enter(self) -> None:
        return None

    def leave(self) -> None:
        return None

    @contextmanager
    def claim(self, kind: str) -> Iterator[None]:
        """``kind``: "write" (enroll, delete, rename: the write claim, shared) or "exclusive"
        (replay, repair, vacuum, reindex: the write claim alone)."""
        fn = {"write": "pg_advisory_lock_shared", "exclusive": "pg_advisory_lock"}[kind]
        depth = getattr(self._local, "depth", 0)
        if depth:  # re-entered in this thread (a repair replays the journal): already claimed
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        conn = self._connect()
        try:
            self._set_timeout(conn)
            self._lock(conn, fn, WRITE_CLAIM)
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0
                conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
        finally:
            conn.close()

    def try_exclusive(self) -> bool:
        """Take the exclusive write claim now if nobody writes (for a background replay)."""
        conn = self._connect()
        got = bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({WRITE_CLAIM})").scalar())
        if got:
            self._local.held = conn
        else:
            conn.close()
        return got

    def release_exclusive(self) -> None:
        conn = getattr(self._local, "held", None)
        if conn is not None:
            self._local.held = None
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock_all()")
            finally:
                conn.close()

    # -- internals ---------------------------------------------------------------------------
    def _connect(self) -> Any:
        from sqlalchemy.exc import OperationalError

        try:
            conn = self.engine.connect()
        except OperationalError as exc:
            raise UnavailableError(f"the catalog database cannot be reached: {exc.orig}") from None
        conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _set_timeout(self, conn: Any) -> None:
        conn.exec_driver_sql(f"SET lock_timeout = '{int(self.timeout * 1000)}ms'")

    def _lock(self, conn: Any, fn: str, key: int) -> None:
        from sqlalchemy.exc import OperationalError

        try:
            conn.exec_driver_sql(f"SELECT {fn}({key})")
        except OperationalError as exc:
            if "lock timeout" in str(exc.orig).lower() or "canceling statement" in str(exc.orig).lower():
                raise DatabaseBusyError(
                    f"database busy: another facedb process kept a maintenance claim for over {self.timeout:g} s "
                    "(a vacuum, reindex or repair); try again, or raise --lock-timeout") from None
            raise UnavailableError(f"the catalog database cannot be reached: {exc.orig}") from None
