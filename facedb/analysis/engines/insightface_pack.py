"""InsightFace model packs (``buffalo_l``, ``buffalo_s``, ``antelopev2``) and plain ONNX directories.

A pack is a folder of InsightFace ONNX files: an SCRFD face detector with 5-point landmarks
plus an ArcFace-style recogniser (112x112 input).  Other files in the folder (landmark,
gender/age models) are ignored.  Named packs live in ``<root>/models/<name>/`` where ``<root>``
is facedb's ``--models-dir`` / ``FACEDB_MODELS_DIR`` or else ``~/.insightface`` (InsightFace's
own default); any other folder can be loaded by giving its path as the pack name.

Nothing is ever downloaded: the folder is checked *before* insightface is touched, and the two
models are then loaded file by file with ``insightface.model_zoo.get_model(<file>.onnx,
download=False)``.  (``FaceAnalysis(name=...)`` is deliberately not used: for a name that is not
an existing folder it calls ``insightface.utils.ensure_available``, which downloads the zip, and
it builds an ONNX Runtime session for every model in the folder.)  ``insightface`` itself is
imported only when a pack is loaded.

The pretrained InsightFace packs are released for non-commercial research use only.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DependencyError, FacedbError, ModelError
from .base import Face, PackInfo, normalise, register, sort_largest_first

#: InsightFace's default models root when no --models-dir / FACEDB_MODELS_DIR is given.
DEFAULT_ROOT = Path("~/.insightface")
#: Detector input size (InsightFace's classic single-scale setting).
DET_SIZE = (640, 640)
#: SCRFD confidence below which a detection is dropped (InsightFace's default).
DET_THRESHOLD = 0.5
#: Default 1:N match threshold in cosine distance (1 - cosine similarity).  NOT calibrated for
#: facedb: 0.6 (similarity 0.4) sits in the range commonly quoted for ArcFace-family models
#: (similarity 0.3-0.5).  Calibrate on your own data (scripts/calibrate_threshold.py).
ARCFACE_DEFAULT_THRESHOLD = 0.6
PACKS: dict[str, tuple[float, str]] = {
    "buffalo_l": (ARCFACE_DEFAULT_THRESHOLD,
                  "InsightFace buffalo_l: SCRFD-10GF + ArcFace R50 (WebFace600K), 512-d; "
                  "non-commercial research licence; threshold uncalibrated"),
    "buffalo_s": (ARCFACE_DEFAULT_THRESHOLD,
                  "InsightFace buffalo_s: SCRFD-500MF + MobileFaceNet (WebFace600K), 512-d; "
                  "non-commercial research licence; threshold uncalibrated"),
    "antelopev2": (ARCFACE_DEFAULT_THRESHOLD,
                   "InsightFace antelopev2: SCRFD-10GF + ArcFace R100 (Glint360K), 512-d; "
                   "non-commercial research licence; threshold uncalibrated"),
}
RELEASES_URL = "https://github.com/deepinsight/insightface/releases"
INSTALL_HINT = "pip install 'facedb-service[insightface]'"

DETECTION = "detection"
RECOGNITION = "recognition"


# -- locating and checking a pack folder (no insightface needed) ------------------------------

def pack_root(models_dir: Path | None) -> Path:
    """The models root: ``models_dir`` (``--models-dir`` / ``FACEDB_MODELS_DIR``) or ``~/.insightface``."""
    return Path(models_dir if models_dir is not None else DEFAULT_ROOT).expanduser()


def pack_dir(name: str, models_dir: Path | None) -> Path:
    return pack_root(models_dir) / "models" / name


def _how_to_get(name: str, folder: Path) -> str:
    return (
        f"To install it: download {name}.zip from the InsightFace releases ({RELEASES_URL}) and unzip it "
        f"so that its .onnx files sit directly in {folder}/ (e.g. `mkdir -p {folder} && unzip {name}.zip "
        f"-d {folder}`; if that creates {folder}/{name}/, move the files up one level), or point "
        f"--models-dir / FACEDB_MODELS_DIR at the folder that contains models/{name}/. "
        "facedb never downloads models. Note: InsightFace's pretrained packs are licensed for "
        "non-commercial research use only."
    )


def _how_to_fix_dir(folder: Path) -> str:
    return (f"Give a folder holding an InsightFace SCRFD detector (with landmarks) and an ArcFace-style "
            f"recogniser, e.g. the unzipped contents of buffalo_l.zip from {RELEASES_URL}.")


def _onnx_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.onnx") if p.is_file())


def _nested_onnx_dirs(folder: Path) -> list[Path]:
    try:
        subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [d for d in subdirs if _onnx_files(d)]


def _classify(path: Path) -> str | None:
    """The InsightFace task of an ONNX file, judged from its graph the way insightface's
    ``ModelRouter`` does: >=5 outputs -> detection; square input >=112 px (multiple of 16) ->
    recognition; 192 px -> landmarks, 96 px -> gender/age (ignored here)."""
    try:
        import onnx
    except ImportError as exc:
        raise DependencyError(f"the onnx package is not installed ({exc}); run: {INSTALL_HINT}") from None
    try:
        try:
            model = onnx.load_model(str(path), load_external_data=False)
        except TypeError:  # pragma: no cover - very old onnx
            model = onnx.load_model(str(path))
    except Exception as exc:  # DecodeError, OSError, ...
        raise ModelError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc}); "
            "the file may be truncated or corrupt: download and unzip the pack again"
        ) from None
    graph = model.graph
    if len(graph.output) >= 5:
        return DETECTION
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]  # old IRs list weights as inputs
    if not inputs:
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[2] is None or dims[3] is None:
        return None
    h, w = dims[2], dims[3]
    if h in (192, 96) or (len(inputs) == 2 and h == 128):
        return None  # landmark / attribute / swapper models
    if h == w and h >= 112 and h % 16 == 0 and len(graph.output) == 1:
        return RECOGNITION
    return None


def find_models(folder: Path, label: str, how_to_get: str) -> tuple[Path, Path]:
    """Check ``folder`` and return its (detector, recogniser) files, or raise ``ModelError``
    saying where it looked and how to fix it.  Like insightface's ``FaceAnalysis``, the first
    file (sorted by name) of each kind wins."""
    if not folder.exists():
        hint = ""
        root = folder.parent.parent if folder.parent.name == "models" else None
        if root is not None:
            if _onnx_files(root):
                hint = (f" ({root} itself holds .onnx files: to use that folder as is, give its path "
                        "as the pack name instead of a models root)")
            direct = root / folder.name
            if direct.is_dir() and _onnx_files(direct):
                hint = (f" (there are .onnx files in {direct}/: the pack must be in a 'models' "
                        f"subfolder, i.e. {folder}/)")
            for zip_path in (folder.with_suffix(".zip"), root / f"{folder.name}.zip"):
                if zip_path.is_file():
                    hint += f" ({zip_path} exists: unzip it into {folder}/)"
                    break
        raise ModelError(f"{label} not found: {folder} does not exist{hint}. {how_to_get}")
    if not folder.is_dir():
        raise ModelError(f"{label}: {folder} is not a directory. {how_to_get}")
    files = _onnx_files(folder)
    if not files:
        nested = _nested_onnx_dirs(folder)
        if nested:
            raise ModelError(
                f"{label}: {folder} has no .onnx files itself, but {nested[0]}/ does: the zip was "
                f"unzipped one folder too deep. Move the .onnx files from {nested[0]}/ up into {folder}/ "
                f"(e.g. `mv {nested[0]}/*.onnx {folder}/`)."
            )
        raise ModelError(f"{label}: {folder} contains no .onnx files (looked for {folder}/*.onnx). {how_to_get}")
    found: dict[str, Path] = {}
    for path in files:
        task = _classify(path)
        if task is not None and task not in found:
            found[task] = path
    names = ", ".join(p.name for p in files)
    if DETECTION not in found:
        raise ModelError(
            f"{label}: no face detection model among the .onnx files in {folder}/ ({names}); "
            f"an InsightFace SCRFD detector (e.g. det_10g.onnx) is needed. {how_to_get}"
        )
    if RECOGNITION not in found:
        raise ModelError(
            f"{label}: no face recognition model among the .onnx files in {folder}/ ({names}); "
            f"an ArcFace-style recogniser with a 112x112 input (e.g. w600k_r50.onnx) is needed. {how_to_get}"
        )
    return found[DETECTION], found[RECOGNITION]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(files: list[Path]) -> str:
    """sha256 over the sha256 hex digests of ``files``, taken in file-name order."""
    digests = [sha256_file(p) for p in sorted(files, key=lambda p: p.name)]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


# -- insightface -------------------------------------------------------------------------------

def _import_insightface() -> tuple[Any, Any]:
    """``(insightface.model_zoo, insightface.app.common.Face)``, or ``DependencyError``."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise DependencyError(f"onnxruntime is not installed or broken ({exc}); run: {INSTALL_HINT}") from None
    try:
        import insightface  # noqa: F401
        from insightface import model_zoo
        from insightface.app.common import Face as IFFace
    except ImportError as exc:
        raise DependencyError(
            f"insightface could not be imported ({type(exc).__name__}: {exc}); run: {INSTALL_HINT}"
        ) from None
    onnxruntime.set_default_logger_severity(3)  # as FaceAnalysis does: no ORT warning spam
    return model_zoo, IFFace


