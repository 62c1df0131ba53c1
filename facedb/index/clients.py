"""Opening Chroma clients: the embedded one on a folder of the home, or a Chroma server's."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import FacedbError, IndexCorruptError, ModelError, UnavailableError

log = logging.getLogger(__name__)


def _chromadb() -> tuple[Any, Any]:
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ModelError(f"chromadb is not installed ({exc})") from None
    return chromadb, Settings


def open_embedded(path: Path) -> Any:
    """A ``PersistentClient`` on ``path``; a folder it cannot open is ``IndexCorruptError``."""
    chromadb, settings = _chromadb()
    try:
        return chromadb.PersistentClient(path=str(path), settings=settings(anonymized_telemetry=False,
                                                                           allow_reset=False))
    except Exception as exc:
        forget_system(path)
        raise IndexCorruptError(
            f"cannot open the search index at {path}: {exc}. "
            "Run `facedb check --repair` to rebuild it from the catalog."
        ) from None


def open_server(url: str) -> Any:
    """An ``HttpClient`` for ``http(s)://host:port``; a server that does not answer is ``UnavailableError``."""
    chromadb, settings = _chromadb()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FacedbError(f"--chroma-url must look like http://host:port, not {url!r}")
    try:
        return chromadb.HttpClient(host=parts.hostname, port=parts.port or (443 if parts.scheme == "https" else 8000),
                                   ssl=parts.scheme == "https", settings=settings(anonymized_telemetry=False))
    except Exception as exc:
        raise UnavailableError(f"the Chroma server at {url} cannot be reached ({exc})") from None


def close_client(client: Any) -> None:
    """Close a Chroma client, and with the last client of a Chroma server its HTTP connections.

    chromadb (1.5) stops a shared system when its last client closes, but its HTTP component has
    no ``stop``: the ``httpx`` session and its kept-alive sockets stay open until garbage
    collection (``ResourceWarning: unclosed socket``). The session is closed here once no other
    client of this process uses that system."""
    from chromadb.api.shared_system_client import SharedSystemClient as Shared

    parts = [client, getattr(client, "_admin_client", None)]  # each has a system (and a session) of its own
    owned = [(getattr(c, "_identifier", None), getattr(getattr(c, "_server", None), "_session", None))
             for c in parts if c is not None]
    client.close()
    for identifier, session in owned:
        if session is not None and identifier not in Shared._identifier_to_system:
            session.close()


def forget_system(path: Path) -> None:
    """Drop Chroma's cached system for ``path`` after a failed open: chromadb keeps a broken
    (stopped) one, and every later client on that path in this process would reuse it."""
    try:
        from chromadb.api.shared_system_client import SharedSystemClient as Shared

        with Shared._refcount_lock:
            system = Shared._identifier_to_system.pop(str(path), None)
            Shared._identifier_to_refcount.pop(str(path), None)
        if system is not None:
            system.stop()
    except Exception:  # pragma: no cover - best effort on a broken system
        log.debug("forgetting the Chroma system of %s failed", path, exc_info=True)


def unreachable_server(exc: BaseException) -> bool:
    """Whether an exception from chromadb's HTTP client means the server is not reachable."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    text = str(exc).lower()
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "RemoteProtocolError", "ReadError",
                         "WriteError", "PoolTimeout", "ConnectionError", "ConnectionRefusedError"}) \
        or "could not connect" in text or "connection refused" in text
