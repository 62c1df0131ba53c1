"""A hostile image corpus, generated at test time (nothing is committed).

    from hostile import make_hostile_corpus            # tests/ is on sys.path under pytest
    corpus = make_hostile_corpus(tmp_path)              # or use the ``hostile_corpus`` fixture
    for case, (path, reason) in corpus.items():
        ...  # reason: the ImageError reason facedb must give, or None: a face must be found

Every case is a file (or directory, symlink, FIFO...) directly inside ``dir``, except
``parent_not_directory`` whose parent is a regular file. The corpus is also a "mixed
directory": ``iter_image_files([dir])`` must terminate despite the ``dir_symlink_loop``
entry (a symlink to ``.``) and return exactly ``expected_walk(dir, corpus)``.

Cases that cannot be made here (``unreadable_chmod`` when running as root, symlinks or FIFOs
on a file system without them, a newline in a file name...) are left out of the mapping and
listed with the reason in ``corpus.skipped``; ``ALL_CASES`` names every case there can be.
"""
from __future__ import annotations

import importlib.util
import io
import os
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, ImageOps

#: Orientation tag in EXIF.
EXIF_ORIENTATION = 0x0112
#: Size of the photo the ``huge_photo`` case pastes a face into.
HUGE_SIZE = (8000, 6000)
#: Header size of the ``png_header_bomb`` case (never decoded).
BOMB_SIZE = (50000, 50000)

ALL_CASES: tuple[str, ...] = (
    # refused, with the reason facedb must give
    "zero_byte", "random_bytes", "truncated_jpeg", "png_header_bomb", "one_pixel", "text_file",
    "directory", "dir_symlink_loop", "file_symlink_loop", "dangling_symlink", "missing",
    "unreadable_chmod", "parent_not_directory", "fifo",
    # a face must be found
    "upright_jpeg", "animated_gif", "png16_gray", "cmyk_jpeg", "exif_rotated", "exif_garbage",
    "rgba_png", "palette_png", "grayscale_png", "huge_photo", "png_named_jpg", "no_extension",
    "name_with_spaces", "name_unicode", "name_newline", "symlink_to_face",
)


class HostileCorpus(dict):
    """``dict[case, (path, expected_reason_or_None)]`` plus ``skipped: dict[case, why]``,
    ``face_photo`` (the source photo) and ``upright`` (its padded RGB version, the pixels
    every face case was derived from)."""

    skipped: dict[str, str]
    face_photo: Path
    upright: Image.Image


def insightface_images_dir() -> Path | None:
    """``insightface/data/images`` of the installed insightface package (found without importing it)."""
    spec = importlib.util.find_spec("insightface")
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        d = Path(loc) / "data" / "images"
        if d.is_dir():
            return d
    return None


def default_face_photo() -> Path:
    """A real single-face photo that is always there: insightface's Tom_Hanks_54745.png."""
    d = insightface_images_dir()
    if d is None or not (d / "Tom_Hanks_54745.png").is_file():
        raise FileNotFoundError("insightface is not installed: no default face photo (pip install insightface)")
    return d / "Tom_Hanks_54745.png"


