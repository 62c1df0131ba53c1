"""One process at a time per database home: Chroma's embedded store is not process-safe."""
from __future__ import annotations

from pathlib import Path

from filelock import FileLock, Timeout

from .errors import DatabaseBusyError


class HomeLock:
    """An exclusive, re-entrant inter-process lock (flock) on ``<home>/facedb.lock``.

    The OS drops it when the holder dies, even by SIGKILL, so a crash never wedges the home.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = FileLock(str(path), mode=0o600, thread_local=False)

    def acquire(self) -> None:
        try:
            self._lock.acquire(timeout=self.timeout)
        except Timeout:
            raise DatabaseBusyError(
                f"database busy: another facedb process has held {self.path.parent} for over "
                f"{self.timeout:g} s; try again, or raise --lock-timeout / FACEDB_LOCK_TIMEOUT"
            ) from None

    def release(self) -> None:
        self._lock.release()

    @property
    def depth(self) -> int:
        return self._lock.lock_counter
