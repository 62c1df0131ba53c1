"""Who may open a database home: one process at a time (Chroma's embedded store is not
process-safe), or the ``facedb serve`` that owns it and answers on its socket."""
from __future__ import annotations

import time
from pathlib import Path

from filelock import FileLock, Timeout

from .. import trace
from ..errors import DatabaseBusyError, ServedElsewhere
from .sockets import server_listening

#: How often a process waiting for the home looks whether a server took it meanwhile.
POLL_S = 0.5


class HomeLock:
    """An exclusive inter-process lock (flock) on ``<home>/facedb.lock``.

    The OS drops it when the holder dies, even by SIGKILL, so a crash never wedges the home.
    While waiting, it watches the home's server socket: if a server appears (it holds the lock
    for its whole life), waiting longer is pointless, so ``ServedElsewhere`` is raised.
    """

    def __init__(self, path: Path, timeout: float, server_socket: Path | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.server_socket = server_socket
        self._lock = FileLock(str(path), mode=0o600, thread_local=False)

    @trace.traced("lock.acquire")
    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            try:
                self._lock.acquire(timeout=max(0.0, min(POLL_S, left)))
                return
            except Timeout:
                pass
            if self.server_socket is not None and server_listening(self.server_socket):
                raise ServedElsewhere(f"a facedb server now owns {self.path.parent}: send the request to it "
                                      f"(its socket is {self.server_socket}), or stop it first")
            if left <= 0:
                raise DatabaseBusyError(
                    f"database busy: another facedb process has held {self.path.parent} for over "
                    f"{self.timeout:g} s; try again, or raise --lock-timeout / FACEDB_LOCK_TIMEOUT"
                ) from None

    def release(self) -> None:
        self._lock.release()
