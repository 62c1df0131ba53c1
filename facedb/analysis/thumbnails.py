"""A thumbnail of an enrolled face, cropped from its source photo while that file is still on
disk and unchanged. facedb keeps no copy of any photo: a face whose file is gone, changed or
was uploaded (never a file here) has no thumbnail."""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

from ..catalog.database import Catalog
from ..errors import ImageError, NotFoundError
from . import files, imaging

#: Extra context around the face box, as a share of its size on each side.
MARGIN = 0.25


def face_thumbnail(catalog: Catalog, face_id: int, size: int = 112) -> bytes | None:
    """JPEG bytes of face ``face_id`` (a ``size`` px square at most), or None when its source
    photo is not available; ``NotFoundError`` when there is no such face."""
    src = catalog.face_source(face_id)
    if src is None:
        raise NotFoundError(f"no enrolled face with id {face_id}")
    if src["source"] != "file":
        return None
    try:
        data = files.read_bytes(Path(src["path"]))
        if hashlib.sha256(data).hexdigest() != src["sha256"]:
            return None
        pixels = imaging.decode(data, src["path"]).pixels
    except ImageError:
        return None
    x1, y1, x2, y2 = src["bbox"]
    w, h = x2 - x1, y2 - y1
    side = max(w, h) * (1 + 2 * MARGIN)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    H, W = pixels.shape[:2]
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(W, cx + side / 2)), int(min(H, cy + side / 2))
    crop = Image.fromarray(pixels[top:bottom, left:right, ::-1])  # BGR -> RGB
    crop.thumbnail((size, size))
    out = io.BytesIO()
    crop.save(out, format="JPEG", quality=85)
    return out.getvalue()
