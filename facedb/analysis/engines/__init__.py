"""Model packs. ``load_engine(name)`` returns a ready ``FaceEngine``.

Pack names: ``sface`` (embedded default, offline), ``buffalo_l``, ``buffalo_s``,
``antelopev2`` (InsightFace model packs), or a path to a directory of InsightFace ONNX files.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ... import trace
from ...errors import ModelError
from .base import Face, FaceEngine, PackInfo, known_packs

__all__ = ["Face", "FaceEngine", "PackInfo", "load_engine", "using_engine", "forget_engines", "known_packs",
           "is_insightface_pack"]

_CACHE: dict[tuple[str, ...], FaceEngine] = {}
#: Environment variables that change how a pack is run (not its vectors): part of the cache key.
_ENGINE_ENV = ("FACEDB_SFACE_BACKEND", "FACEDB_SFACE_THREADS")


def _load_builtin_packs() -> None:
    # Registered in this order (the embedded default first), so packs are listed in it.
    for module in ("sface", "insightface_pack"):
        importlib.import_module(f"{__name__}.{module}")


def is_insightface_pack(name: str) -> bool:
    return name not in ("sface", "sface-flip")


@contextmanager
def using_engine(engine: FaceEngine, name: str, models_dir: Path | None = None) -> Iterator[FaceEngine]:
    """Serve ``engine`` for pack ``name`` in this process while the block runs (tests that wrap
    the real engine, e.g. to memoise it, use this instead of reaching into the cache)."""
    key = (name, str(models_dir or ""))
    previous = _CACHE.get(key)
    _CACHE[key] = engine
    try:
        yield engine
    finally:
        if previous is None:
            _CACHE.pop(key, None)
        else:
            _CACHE[key] = previous


def forget_engines() -> None:
    """Unload every engine this process loaded (the next ``load_engine`` loads afresh)."""
    _CACHE.clear()


def load_engine(name: str, models_dir: Path | None = None) -> FaceEngine:
    """Load (once per process) the engine for a pack name or pack directory."""
    key: tuple[str, ...] = (name, str(models_dir or ""))
    env = tuple(f"{v}={os.environ[v]}" for v in _ENGINE_ENV if os.environ.get(v))
    key += env  # unchanged (name, dir) key when none is set
    if key in _CACHE:
        return _CACHE[key]
    with trace.span("engine.load", pack=name):
        engine = _load(name, models_dir)
    _CACHE[key] = engine
    return engine


def _load(name: str, models_dir: Path | None) -> FaceEngine:
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
    return engine
