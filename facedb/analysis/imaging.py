"""Safe image decoding with Pillow: size limits, EXIF orientation, any mode -> 8-bit BGR.

Every problem with one input becomes an ``ImageError`` whose ``reason`` is a short stable code:

``not_found``        no such file (or a dangling symlink, or a path that cannot exist)
``unreadable``       the OS refuses to read it (permissions, symlink loop, a parent is a file...)
``is_directory``     a directory was given where an image was expected
``not_a_file``       a FIFO, socket or device: never opened, so reading cannot block
``empty_file``       0 bytes
``too_large``        more than ``MAX_FILE_BYTES`` bytes
``too_many_pixels``  the header announces more than ``MAX_PIXELS`` pixels (refused before decoding)
``not_an_image``     not one of the accepted formats (``ACCEPTED_FORMATS``)
``corrupt_image``    a recognised format that fails to decode (truncated, damaged; a HEIF
                     container whose boxes cannot be read counts as recognised)
``too_small``        a side shorter than ``MIN_SIDE`` pixels

HEIC/HEIF (the iPhone's photo format) is decoded by pillow-heif, whose Pillow plugin is
registered on the first decode that needs more than the core plugins (never on import: the
thin client imports no image library). It goes through the same checks as every format: the
sizes declared in the container (the displayed size, and the coded size of every image item:
a small ``clap`` crop may sit over a huge image) are checked before any pixel is decoded, and a
container pillow-heif cannot parse is ``corrupt_image``. Its orientation comes
from the container's ``irot``/``imir`` boxes, which libheif applies while decoding, as HEIF
specifies; an EXIF Orientation tag inside a HEIF (iPhones write one repeating the boxes) is reset
by pillow-heif and never applied a second time. A file holding several images gives its primary
image; 10- and 12-bit images are reduced to 8 bits.
"""
from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import trace
from ..errors import ImageError
from .files import MAX_FILE_BYTES, display_name, iter_image_files, read_bytes

__all__ = ["LoadedImage", "decode", "load", "read_bytes", "iter_image_files", "display_name", "MAX_FILE_BYTES"]

#: Largest decoded image we accept (pixels). Larger headers are refused before decoding.
MAX_PIXELS = 80_000_000
#: Smallest side that can hold a detectable face.
MIN_SIDE = 32
#: Pillow formats we try, in this order. Only photo formats: weak-magic formats (TGA...) would
#: "recognise" junk, and some plugins are unsafe on untrusted input (EPS runs Ghostscript).
ACCEPTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "DIB", "PPM", "JPEG2000", "AVIF", "HEIF")

#: Major brands of an ISO-BMFF ``ftyp`` box that pillow-heif's plugin claims (HEVC-coded HEIF).
_HEIF_BRANDS = frozenset((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"))
_heif_lock = threading.Lock()
_heif_state: list[bool] = []  # [available] once registration was attempted

_EXIF_ORIENTATION = 0x0112
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: What a hostile file can make a Pillow decoder raise (besides the ones handled by name).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError,
                   TypeError, ZeroDivisionError, NotImplementedError)


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


def _register_heif() -> bool:
    """Register pillow-heif's HEIF opener with Pillow, once per process; False when it is missing.

    Lazy because importing it loads libheif (and the thin client must not import it at all);
    under a lock because the server decodes in several threads. Only the opener is registered,
    with pillow-heif's default options: it opens the primary image and converts 10/12-bit
    images to 8 bits, which is what ``_to_bgr`` expects."""
    if _heif_state:
        return _heif_state[0]
    with _heif_lock:
        if not _heif_state:
            try:
                import pillow_heif
            except ImportError:  # an install without the dependency: HEIC stays not_an_image
                _heif_state.append(False)
            else:
                pillow_heif.register_heif_opener()
                _heif_state.append(True)
    return _heif_state[0]


def _looks_like_heif(data: bytes) -> bool:
    """The file starts with an ``ftyp`` box naming a HEVC HEIF brand (what pillow-heif claims)."""
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def _boxes(data: bytes, start: int, end: int, kind: bytes) -> Iterator[tuple[int, int]]:
    """The (payload start, end) of each ISO-BMFF box of type ``kind`` in ``data[start:end]``;
    stops quietly at the first malformed box (libheif reports what is wrong with the file)."""
    pos = start
    while pos + 8 <= end:
        size, found = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:  # 64-bit size
            if pos + 16 > end:
                return
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:  # to the end of the enclosing box
            size = end - pos
        if size < header or pos + size > end:
            return
        if found == kind:
            yield pos + header, pos + size
        pos += size


def _heif_coded_size(data: bytes) -> tuple[int, int]:
    """The largest width x height any ``ispe`` property of a HEIF file declares (0x0 if none).

    The size Pillow reports is the displayed one, after the ``clap`` crop: a small clean
    aperture over a huge coded image would pass the pixel check and then be decoded in full,
    so the coded size of every image item (a grid, its tiles, a thumbnail) is checked as well.
    Read from the boxes meta > iprp > ipco > ispe, never from the coded data."""
    best = (0, 0)
    # One meta, one iprp, one ipco (as libheif reads them): stop at the first of each.
    meta = next(_boxes(data, 0, len(data), b"meta"), None)
    iprp = next(_boxes(data, meta[0] + 4, meta[1], b"iprp"), None) if meta else None  # meta: a full box
    ipco = next(_boxes(data, iprp[0], iprp[1], b"ipco"), None) if iprp else None
    for ispe, ispe_end in _boxes(data, ipco[0], ipco[1], b"ispe") if ipco else ():
        if ispe_end - ispe >= 12:
            w, h = struct.unpack_from(">II", data, ispe + 4)  # after version + flags
            if w * h > best[0] * best[1]:
                best = (w, h)
    return best


def _accepted_formats() -> tuple[str, ...]:
    Image.init()
    _register_heif()
    return tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)


