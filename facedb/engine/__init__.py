"""Model packs. ``load_engine(name)`` returns a ready ``FaceEngine``.

Pack names: ``sface`` (embedded default, offline), ``buffalo_l``, ``buffalo_s``,
``antelopev2`` (InsightFace model packs), or a path to a directory of InsightFace ONNX files.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelError
from .base import Face, FaceEngine, PackInfo, known_packs

__all__ = ["Face", "FaceEngine", "PackInfo", "load_engine", "known_packs", "is_insightface_pack"]

_CACHE: dict[tuple[str, ...], FaceEngine] = {}
#: Environment variables that change how a pack is run (not its vectors): part of the cache key.
_ENGINE_ENV = ("FACEDB_SFACE_BACKEND", "FACEDB_SFACE_THREADS")


def _load_builtin_packs() -> None:
    from . import sface  # noqa: F401
    from . import insightface_pack  # noqa: F401


def is_insightface_pack(name: str) -> bool:
    return name != "sface"


def load_engine(name: str, models_dir: Path | None = None) -> FaceEngine:
    """Load (once per process) the engine for a pack name or pack directory."""
    key: tuple[str, ...] = (name, str(models_dir or ""))
    env = tuple(f"{v}={os.environ[v]}" for v in _ENGINE_ENV if os.environ.get(v))
    key += env  # unchanged (name, dir) key when none is set
    if key in _CACHE:
        return _CACHE[key]
    _load_builtin_packs()
    from .base import _FACTORIES

    if name in _FACTORIES:
        engine = _FACTORIES[name](models_dir)
    elif Path(name).expanduser().is_dir() or "/" in name:
        from .insightface_pack import load_insightface_dir

        engine = load_insightface_dir(Path(name).expanduser())
    else:
        raise ModelError(
            f"unknown model pack {name!r}; known packs: {', '.join(sorted(_FACTORIES))} "
            "(or give a directory of InsightFace ONNX files)"
        )
    _CACHE[key] = engine
    return engine
