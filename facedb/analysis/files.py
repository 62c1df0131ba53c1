"""Reading input files safely, without decoding them (no numpy, no Pillow: the thin client uses it).

Every problem with one input becomes an ``ImageError`` whose ``reason`` is a stable code
(``not_found``, ``unreadable``, ``is_directory``, ``not_a_file``, ``empty_file``, ``too_large``;
see ``facedb.analysis.imaging`` for the codes decoding adds).
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import trace
from ..errors import ImageError

#: Largest file we read (bytes).
MAX_FILE_BYTES = 200 * 1024 * 1024


def display_name(name: str | os.PathLike[str]) -> str:
    """``name`` safe to print on one line: control characters (a newline in a file name...)
    and undecodable bytes are shown as escapes; spaces and non-ASCII letters are kept."""
    s = os.fspath(name)
    if isinstance(s, bytes):  # pragma: no cover - callers pass str paths
        s = os.fsdecode(s)
    if all(c.isprintable() for c in s):
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def _os_error(p: Path, exc: OSError) -> ImageError:
    shown = display_name(p)
    if exc.errno == errno.ELOOP:
        return ImageError("unreadable", f"{shown}: cannot read (symbolic link loop)")
    if exc.errno == errno.ENOTDIR:
        return ImageError("unreadable", f"{shown}: cannot read (a parent of this path is not a directory)")
    if exc.errno == errno.EISDIR:
        return ImageError("is_directory", f"{shown}: is a directory, not an image")
    return ImageError("unreadable", f"{shown}: cannot read ({exc.strerror or exc})")


def _check_stat(p: Path, st: os.stat_result) -> None:
    shown = display_name(p)
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("is_directory", f"{shown}: is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("not_a_file", f"{shown}: not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise ImageError("empty_file", f"{shown}: empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError("too_large", f"{shown}: file is {st.st_size} bytes, over the {MAX_FILE_BYTES} limit")


@trace.traced("file.read")
def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a file's bytes, turning every OS problem into an ``ImageError``.

    Never blocks on a FIFO or device (checked before opening, and again on the open
    descriptor in case the path was swapped), and never reads more than ``MAX_FILE_BYTES``.
    """
    p = Path(path)
    shown = display_name(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        if os.path.islink(p):
            raise ImageError("not_found", f"{shown}: broken symbolic link (its target does not exist)") from None
        raise ImageError("not_found", f"{shown}: no such file") from None
    except OSError as exc:
        raise _os_error(p, exc) from None
    except ValueError as exc:  # embedded NUL byte, unencodable characters
        raise ImageError("not_found", f"{shown}: not a valid file path ({exc})") from None
    _check_stat(p, st)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise ImageError("not_found", f"{shown}: no such file") from None
    except OSError as exc:
        raise _os_error(p, exc) from None
    try:
        with open(fd, "rb", closefd=True) as fh:
            _check_stat(p, os.fstat(fh.fileno()))
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _os_error(p, exc) from None
    if not data:
        raise ImageError("empty_file", f"{shown}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError("too_large", f"{shown}: file is over the {MAX_FILE_BYTES} byte limit")
    return data


def iter_image_files(paths: list[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories into a list of candidate image paths.

    Directories are walked recursively in sorted order; symlinked directories are not
    followed (so symlink loops are harmless) and hidden entries are skipped. Every other
    file is a candidate: one that is not an image is reported by ``decode``, not ignored.
    A path that is not a directory (missing, a file, a FIFO...) is returned as given, so
    that ``load`` reports what is wrong with it.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        try:
            is_dir = p.is_dir()
        except (OSError, ValueError):
            is_dir = False
        if is_dir:
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out.extend(Path(dirpath) / fn for fn in sorted(filenames) if not fn.startswith("."))
        else:
            out.append(p)
    return out


@dataclass(frozen=True)
class Skipped:
    """An entry of an import root that is not imported, and why (``reason`` is a stable code)."""

    path: str
    reason: str
    message: str


def group_subject_files(root: str | os.PathLike[str], name_from: str = "dir"
                        ) -> tuple[dict[str, list[Path]], list[Skipped]]:
    """The image files of an import root by subject, and the entries that are not imported.

    ``name_from="dir"``: ``root/<subject>/<images>``; a subject folder may be a symbolic link
    (people keep their photos elsewhere and link them in), and so may the files inside it. Each
    real folder is imported once: a link to the root or to a folder above it (a loop), or a
    second link to a folder already imported, is reported (``symlink_loop``,
    ``duplicate_folder``) instead of walked again. ``name_from="prefix"``: a flat folder, the
    subject is the file name up to the first dot or a trailing ``_NNNN``.

    One function for the local import and the thin client (it imports nothing heavy), so the
    two group a folder the same way.
    """
    from ..contract.names import subject_from_filename
    from ..errors import FacedbError

    base = Path(root)
    if not base.is_dir():
        raise FacedbError(f"{display_name(base)}: not a directory")
    groups: dict[str, list[Path]] = {}
    skipped: list[Skipped] = []
    if name_from == "prefix":
        for p in iter_image_files([base]):
            groups.setdefault(subject_from_filename(p.name), []).append(p)
        return groups, skipped
    if name_from != "dir":
        raise FacedbError(f"--name-from must be 'dir' or 'prefix', not {name_from!r}")
    real_root = os.path.realpath(base)
    children = [c for c in sorted(base.iterdir()) if not c.name.startswith(".")]
    # Real folders first, so a link to one of them is the copy that is reported, whatever the names.
    children.sort(key=lambda c: c.is_symlink())
    seen: dict[str, Path] = {}
    for child in children:
        shown = display_name(child)
        try:
            is_dir = child.is_dir()
            real = os.path.realpath(child) if is_dir else ""
        except (OSError, ValueError):
            is_dir, real = False, ""
        if not is_dir:
            skipped.append(Skipped(str(child), "no_subject",
                                   f"{shown}: not inside a subject folder (expected {display_name(base)}/<subject>/<image>)"))
            continue
        if real == real_root or _inside(real_root, real):
            skipped.append(Skipped(str(child), "symlink_loop",
                                   f"{shown}: a symbolic link to {display_name(real)}, which holds the import "
                                   "folder itself (a loop): not imported"))
            continue
        overlap = next((seen[r] for r in seen if r == real or _inside(real, r) or _inside(r, real)), None)
        if overlap is not None:
            skipped.append(Skipped(str(child), "duplicate_folder",
                                   f"{shown}: a symbolic link to {display_name(real)}, which is (or holds, or is "
                                   f"inside) the folder of {display_name(overlap)}: its images are imported once, "
                                   "as that subject"))
            continue
        seen[real] = child
        groups.setdefault(child.name, []).extend(iter_image_files([child]))
    return dict(sorted(groups.items())), skipped


def _inside(path: str, folder: str) -> bool:
    """Whether real path ``path`` is strictly below real path ``folder``."""
    return path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class Upload:
    """Image bytes that arrived without a file facedb may open: a server upload, or stdin.

    ``name`` labels the image in results and messages. ``path`` is set only by a trusted local
    client (the owner's CLI over the home's socket) for bytes it read from that file: the
    catalog then records the file as the image's source, so ``reindex`` and thumbnails can
    open it later. facedb never opens a path a remote client names.

    ``failure`` (reason, message) is set instead of ``data`` for a file the client could not
    read (missing, unreadable...): enrolling it stores that failure, as enrolling the file
    directly does, so ``failures`` and ``stats`` answer the same with and without a server."""

    name: str
    data: bytes
    path: str | None = None
    failure: tuple[str, str] | None = None
