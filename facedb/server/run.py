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
from ..errors import DatabaseBusyError, FacedbError
from ..store.sockets import server_listening
from .app import ServerConfig, create_app

log = logging.getLogger("facedb.server")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    #: seconds in-flight requests get to finish after SIGTERM
    grace: float = 30.0
    config: ServerConfig = ServerConfig()
    #: server processes on the same sockets (shared stores only: PostgreSQL + a Chroma server)
    processes: int = 1


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


def serve(db_options: dict[str, Any], home: Path, options: ServeOptions) -> None:
    """Listen first (so that clients queue instead of going for the home lock), then open the
    database (an exclusive ``FaceDB(**db_options)``) and serve until stopped. With
    ``options.processes`` > 1 (shared stores only), that many server processes share the
    sockets; this one supervises them."""
    configure_logging()
    sock_path = home / SOCKET_NAME
    sockets = [_tcp_socket(options.host, options.port)]
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        sockets.append(_unix_socket(sock_path))
        host, port = sockets[0].getsockname()[:2]
        log.info("facedb serving %s on http://%s:%d and %s (%d process%s)", home, host, port, sock_path,
                 options.processes, "es" if options.processes > 1 else "")
        if options.processes == 1:
            _serve_here(db_options, sockets, options)
        else:
            _supervise(db_options, sockets, options)
    finally:
        for s in sockets:
            s.close()
        if len(sockets) > 1:
            sock_path.unlink(missing_ok=True)
        log.info("facedb server stopped")


def _serve_here(db_options: dict[str, Any], sockets: list[socket.socket], options: ServeOptions) -> None:
    """One server process: open the database, run uvicorn on the sockets, close the database."""
    import uvicorn

    from ..api import FaceDB

    db = FaceDB(**db_options, exclusive=True)
    try:
        app = create_app(db, options.config)
        log.info("process %d ready (pack %s)", os.getpid(), db.pack_name)
        uv = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(options.grace) or 1, server_header=False)
        _server_class()(uv).run(sockets=sockets)
    finally:
        db.close()


def _child(db_options: dict[str, Any], sockets: list[socket.socket], options: ServeOptions) -> None:
    configure_logging()
    try:
        _serve_here(db_options, sockets, options)
    except FacedbError as exc:
        log.error("server process %d: %s", os.getpid(), exc)
        sys.exit(exc.exit_code)


def _supervise(db_options: dict[str, Any], sockets: list[socket.socket], options: ServeOptions) -> None:
    """Run ``options.processes`` children on the shared sockets; restart one that dies; on
    SIGTERM/SIGINT pass it on and wait for them (each finishes its requests, up to ``grace``)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> Any:
        proc = ctx.Process(target=_child, args=(db_options, sockets, options), daemon=False)
        proc.start()
        return proc

    def on_signal(sig: int, _frame: Any) -> None:
        stopping.set()

    original = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    children = [start() for _ in range(options.processes)]
    try:
        while not stopping.wait(0.5):
            for i, proc in enumerate(children):
                if not proc.is_alive() and not stopping.is_set():
                    if proc.exitcode in (5, 6):  # busy or model problem: restarting cannot help
                        log.error("server process %d exited with %d; stopping", proc.pid, proc.exitcode)
                        stopping.set()
                        break
                    log.warning("server process %d exited with %s; starting another", proc.pid, proc.exitcode)
                    children[i] = start()
    finally:
        for sig, handler in original.items():
            signal.signal(sig, handler)
        for proc in children:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        for proc in children:
            proc.join(options.grace + 30)
            if proc.is_alive():
                proc.kill()
                proc.join()