def _open(buf: io.BytesIO) -> Image.Image:
    """``Image.open`` restricted to the accepted formats.

    The common formats (JPEG, PNG, GIF, BMP, PPM) are tried with only Pillow's five core
    plugins loaded; every other plugin (about 40 modules, and pillow-heif for HEIC/HEIF) is
    imported only when that fails.
    """
    Image.preinit()
    common = tuple(f for f in ACCEPTED_FORMATS if f in Image.OPEN)
    try:
        return Image.open(buf, formats=common)
    except UnidentifiedImageError:
        buf.seek(0)
        return Image.open(buf, formats=_accepted_formats())


@trace.traced("image.decode")
def decode(data: bytes, name: str = "<image>") -> LoadedImage:
    """Decode image bytes into an upright 8-bit BGR array, refusing bombs and junk.

    The header is checked (pixel count, smallest side) before any pixel is decoded. Animated
    and multi-page files give their first frame. EXIF orientation is applied; a damaged EXIF
    block is ignored rather than failing a photo whose pixels are fine.
    """
    shown = display_name(name)
    if not data:
        raise ImageError("empty_file", f"{shown}: empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError("too_large", f"{shown}: {len(data)} bytes is over the {MAX_FILE_BYTES} byte limit")
    digest = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Corrupt EXIF data" and the like: not the user's business
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = _open(io.BytesIO(data))
            w, h = img.size
            if img.format == "HEIF":
                cw, ch = _heif_coded_size(data)
                if cw * ch > MAX_PIXELS:
                    raise ImageError(
                        "too_many_pixels",
                        f"{shown}: {cw}x{ch} coded pixels is over the {MAX_PIXELS:,} pixel limit (not decoded)",
                    )
            if w * h > MAX_PIXELS:
                raise ImageError(
                    "too_many_pixels",
                    f"{shown}: {w}x{h} pixels is over the {MAX_PIXELS:,} pixel limit (not decoded)",
                )
            if min(w, h) < MIN_SIDE:
                raise ImageError("too_small", f"{shown}: {w}x{h} pixels is too small to hold a face")
            img.load()  # the first frame of an animated / multi-page file
            if img.size[0] * img.size[1] > MAX_PIXELS:  # a frame larger than the header said
                raise ImageError("too_many_pixels", f"{shown}: {img.size[0]}x{img.size[1]} pixels is over the limit")
            img = _upright(img)
            pixels = _to_bgr(img)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("too_many_pixels", f"{shown}: image is too large to decode safely (not decoded)") from None
    except UnidentifiedImageError:
        if _looks_like_heif(data):
            if _register_heif():  # pillow-heif refused the container: its boxes are damaged
                raise ImageError(
                    "corrupt_image", f"{shown}: corrupt or truncated HEIC/HEIF image (its header cannot be read)"
                ) from None
            raise ImageError(
                "not_an_image", f"{shown}: HEIC/HEIF images need pillow-heif (pip install pillow-heif)"
            ) from None
        raise ImageError(
            "not_an_image", f"{shown}: not a recognised image format (accepted: {', '.join(_accepted_formats())})"
        ) from None
    except MemoryError:
        raise ImageError("too_many_pixels", f"{shown}: out of memory while decoding") from None
    except _DECODER_ERRORS as exc:
        raise ImageError("corrupt_image", f"{shown}: corrupt or truncated image ({display_name(str(exc).strip())})") from None
    if min(pixels.shape[:2]) < MIN_SIDE:
        raise ImageError(
            "too_small", f"{shown}: {pixels.shape[1]}x{pixels.shape[0]} pixels is too small to hold a face"
        )
    return LoadedImage(pixels=pixels, sha256=digest, size_bytes=len(data))


def load(path: str | os.PathLike[str]) -> LoadedImage:
    return decode(read_bytes(path), str(path))


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag (without the full copy ``ImageOps.exif_transpose`` makes
    when there is nothing to do); unreadable EXIF counts as "no orientation"."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a damaged EXIF block must not cost us a good photo
        return img
    method = _ORIENTATION_TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else img


def _gray_to_uint8(arr: np.ndarray) -> np.ndarray:
    """16/32-bit integer gray -> uint8. Values are scaled by the smallest common bit depth
    (8, 10, 12, 14 or 16 bits) that holds the maximum, through a lookup table: no float copy."""
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.uint8)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:  # 32-bit data: stretch its own range
        a = arr.astype(np.float32)
        return ((a - lo) * (255.0 / ((hi - lo) or 1))).astype(np.uint8)
    bits = next(b for b in (8, 10, 12, 14, 16) if hi < (1 << b))
    lut = np.clip(np.rint(np.arange(65536, dtype=np.float64) * (255.0 / ((1 << bits) - 1))), 0, 255).astype(np.uint8)
    return lut[arr.astype(np.uint16, copy=False)]


def _to_bgr(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        gray = _gray_to_uint8(np.asarray(img))
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img, dtype=np.float32))
        lo, hi = float(arr.min()), float(arr.max())
        gray = ((arr - lo) * (255.0 / ((hi - lo) or 1.0))).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "LAB":
        from PIL import ImageCms

        converted = ImageCms.applyTransform(
            img, ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
        )
        img = converted if converted is not None else img
    elif mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    rgb = np.asarray(img)
    bgr = np.empty_like(rgb)  # three channel copies: much faster than copying a ::-1 view
    bgr[..., 0] = rgb[..., 2]
    bgr[..., 1] = rgb[..., 1]
    bgr[..., 2] = rgb[..., 0]
    return bgr
