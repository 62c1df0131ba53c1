"""Where a database lives and how it is opened: flags > environment > defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from . import trace

ENV_HOME = "FACEDB_HOME"
ENV_DB_URL = "FACEDB_DB_URL"
ENV_PACK = "FACEDB_PACK"
ENV_MODELS_DIR = "FACEDB_MODELS_DIR"
ENV_LOCK_TIMEOUT = "FACEDB_LOCK_TIMEOUT"
ENV_CHROMA_URL = "FACEDB_CHROMA_URL"
#: The Chroma server's data folder (its ``chroma run --path``), when facedb runs where it can
#: write it: every erasure then also compacts the server's SQLite file (docs/storage.md#erasure).
ENV_CHROMA_DATA = "FACEDB_CHROMA_DATA"

DEFAULT_PACK = "sface-flip"
DEFAULT_LOCK_TIMEOUT = 60.0
SQLITE_NAME = "facedb.sqlite3"
CHROMA_DIR = "chroma"
LOCK_NAME = "facedb.lock"
SOCKET_NAME = "facedb.sock"


def default_home() -> Path:
    """The per-user data directory (e.g. ``~/.local/share/facedb`` on Linux). platformdirs is
    imported here, when no home was given: a command through a server with ``--home`` or
    ``FACEDB_HOME`` never pays for it."""
    import platformdirs

    return Path(platformdirs.user_data_dir("facedb", appauthor=False))


@dataclass(frozen=True)
class Settings:
    home: Path
    db_url: str
    pack: str | None  # None = the pack recorded in the database (or the default)
    models_dir: Path | None
    lock_timeout: float
    #: a Chroma server (``http://host:port``) instead of the embedded index in the home
    chroma_url: str | None = None
    #: the Chroma server's data folder, when facedb may write it (``FACEDB_CHROMA_DATA``)
    chroma_data: Path | None = None

    @property
    def chroma_path(self) -> Path:
        return self.home / CHROMA_DIR

    @property
    def lock_path(self) -> Path:
        return self.home / LOCK_NAME

    @property
    def socket_path(self) -> Path:
        """Where ``facedb serve`` listens for the home's owner while it runs."""
        return self.home / SOCKET_NAME

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file when the catalog is the default local file, else None."""
        prefix = "sqlite:///"
        if self.db_url.startswith(prefix) and self.db_url != "sqlite://":
            return Path(self.db_url[len(prefix):])
        return None


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The home directory: ``home``, else ``FACEDB_HOME``, else the per-user data directory."""
    return Path(home or os.environ.get(ENV_HOME) or default_home()).expanduser().absolute()


def resolve_settings(
    home: str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    pack: str | None = None,
    models_dir: str | os.PathLike[str] | None = None,
    lock_timeout: float | None = None,
    chroma_url: str | None = None,
) -> Settings:
    """Combine explicit arguments, ``FACEDB_*`` environment variables and defaults."""
    home_path = resolve_home(home)
    url = db_url or os.environ.get(ENV_DB_URL) or f"sqlite:///{home_path / SQLITE_NAME}"
    chosen_pack = pack or os.environ.get(ENV_PACK) or None
    models = models_dir or os.environ.get(ENV_MODELS_DIR)
    timeout = lock_timeout
    if timeout is None:
        timeout = float(os.environ.get(ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT))
    return Settings(
        home=home_path,
        db_url=url,
        pack=chosen_pack,
        models_dir=Path(models).expanduser() if models else None,
        lock_timeout=timeout,
        chroma_url=(chroma_url or os.environ.get(ENV_CHROMA_URL) or "").rstrip("/") or None,
        chroma_data=Path(os.environ[ENV_CHROMA_DATA]).expanduser().absolute() if os.environ.get(ENV_CHROMA_DATA)
        else None,
    )


def private_umask() -> None:
    """Make every file this process creates from now on private to its owner (umask 077 added
    to the current one).

    A chmod after the fact (``make_private_tree``) is not enough: while ``facedb serve`` (or a
    library user) keeps a home open, SQLite creates its ``-wal``/``-shm`` files and Chroma new
    segment folders and files, from threads facedb does not control, with the process umask
    (022 by default: 0644 files, 0755 folders, readable by every user of the machine). Face
    data is biometric, so the umask is set where facedb opens a home; it is process-wide and
    stays set (restoring it while another thread creates a file would race)."""
    current = os.umask(0o077)
    os.umask(current | 0o077)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@trace.traced("home.chmod")
def make_private_tree(root: Path) -> None:
    """chmod every directory under ``root`` to 0700 and every file to 0600.

    A file listed and gone before its chmod is skipped: SQLite creates and removes
    ``facedb.sqlite3-journal`` around every write, and a server's batched audit flush (a
    timer thread) can write while a request walks the home (a DELETE of a collection answered
    500 for it)."""
    if not root.exists():
        return
    for dirpath, _dirnames, filenames in os.walk(root):
        try:
            os.chmod(dirpath, 0o700)
        except FileNotFoundError:
            continue
        for name in filenames:
            p = os.path.join(dirpath, name)
            try:
                if not os.path.islink(p):
                    os.chmod(p, 0o600)
            except FileNotFoundError:
                continue
