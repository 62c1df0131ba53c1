"""Safe image decoding with Pillow: size limits, EXIF orientation, any mode -> 8-bit BGR."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

#: Largest decoded image we accept (pixels). Larger headers are refused before decoding.
MAX_PIXELS = 80_000_000
#: Largest file we read (bytes).
MAX_FILE_BYTES = 200 * 1024 * 1024
#: Smallest side that can hold a detectable face.
MIN_SIDE = 16


@dataclass(frozen=True)
class LoadedImage:
    """A decoded photo: BGR uint8 pixels (OpenCV order) plus its identity."""

    pixels: np.ndarray
    sha256: str
    size_bytes: int

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a file's bytes, turning every OS problem into an ``ImageError``."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError("not_found", f"{p}: no such file") from None
    except OSError as exc:
        raise ImageError("unreadable", f"{p}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("is_directory", f"{p}: is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("not_a_file", f"{p}: not a regular file")
    if st.st_size == 0:
        raise ImageError("empty_file", f"{p}: empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError("too_large", f"{p}: file is {st.st_size} bytes, over the {MAX_FILE_BYTES} limit")
    try:
        with open(p, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ImageError("unreadable", f"{p}: cannot read ({exc.strerror or exc})") from None


def decode(data: bytes, name: str = "<image>") -> LoadedImage:
    """Decode image bytes into an upright 8-bit BGR array, refusing bombs and junk."""
    if not data:
        raise ImageError("empty_file", f"{name}: empty file (0 bytes)")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    "too_many_pixels",
                    f"{name}: {w}x{h} pixels is over the {MAX_PIXELS:,} pixel limit (not decoded)",
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated GIF / multi-page TIFF: first frame
            img.load()
            img = ImageOps.exif_transpose(img) or img
            pixels = _to_bgr(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_many_pixels", f"{name}: image is too large to decode safely") from None
    except UnidentifiedImageError:
        raise ImageError("not_an_image", f"{name}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError("corrupt_image", f"{name}: corrupt or truncated image ({exc})") from None
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ImageError(
            "too_small", f"{name}: {pixels.shape[1]}x{pixels.shape[0]} pixels is too small to hold a face"
        )
    return LoadedImage(pixels=pixels, sha256=digest, size_bytes=len(data))


def load(path: str | os.PathLike[str]) -> LoadedImage:
    return decode(read_bytes(path), str(path))


def _to_bgr(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / (65535.0 if hi > 255 else 255.0)
        gray = np.clip(arr * scale, 0, 255).astype(np.uint8)
        rgb = np.stack([gray] * 3, axis=-1)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        gray = ((arr - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
        rgb = np.stack([gray] * 3, axis=-1)
    else:
        if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])


def iter_image_files(paths: "list[str | os.PathLike[str]]") -> list[Path]:
    """Expand files and directories into a list of candidate image paths.

    Directories are walked recursively in sorted order; symlinked directories are not
    followed (so symlink loops are harmless) and hidden entries are skipped. Every other
    file is a candidate: one that is not an image is reported by ``decode``, not ignored.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                out.extend(Path(dirpath) / fn for fn in sorted(filenames) if not fn.startswith("."))
        else:
            out.append(p)
    return out
