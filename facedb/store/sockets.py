"""Is a ``facedb serve`` listening on a home's unix socket? (Light: the thin client asks it.)"""
from __future__ import annotations

import socket
from pathlib import Path


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
