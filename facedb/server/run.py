"""Running ``facedb serve``: one process that owns its home for its whole life.

It holds the home lock (so no other process opens the embedded index), keeps the index open,
starts the analysis workers once, and listens on a TCP port (API keys required) and on the
home's unix socket ``facedb.sock`` (0600: the owner's CLI, no key). SIGTERM or SIGINT: stop
accepting, let in-flight requests finish (up to ``grace`` seconds), close the database, exit 0.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import SOCKET_NAME
from ..locking import server_listening
from ..errors import DatabaseBusyError, FacedbError
from .app import ServerConfig, create_app

log = logging.getLogger("facedb.server")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    #: seconds in-flight requests get to finish after SIGTERM
    grace: float = 30.0
    config: ServerConfig = ServerConfig()


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FacedbError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _unix_socket(path: Path) -> socket.socket:
    """The home's socket, 0600. A stale file (left by a killed server) is replaced."""
    if server_listening(path):
        raise DatabaseBusyError(f"another facedb server already serves this home ({path})")
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(2048)
    return sock


def configure_logging() -> None:
    """Logs go to stderr: one line per request (route templates, never names or image data)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("facedb")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that a SIGTERM/SIGINT it handled gracefully is not raised
        again afterwards (uvicorn does, which kills the process before the database is closed
        and gives exit code 143): ``serve`` closes everything and the process exits 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

    return Server


def serve(db_factory: Any, home: Path, options: ServeOptions) -> None:
    """Listen first (so that clients queue instead of going for the home lock), then open the
    database with ``db_factory()`` (an exclusive ``FaceDB``) and serve until stopped."""
    import uvicorn

    configure_logging()
    sock_path = home / SOCKET_NAME
    sockets = [_tcp_socket(options.host, options.port)]
    db = None
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        sockets.append(_unix_socket(sock_path))
        db = db_factory()
        app = create_app(db, options.config)
        host, port = sockets[0].getsockname()[:2]
        log.info("facedb serving %s (pack %s) on http://%s:%d and %s", home, db.pack_name, host, port, sock_path)
        uv = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=options.grace, server_header=False)
        _server_class()(uv).run(sockets=sockets)
    finally:
        for s in sockets:
            s.close()
        if len(sockets) > 1:
            sock_path.unlink(missing_ok=True)
        if db is not None:
            db.close()
        log.info("facedb server stopped")
