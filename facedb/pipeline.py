"""Decode + detect + embed, in this process or in a pool of worker processes.

Workers import only imaging and the engine (never Chroma or SQL), each loads its own model
once, and OpenCV runs single-threaded in each so that N workers use N cores.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from . import imaging
from .engine import Face, load_engine
from .errors import FacedbError, ImageError


@dataclass
class Analysis:
    """What one image gave: faces (largest first) or a failure reason."""

    key: int
    faces: list[Face]
    width: int = 0
    height: int = 0
    reason: str | None = None
    message: str | None = None


_WORKER_PACK: tuple[str, Path | None, int | None] | None = None


def _init_worker(pack: str, models_dir: Path | None, max_faces: int | None) -> None:
    global _WORKER_PACK
    import cv2

    cv2.setNumThreads(1)
    _WORKER_PACK = (pack, models_dir, max_faces)
    load_engine(pack, models_dir)


def analyze_bytes(key: int, data: bytes, name: str, pack: str, models_dir: Path | None,
                  max_faces: int | None = None) -> Analysis:
    try:
        img = imaging.decode(data, name)
        faces = load_engine(pack, models_dir).analyze(img.pixels, max_faces=max_faces)
    except ImageError as exc:
        return Analysis(key, [], reason=exc.reason, message=str(exc))
    except FacedbError:
        raise
    except Exception as exc:  # one odd image must never stop a batch
        return Analysis(key, [], reason="analysis_error", message=f"{name}: {type(exc).__name__}: {exc}")
    return Analysis(key, faces, img.width, img.height)


def _worker_task(args: tuple[int, bytes, str]) -> Analysis:
    assert _WORKER_PACK is not None
    key, data, name = args
    return analyze_bytes(key, data, name, *_WORKER_PACK)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class Analyzer:
    """Runs ``analyze_bytes`` over many images; a process pool when ``workers`` > 1."""

    def __init__(self, pack: str, models_dir: Path | None, workers: int = 1, max_faces: int | None = None) -> None:
        self.pack = pack
        self.models_dir = models_dir
        self.max_faces = max_faces
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def run(self, items: Iterable[tuple[int, bytes, str]], n_items: int) -> Iterator[Analysis]:
        """Yield analyses in input order."""
        if self.workers == 1 or n_items < 32:
            for key, data, name in items:
                yield analyze_bytes(key, data, name, self.pack, self.models_dir, self.max_faces)
            return
        items = list(items)
        done = 0
        try:
            if self._pool is None:
                ctx = multiprocessing.get_context("spawn")
                self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                                 initargs=(self.pack, self.models_dir, self.max_faces))
            for res in self._pool.map(_worker_task, items, chunksize=4):
                done += 1
                yield res
        except BrokenProcessPool:
            # Workers could not start (e.g. __main__ is not importable) or died: finish here.
            self.workers = 1
            self.close()
            for key, data, name in items[done:]:
                yield analyze_bytes(key, data, name, self.pack, self.models_dir, self.max_faces)
