"""Decode + detect + embed, in this process or in a pool of worker processes.

Workers import only imaging and the engine (never Chroma or SQL), each loads its own model
once, and OpenCV runs single-threaded in each so that N workers use N cores.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
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


def _worker_batch(batch: list[tuple[int, bytes, str]]) -> list[Analysis]:
    """One pool task: a few images (fewer round trips than one task per image)."""
    assert _WORKER_PACK is not None
    return [analyze_bytes(key, data, name, *_WORKER_PACK) for key, data, name in batch]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


#: Images per pool task, and tasks in flight per worker: enough queued work to keep every
#: worker busy while the caller stores a write batch (~1 s), little enough to bound memory.
TASK_SIZE = 4
TASKS_PER_WORKER = 8
#: Below this many images a pool is not worth its start-up (~1 s per spawned worker).
MIN_POOL_ITEMS = 32


class Analyzer:
    """Runs ``analyze_bytes`` over many images; a process pool when ``workers`` > 1.

    ``stream`` pulls its input lazily and yields analyses as workers finish them, so that
    reading, hashing and storing in the calling process overlap with the model work.
    """

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

    def start(self, n_items: int) -> None:
        """Spawn the workers now (they load their models while the caller reads files)."""
        if self.workers > 1 and n_items >= MIN_POOL_ITEMS and self._pool is None:
            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self.pack, self.models_dir, self.max_faces))
            for _ in range(self.workers):
                self._pool.submit(_worker_batch, [])

    def _inline(self, items: Iterable[tuple[int, bytes, str]]) -> Iterator[Analysis]:
        for key, data, name in items:
            yield analyze_bytes(key, data, name, self.pack, self.models_dir, self.max_faces)

    def stream(self, items: Iterable[tuple[int, bytes, str]], n_items: int) -> Iterator[Analysis]:
        """Yield one analysis per item, in completion order (match them by ``key``)."""
        self.start(n_items)
        if self._pool is None:
            yield from self._inline(items)
            return
        source = iter(items)
        window = self.workers * TASKS_PER_WORKER
        inflight: dict[Future[list[Analysis]], list[tuple[int, bytes, str]]] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) < window:
                    task = list(itertools.islice(source, TASK_SIZE))
                    if not task:
                        exhausted = True
                        break
                    inflight[self._pool.submit(_worker_batch, task)] = task
                if not inflight:
                    return
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for fut in done:
                    results = fut.result()
                    del inflight[fut]
                    yield from results
        except BrokenProcessPool:
            # Workers could not start (e.g. __main__ is not importable) or died: finish here.
            self.workers = 1
            left = [item for task in inflight.values() for item in task]
            self.close()
            yield from self._inline(itertools.chain(left, source))

    def run(self, items: Iterable[tuple[int, bytes, str]], n_items: int) -> Iterator[Analysis]:
        """Yield analyses in input order."""
        order: list[int] = []

        def keyed() -> Iterator[tuple[int, bytes, str]]:
            for item in items:
                order.append(item[0])
                yield item

        waiting: dict[int, Analysis] = {}
        pos = 0
        for res in self.stream(keyed(), n_items):
            waiting[res.key] = res
            while pos < len(order) and order[pos] in waiting:
                yield waiting.pop(order[pos])
                pos += 1
        while pos < len(order):
            yield waiting.pop(order[pos])
            pos += 1