class InsightFaceEngine:
    """SCRFD + ArcFace via insightface's model classes, CPU only.

    Not thread-safe: use one instance per thread or process.
    """

    def __init__(self, folder: Path, name: str, threshold: float, description: str, how_to_get: str) -> None:
        label = f"InsightFace pack {name!r}" if name in PACKS else "InsightFace model directory"
        det_file, rec_file = find_models(folder, label, how_to_get)
        model_zoo, self._IFFace = _import_insightface()
        self._det = self._load(model_zoo, det_file, DETECTION)
        self._rec = self._load(model_zoo, rec_file, RECOGNITION)
        if not getattr(self._det, "use_kps", False):
            raise ModelError(f"{det_file} is a detector without 5-point landmarks; faces cannot be aligned")
        try:
            self._det.prepare(-1, input_size=DET_SIZE, det_thresh=DET_THRESHOLD)
            self._rec.prepare(-1)
            dim = self._embedding_dim()
        except FacedbError:
            raise
        except Exception as exc:
            raise ModelError(f"{label} in {folder}/ could not be prepared ({type(exc).__name__}: {exc})") from exc
        self.folder = folder
        self.files = (det_file, rec_file)
        self.info = PackInfo(
            name=name,
            dim=dim,
            threshold=threshold,
            fingerprint=fingerprint([det_file, rec_file]),
            description=f"{description} [{det_file.name} + {rec_file.name}]",
        )

    @staticmethod
    def _load(model_zoo: Any, path: Path, task: str) -> Any:
        try:
            model = model_zoo.get_model(str(path), providers=["CPUExecutionProvider"], download=False)
        except Exception as exc:  # AssertionError, ORT errors, ValueError, ...
            raise ModelError(f"insightface could not load {path} ({type(exc).__name__}: {exc})") from None
        got = getattr(model, "taskname", None)
        if got != task:
            raise ModelError(f"insightface did not recognise {path} as a {task} model (got {got!r})")
        return model

    def _embedding_dim(self) -> int:
        shape = getattr(self._rec, "output_shape", None) or []
        last = shape[-1] if len(shape) else None
        if isinstance(last, (int, np.integer)) and last > 0:
            return int(last)
        side = int(self._rec.input_size[0])  # symbolic output shape: run one blank crop
        return int(np.asarray(self._rec.get_feat(np.zeros((side, side, 3), np.uint8))).size)

    def analyze(self, bgr: np.ndarray, max_faces: int | None = None) -> list[Face]:
        # InsightFace embeds every detected face; ``max_faces`` is accepted for the interface.
        img = np.asarray(bgr)
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"expected an 8-bit BGR image, got shape {img.shape} dtype {img.dtype}")
        img = np.ascontiguousarray(img)
        h, w = img.shape[:2]
        if min(h, w) * min(DET_SIZE[0] / w, DET_SIZE[1] / h) < 1.0:
            return []  # so thin that it vanishes at detector scale
        try:
            with warnings.catch_warnings():
                # insightface 2.1's face_align calls skimage's deprecated SimilarityTransform.estimate
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"insightface\.")
                return sort_largest_first(self._analyze(img))
        except FacedbError:
            raise
        except MemoryError:
            raise
        except Exception as exc:
            raise ModelError(
                f"InsightFace inference failed on a {w}x{h} image with {self.info.name!r} "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def embed_aligned(self, crop: np.ndarray) -> Face:
        """The face of a 112x112 BGR crop already in the ArcFace template (``facedb.analysis.aligned``)."""
        from ..aligned import template_face

        face = template_face()
        face.embedding = normalise(np.asarray(self._rec.get_feat(crop)).reshape(-1))
        return face

    def _analyze(self, img: np.ndarray) -> list[Face]:
        h, w = img.shape[:2]
        bboxes, kpss = self._det.detect(img, max_num=0, metric="default")
        faces: list[Face] = []
        for i in range(bboxes.shape[0]):
            x1, y1, x2, y2, score = (float(v) for v in bboxes[i, :5])
            kps = np.asarray(kpss[i], dtype=np.float32)
            fobj = self._IFFace(bbox=bboxes[i, :4], kps=kps, det_score=score)
            emb = self._rec.get(img, fobj)
            faces.append(
                Face(
                    bbox=(max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)),
                    score=score,
                    landmarks=[(float(px), float(py)) for px, py in kps],
                    embedding=normalise(emb),
                )
            )
        return faces


# -- entry points -------------------------------------------------------------------------------

def load_named_pack(name: str, models_dir: Path | None) -> InsightFaceEngine:
    threshold, description = PACKS[name]
    folder = pack_dir(name, models_dir)
    return InsightFaceEngine(folder, name, threshold, description, _how_to_get(name, folder))


def load_insightface_dir(path: Path) -> InsightFaceEngine:
    """An engine from any folder of InsightFace ONNX files (detector + recogniser).

    The pack name is the folder's absolute path, so ``load_engine(info.name)`` reloads it.
    """
    folder = Path(path).expanduser().absolute()
    return InsightFaceEngine(
        folder,
        str(folder),
        ARCFACE_DEFAULT_THRESHOLD,
        "InsightFace ONNX directory; threshold uncalibrated",
        _how_to_fix_dir(folder),
    )


def _make_factory(name: str) -> Callable[[Path | None], InsightFaceEngine]:
    def factory(models_dir: Path | None) -> InsightFaceEngine:
        return load_named_pack(name, models_dir)

    factory.__name__ = f"_factory_{name}"
    return factory


for _name, (_thr, _desc) in PACKS.items():
    register(_name, _desc)(_make_factory(_name))
