"""The reads every search repeats, answered from memory while a SQLite catalog is unchanged.

A search reads the pack's contract, the templates changed since the last search and the
matched subjects' faces (``CatalogCore.read``). On a served home those answers change only when
something commits, a few times a second at most (the audit flush), while the searches come by
the dozen. Each read costs little when warm, but a request thread runs them right after an
analysis worker has had the core for 20 ms, with cold caches: 0.1-0.3 ms each, a fifth of the
server's own CPU per search (``scripts/bench/server_cpu.py``).

SQLite says when to forget: ``PRAGMA data_version`` on a connection changes whenever *another*
connection, of this process or of any other, commits to the file (and at a checkpoint). The
watch keeps a connection of its own that never writes, so every commit anywhere moves its
number. A remembered answer is tagged with the number read *before* its query ran and is
given out only while the number is still the same: no commit can fall between the two. On
PostgreSQL, or when the number cannot be read, nothing is remembered.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Hashable
from pathlib import Path
from typing import Any

#: Remembered answers at most; past it the memo starts again (a search reads a few).
MAX_ENTRIES = 4096


class CommitWatch:
    """``PRAGMA data_version`` of one SQLite file, on a connection used for nothing else."""

    def __init__(self, path: str) -> None:
        # mode=rw: never creates the file (a missing catalog is not made here, with the umask's mode)
        self._uri = Path(path).resolve().as_uri() + "?mode=rw"
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def version(self) -> int | None:
        """The file's commit number as this connection sees it; None when it cannot be read
        (the caller then reads the database, as without a memo)."""
        with self._lock:
            try:
                if self._conn is None:
                    # timeout 0: a busy file answers None at once instead of stalling a search
                    self._conn = sqlite3.connect(self._uri, uri=True, timeout=0, isolation_level=None,
                                                 check_same_thread=False)
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                self._close()
                return None

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None


class ReadMemo:
    """Answers of ``CatalogCore.read`` by (statement, parameters), each kept with the commit
    number read before its query; given out only while that number has not moved."""

    def __init__(self, watch: CommitWatch) -> None:
        self.watch = watch
        # key -> (commit number, the statement itself: its id is only unique while it lives, list of rows)
        self._rows: dict[Hashable, tuple[int, Any, list[Any]]] = {}
        self.hits = self.misses = 0  # for tests and benchmarks

    @staticmethod
    def key(stmt: Any, params: dict[str, Any]) -> Hashable:
        return id(stmt), tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))

    def get(self, key: Hashable, stmt: Any, version: int) -> list[Any] | None:
        got = self._rows.get(key)
        if got is not None and got[0] == version and got[1] is stmt:
            self.hits += 1
            return list(got[2])
        self.misses += 1
        return None

    def put(self, key: Hashable, stmt: Any, version: int, rows: list[Any]) -> None:
        if len(self._rows) >= MAX_ENTRIES:
            self._rows.clear()
        self._rows[key] = (version, stmt, list(rows))