def upright_face(photo: Path, min_side: int = 256) -> Image.Image:
    """The photo as upright RGB with a 25 % grey margin (context for the detector once the
    photo is rotated, recoloured or pasted), enlarged so that its shorter side is >= min_side."""
    with Image.open(photo) as im:
        im.seek(0)
        rgb = (ImageOps.exif_transpose(im) or im).convert("RGB")
    border = max(rgb.size) // 4
    rgb = ImageOps.expand(rgb, border=border, fill=(128, 128, 128))
    if min(rgb.size) < min_side:
        k = min_side / min(rgb.size)
        rgb = rgb.resize((round(rgb.width * k), round(rgb.height * k)), Image.Resampling.LANCZOS)
    return rgb


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_header_bomb(width: int = BOMB_SIZE[0], height: int = BOMB_SIZE[1]) -> bytes:
    """A well-formed PNG (valid CRCs) whose IHDR claims width x height 8-bit RGB pixels, with a
    tiny IDAT holding only a few rows: it costs gigabytes only to a decoder that trusts it."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = (b"\x00" + b"\x00" * (3 * width)) * 2
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows, 9))
            + png_chunk(b"IEND", b""))


def jpeg_bytes(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def with_garbage_exif(jpeg: bytes, seed: int = 7) -> bytes:
    """Insert an APP1 "Exif" segment whose TIFF structure is nonsense right after SOI."""
    rng = random.Random(seed)
    # big-endian TIFF header, first IFD at offset 8 claiming 0x7FFF entries, then junk
    body = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\x7f\xff" + rng.randbytes(300)
    segment = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + segment + jpeg[2:]


def expected_walk(dir: Path, corpus: dict[str, tuple[Path, str | None]]) -> list[Path]:
    """What ``iter_image_files([dir])`` must return for a corpus directory: every entry of
    ``dir`` that is not a directory (following symlinks) and not hidden, sorted by name
    -- dangling / looping symlinks, FIFOs and junk included, so that ``load`` reports them."""
    out = []
    for path, _ in corpus.values():
        if path.parent != dir or path.name.startswith(".") or not os.path.lexists(path):
            continue
        try:
            is_dir = path.is_dir()
        except OSError:
            is_dir = False
        if not is_dir:
            out.append(path)
    return sorted(set(out), key=lambda p: p.name)


def make_hostile_corpus(dir: Path, face_photo: Path | None = None) -> HostileCorpus:
    """Write the hostile corpus into ``dir`` (created if needed; should be empty) and map each
    case name to ``(path, expected reason or None when a face must be found)``.

    ``face_photo``: a real upright single-face photo (any format Pillow reads); default
    ``default_face_photo()``. Takes about a second (the 8000x6000 JPEG dominates).
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    photo = Path(face_photo) if face_photo is not None else default_face_photo()
    face = upright_face(photo)
    corpus = HostileCorpus()
    corpus.skipped = {}
    corpus.face_photo = photo
    corpus.upright = face

    def put(case: str, name: str, data: bytes, reason: str | None) -> Path:
        p = dir / name
        p.write_bytes(data)
        corpus[case] = (p, reason)
        return p

    def save(case: str, name: str, img: Image.Image, fmt: str, reason: str | None = None, **kw: object) -> Path:
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        return put(case, name, buf.getvalue(), reason)

    upright = jpeg_bytes(face)
    put("upright_jpeg", "upright.jpg", upright, None)

    # -- refused ------------------------------------------------------------------------
    put("zero_byte", "zero.jpg", b"", "empty_file")
    put("random_bytes", "random.jpg", random.Random(1234).randbytes(4096), "not_an_image")
    put("truncated_jpeg", "truncated.jpg", upright[: len(upright) * 6 // 10], "corrupt_image")
    put("png_header_bomb", "bomb.png", png_header_bomb(), "too_many_pixels")
    save("one_pixel", "one_pixel.png", Image.new("RGB", (1, 1), (200, 150, 120)), "PNG", "too_small")
    put("text_file", "notes.txt", b"These are my holiday notes.\nNot a picture at all.\n" * 20, "not_an_image")
    (dir / "folder.jpg").mkdir(exist_ok=True)
    corpus["directory"] = (dir / "folder.jpg", "is_directory")
    corpus["missing"] = (dir / "missing.jpg", "not_found")
    corpus["parent_not_directory"] = (dir / "upright.jpg" / "child.jpg", "unreadable")

    def symlink(case: str, name: str, target: str, reason: str | None, *, target_is_directory: bool = False) -> None:
        try:
            os.symlink(target, dir / name, target_is_directory=target_is_directory)
        except (OSError, NotImplementedError) as exc:
            corpus.skipped[case] = f"cannot create a symlink here ({exc})"
        else:
            corpus[case] = (dir / name, reason)

    symlink("dir_symlink_loop", "loop", ".", "is_directory", target_is_directory=True)
    symlink("dangling_symlink", "dangling.jpg", "no-such-target.jpg", "not_found")
    symlink("symlink_to_face", "link_to_face.jpg", "upright.jpg", None)
    symlink("file_symlink_loop", "self_loop.jpg", "self_loop.jpg", "unreadable")  # ELOOP

    if hasattr(os, "mkfifo"):
        try:
            os.mkfifo(dir / "pipe.jpg")
            corpus["fifo"] = (dir / "pipe.jpg", "not_a_file")
        except OSError as exc:
            corpus.skipped["fifo"] = f"cannot create a FIFO here ({exc})"
    else:
        corpus.skipped["fifo"] = "os.mkfifo is not available on this platform"

    locked = put("unreadable_chmod", "locked.jpg", upright, "unreadable")
    locked.chmod(0)
    try:
        with open(locked, "rb"):
            readable = True
    except PermissionError:
        readable = False
    if readable:
        locked.unlink()
        del corpus["unreadable_chmod"]
        why = ("running as root: chmod 000 does not stop root from reading" if getattr(os, "geteuid", lambda: 1)() == 0
               else "chmod 000 does not stop reading on this platform")
        corpus.skipped["unreadable_chmod"] = why + " (parent_not_directory covers 'unreadable')"

    # -- a face must be found -----------------------------------------------------------
    gray = face.convert("L")
    second = Image.new("RGB", face.size, (20, 160, 40))  # a faceless second frame
    buf = io.BytesIO()
    face.save(buf, "GIF", save_all=True, append_images=[second], duration=[500, 500], loop=0)
    put("animated_gif", "animated.gif", buf.getvalue(), None)

    import numpy as np

    wide = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)  # full 16-bit range
    assert wide.mode == "I;16", wide.mode
    save("png16_gray", "gray16.png", wide, "PNG")
    put("cmyk_jpeg", "cmyk.jpg", jpeg_bytes(face.convert("CMYK")), None)

    # Stored pixels turned 90 degrees counter-clockwise; Orientation 6 tells a viewer to turn
    # them 90 degrees clockwise, so the photo is shown (and must be analysed) upright.
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    put("exif_rotated", "exif_rotated.jpg", jpeg_bytes(face.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes()),
        None)
    put("exif_garbage", "exif_garbage.jpg", with_garbage_exif(upright), None)

    rgba = face.convert("RGBA")
    alpha = Image.new("L", face.size, 0)
    alpha.paste(255, (face.width // 8, face.height // 8, face.width - face.width // 8, face.height - face.height // 8))
    rgba.putalpha(alpha)  # a transparent frame around the photo
    save("rgba_png", "rgba.png", rgba, "PNG")
    save("palette_png", "palette.png", face.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG")
    save("grayscale_png", "grayscale.png", gray, "PNG")
    png = io.BytesIO()
    face.save(png, "PNG")
    put("png_named_jpg", "really_a_png.jpg", png.getvalue(), None)
    put("no_extension", "subject99.upright", upright, None)

    big = Image.new("RGB", HUGE_SIZE, (96, 112, 128))
    k = 1600 / face.height  # ~130 px tall once YuNet's copy is scaled down to 640 px
    big.paste(face.resize((round(face.width * k), 1600), Image.Resampling.BILINEAR), (4700, 2900))
    put("huge_photo", "huge_8000x6000.jpg", jpeg_bytes(big), None)
    del big

    for case, name in (("name_with_spaces", "my holiday photo 01.jpg"),
                       ("name_unicode", "visage_été_顔_Ωmega.jpg"),
                       ("name_newline", "new\nline.jpg")):
        try:
            put(case, name, upright, None)
        except (OSError, UnicodeError, ValueError) as exc:
            corpus.skipped[case] = f"this file system refuses the name {name!r} ({exc})"
    return corpus
