"""The thin client: the CLI's backend when a ``facedb serve`` owns the home, or ``--server URL``.

It imports no numpy, OpenCV, Chroma or SQLAlchemy: files are read here and sent as bytes, and
the answers are rebuilt as the same result dataclasses ``FaceDB`` returns.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

SOCKET_NAME = "facedb.sock"


def socket_path(home: str | os.PathLike[str] | None) -> Path:
    from .config import resolve_home

    return resolve_home(home) / SOCKET_NAME


def server_listening(path: Path) -> bool:
    """Whether a server accepts connections on the unix socket ``path`` (a stale file left by a
    killed server does not count)."""
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def connect(server: str | None, api_key: str | None, home: str | os.PathLike[str] | None) -> Any | None:
    """A client for ``server`` (a URL), or for the server owning ``home``; None: use FaceDB."""
    return None
