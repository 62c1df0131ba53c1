"""What every model pack provides: detect -> align -> embed, behind one small interface."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ...errors import ModelError


@dataclass
class Face:
    """One detected face in image pixel coordinates, with its L2-normalised embedding."""

    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    landmarks: list[tuple[float, float]]  # 5 points: eyes, nose, mouth corners
    #: float32, unit length; None for faces past ``max_faces`` (detected, not embedded)
    embedding: np.ndarray | None = field(repr=False)
    #: Quality signals of an embedded face, when the pack computes them (``sface`` does, see
    #: ``sface.face_quality``): ``det_score``, ``face_px`` (sqrt of the visible box area),
    #: ``eye_px`` (inter-ocular distance), ``blur`` (variance of the Laplacian of the aligned crop;
    #: low = blurred), ``raw_norm`` (the embedding's L2 norm before normalisation).
    quality: dict[str, float] | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.bbox
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@dataclass(frozen=True)
class PackInfo:
    """The contract of a model pack: vectors are only comparable when all of it matches."""

    name: str
    dim: int
    threshold: float  # default cosine-distance match threshold for 1:N identification
    fingerprint: str  # sha256 over the weight files: changes when the weights change
    description: str = ""


class FaceEngine(Protocol):
    info: PackInfo

    def analyze(self, bgr: np.ndarray, max_faces: int | None = None) -> list[Face]:
        """All faces in an 8-bit BGR image, largest first; only the first ``max_faces``
        are embedded (the rest have ``embedding=None``), e.g. 1 when enrolling the largest."""
        ...


def normalise(vec: np.ndarray) -> np.ndarray:
    v = np.asarray(vec, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(v))
    if not np.isfinite(n) or n == 0.0:
        raise ModelError("the model produced an invalid (zero or non-finite) embedding")
    return (v / n).astype(np.float32)


def sort_largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: f.area, reverse=True)


# -- registry -----------------------------------------------------------------

EngineFactory = Callable[[Path | None], FaceEngine]
_FACTORIES: dict[str, EngineFactory] = {}
_DESCRIPTIONS: dict[str, str] = {}


def register(name: str, description: str) -> Callable[[EngineFactory], EngineFactory]:
    def deco(factory: EngineFactory) -> EngineFactory:
        _FACTORIES[name] = factory
        _DESCRIPTIONS[name] = description
        return factory

    return deco


def known_packs() -> dict[str, str]:
    from . import _load_builtin_packs

    _load_builtin_packs()
    return dict(_DESCRIPTIONS)
