"""The embedded Chroma index's files, captured for a snapshot and put back by a restore.

Rebuilding the index is what made restore slow (HNSW insertion: 160 s of a 194 s restore at
100,000 faces, ~30 minutes at 1M; docs/benchmarks/backup.md), while its files copy in a fraction
of a second. They can travel in a snapshot because every delete now *erases*
(``ChromaIndex.erase``): no deleted face's vector or name stays in them. What is taken, and how:

- the caller holds the home's write lock (``Store.exclusive``) while ``capture`` runs: Chroma
  writes its files only during writes (its HNSW segments are persisted every ``sync_threshold``
  log records, and the log and metadata live in ``chroma.sqlite3``), so nothing changes under the
  copy, and what ``chroma.sqlite3`` holds and the segment files hold belong together (Chroma
  replays from its log what the segments had not persisted yet, when it opens them);
- ``chroma.sqlite3`` through SQLite's online backup API into memory, then ``VACUUM``\\ ed there
  with ``secure_delete`` (outside the lock: ``finish``), so the copy carries no free page;
- each live segment's files (the folders ``chroma.sqlite3`` lists; a dropped collection's leftover
  folder is not taken), read into memory. ``data_level0.bin`` is taken up to its used slots only
  (``cur_element_count`` of ``header.bin``): hnswlib writes its whole allocation, and the unused
  slots can hold stale heap bytes (see ``ChromaIndex.scrub_unused_slots``); a restore writes
  zeros in their place.

Nothing is written to disk on the way: a killed backup leaves no copy of the faces behind.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from .chroma_index import CHROMA_SQLITE, HEADER

#: The member prefix of the index files in a snapshot.
PREFIX = "index/"
DATA_FILE = "data_level0.bin"


def chromadb_version() -> str:
    import chromadb

    return str(chromadb.__version__)


@dataclass
class ShippedFile:
    """One file of the index folder: its path in the folder, the bytes shipped, its size on disk
    (more than ``len(data)`` when unused HNSW slots were left out)."""

    name: str
    data: bytes
    size: int


@dataclass
class Capture:
    """The index folder as ``capture`` read it; ``finish`` compacts the SQLite copy."""

    folder: Path
    files: list[ShippedFile] = field(default_factory=list)
    sqlite: sqlite3.Connection | None = None

    def finish(self) -> list[ShippedFile]:
        """Every file, ``chroma.sqlite3`` first: its in-memory copy vacuumed with ``secure_delete``
        (rows Chroma deleted stay in its free pages until a vacuum) and serialized."""
        if self.sqlite is not None:
            con, self.sqlite = self.sqlite, None
            try:
                con.execute("PRAGMA secure_delete=ON")
                con.execute("PRAGMA temp_store=MEMORY")  # VACUUM's working copy: not a temporary file
                con.execute("VACUUM")
                data = _serialized(con, self.folder.parent)
            finally:
                con.close()
            self.files.insert(0, ShippedFile(CHROMA_SQLITE, data, len(data)))
        return self.files

    def close(self) -> None:
        if self.sqlite is not None:
            self.sqlite.close()
            self.sqlite = None


def _serialized(con: sqlite3.Connection, spare: Path) -> bytes:
    """The database's bytes: ``Connection.serialize`` (Python 3.11+), or, on 3.10, a private file
    in ``spare`` (the home) removed at once."""
    serialize = getattr(con, "serialize", None)
    if serialize is not None:
        return bytes(serialize())
    import tempfile

    with tempfile.TemporaryDirectory(dir=spare, prefix=".index-copy-") as tmp:
        target = sqlite3.connect(str(Path(tmp) / CHROMA_SQLITE))
        try:
            con.backup(target)
        finally:
            target.close()
        return (Path(tmp) / CHROMA_SQLITE).read_bytes()


def used_bytes(header: bytes, size: int) -> int:
    """How much of a ``data_level0.bin`` of ``size`` bytes holds elements, by its ``header.bin``
    (the whole file when the header is not the layout ``HEADER`` reads)."""
    if len(header) != HEADER.size:
        return size
    _, _, max_elements, count, per, *_ = HEADER.unpack(header)
    if not per or size % per or count * per > size or size > max_elements * per:
        return size
    return int(count * per)


def capture(folder: Path) -> Capture:
    """Read the index folder (the caller holds the home's write lock; see the module docstring)."""
    out = Capture(folder)
    source = sqlite3.connect(str(folder / CHROMA_SQLITE), timeout=60)
    try:
        live = sorted(str(row[0]) for row in source.execute("SELECT id FROM segments"))
        memory = sqlite3.connect(":memory:", check_same_thread=False)
        source.backup(memory)
        out.sqlite = memory
    finally:
        source.close()
    try:
        for seg in live:
            sub = folder / seg
            if not sub.is_dir():
                continue  # a segment Chroma has not persisted yet: its records are in the log
            header = (sub / "header.bin").read_bytes() if (sub / "header.bin").is_file() else b""
            for path in sorted(p for p in sub.iterdir() if p.is_file()):
                size = path.stat().st_size
                with open(path, "rb") as fh:
                    data = fh.read(used_bytes(header, size) if path.name == DATA_FILE else size)
                out.files.append(ShippedFile(f"{seg}/{path.name}", data, size))
    except BaseException:
        out.close()
        raise
    return out


def safe_name(name: str) -> bool:
    """A member name that stays inside the index folder: ``chroma.sqlite3`` or ``<uuid>/<file>``."""
    parts = name.split("/")
    if name == CHROMA_SQLITE:
        return True
    return (len(parts) == 2 and len(parts[0]) == 36 and all(c in "0123456789abcdef-" for c in parts[0])
            and bool(parts[1]) and parts[1] not in (".", "..") and "\\" not in parts[1])


def install(folder: Path, files: Iterator[tuple[str, IO[bytes], int]]) -> int:
    """Write the shipped files (name, stream, size on disk) into ``folder``, which must not exist
    yet (0700, files 0600); a file shorter than its size is padded with zeros (unused HNSW slots).
    The bytes written."""
    import os
    import shutil

    folder.mkdir(mode=0o700)
    total = 0
    for name, stream, size in files:
        if not safe_name(name):
            raise ValueError(f"unexpected index member {name!r}")
        target = folder / name
        target.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            shutil.copyfileobj(stream, fh, 1 << 20)
            written = fh.tell()
            if written > size:
                raise ValueError(f"index member {name!r} is longer than its recorded size")
            if written < size:
                fh.truncate(size)
            total += size
    return total
