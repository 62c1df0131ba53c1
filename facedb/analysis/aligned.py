"""Aligned-crop input: photos that already are 112x112 face crops in the ArcFace five-point template.

Many face datasets ship their faces this way (the eyes, nose tip and mouth corners moved to fixed
points of a 112x112 square, the input every ArcFace/SFace network takes). Detecting again on such
a tight crop misses faces: the detector wants context around a face, and about 4 % of these
crops came back "unknown" (issue 16). With ``aligned=True`` the detector and the aligner are
skipped and the whole image is embedded as it is.

A square image of another size is resized to 112x112 first (the template scales with the
square); any other shape is refused with reason ``not_aligned`` (not a crop of this form, so
embedding it would give a vector of nothing in particular).
"""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import ImageError, ModelError
from .engines import Face, FaceEngine

#: The side of an aligned crop, and the ArcFace five-point template on it (left eye, right eye,
#: nose tip, left and right mouth corners): the points OpenCV's ``FaceRecognizerSF.alignCrop``
#: and InsightFace's ``norm_crop`` move a detected face's landmarks to (``alignCrop`` is exactly the
#: least-squares similarity warp onto these points: tests/test_aligned_template.py).
SIDE = 112
ARCFACE_TEMPLATE: tuple[tuple[float, float], ...] = (
    (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041))
#: A square no larger than this is resized to 112x112; larger squares are photos, not crops.
MAX_SQUARE = 1024
#: Largest relative difference between the sides that still counts as square (JPEG tools
#: sometimes write 112x113).
SQUARE_TOLERANCE = 0.02


class CropEmbedder(Protocol):
    def embed_aligned(self, crop: np.ndarray) -> Face:
        """The face of a 112x112 BGR crop in the template, embedded without detection."""
        ...


def as_crop(bgr: np.ndarray, name: str) -> np.ndarray:
    """``bgr`` as a 112x112 crop: as it is, or resized from another square size; else ``ImageError``."""
    h, w = bgr.shape[:2]
    if (h, w) == (SIDE, SIDE):
        return bgr
    if abs(h - w) > SQUARE_TOLERANCE * max(h, w) or max(h, w) > MAX_SQUARE:
        raise ImageError("not_aligned", f"{name}: --aligned takes square face crops in the ArcFace template "
                                        f"(112x112, or another square up to {MAX_SQUARE} px, resized); this "
                                        f"image is {w}x{h}. Leave out --aligned to detect the faces in it.")
    import cv2

    interp = cv2.INTER_AREA if min(h, w) > SIDE else cv2.INTER_LINEAR
    out: np.ndarray = cv2.resize(bgr, (SIDE, SIDE), interpolation=interp)
    return out


def embed_aligned(engine: FaceEngine, bgr: np.ndarray, name: str) -> list[Face]:
    """One face: the whole of ``bgr`` (an aligned crop), embedded by ``engine``."""
    crop = as_crop(bgr, name)
    embed: Any = getattr(engine, "embed_aligned", None)
    if embed is None:
        raise ModelError(f"the model pack {engine.info.name!r} cannot embed aligned crops; "
                         "leave out --aligned to detect the faces")
    return [embed(np.ascontiguousarray(crop))]


def template_face(score: float = 1.0) -> Face:
    """A ``Face`` covering a whole 112x112 crop, its landmarks on the template (no embedding yet)."""
    return Face(bbox=(0.0, 0.0, float(SIDE), float(SIDE)), score=score, landmarks=list(ARCFACE_TEMPLATE),
                embedding=None)
