"""Decode + detect + embed, in this process or in a pool of worker processes started once.

Workers import only imaging and the engine (never Chroma or SQL), each loads its model once,
and OpenCV runs single-threaded in each so that N workers use N cores. One ``Analyzer`` serves
every call of a ``FaceDB`` (and every request of a server) from many threads at once: the pool
is started on first need and kept until ``close()``.
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from .. import trace
from ..errors import FacedbError, ImageError
from . import imaging
from .aligned import embed_aligned
from .engines import Face, FaceEngine, load_engine
from .lanes import LanePool, PoolClosed


@dataclass
class Analysis:
    """What one image gave: faces (largest first) or a failure reason."""

    key: int
    faces: list[Face]
    width: int = 0
    height: int = 0
    reason: str | None = None
    message: str | None = None


#: One input: (key, bytes, name shown in messages).
Item = tuple[int, bytes, str]

_WORKER_PACK: tuple[str, Path | None] | None = None
_ENGINE_LOCKS: dict[int, threading.Lock] = {}
_ENGINE_LOCKS_GUARD = threading.Lock()


def _engine_lock(engine: FaceEngine) -> threading.Lock:
    """Engines are not thread-safe: one lock per engine object for in-process analysis."""
    with _ENGINE_LOCKS_GUARD:
        return _ENGINE_LOCKS.setdefault(id(engine), threading.Lock())


def _init_worker(pack: str, models_dir: Path | None) -> None:
    global _WORKER_PACK
    import cv2

    cv2.setNumThreads(1)
    _WORKER_PACK = (pack, models_dir)
    load_engine(pack, models_dir)


@trace.traced("analysis.image")
def analyze_bytes(key: int, data: bytes, name: str, pack: str, models_dir: Path | None,
                  max_faces: int | None = None, aligned: bool = False) -> Analysis:
    """Decode and analyse one image here; every problem with it becomes a reason, never a raise
    (except a model problem, which concerns every image). ``aligned``: the image is an aligned
    face crop, embedded whole without detection (``facedb.analysis.aligned``)."""
    try:
        img = imaging.decode(data, name)
        engine = load_engine(pack, models_dir)
        with _engine_lock(engine):
            if aligned:
                faces = embed_aligned(engine, img.pixels, name)
            else:
                faces = engine.analyze(img.pixels, max_faces=max_faces)
    except ImageError as exc:
        return Analysis(key, [], reason=exc.reason, message=str(exc))
    except FacedbError:
        raise
    except Exception as exc:  # one odd image must never stop a batch
        return Analysis(key, [], reason="analysis_error", message=f"{name}: {type(exc).__name__}: {exc}")
    return Analysis(key, faces, img.width, img.height)


def _worker_batch(batch: list[Item], max_faces: int | None, aligned: bool = False) -> list[Analysis]:
    """One pool task: a few images (fewer round trips than one task per image)."""
    assert _WORKER_PACK is not None
    return [analyze_bytes(key, data, name, *_WORKER_PACK, max_faces, aligned) for key, data, name in batch]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


#: Images per pool task, and tasks in flight per worker and per stream: enough queued work to
#: keep every worker busy while the caller stores a write batch (~1 s), little enough to
#: bound memory.
TASK_SIZE = 4
TASKS_PER_WORKER = 8
#: Below this many images a pool is not worth its start-up (~1 s per spawned worker), unless
#: it is running already.
MIN_POOL_ITEMS = 32


class Analyzer:
    """Runs ``analyze_bytes`` over many images: worker processes when ``workers`` > 1.

    ``stream`` pulls its input lazily and yields analyses as workers finish them, so that
    reading, hashing and storing in the calling process overlap with the model work. Many
    threads may stream at once; they share the workers (``lanes.LanePool``: one pipe per
    worker). A stream of one task (a server's search of a few images) is sent and answered
    by the calling thread itself, with no helper thread in between. A worker that died (a
    decoder crash on a hostile file) is replaced, and the images it held are tried once more;
    an image that breaks a worker twice fails alone with reason ``analysis_crashed``.
    """

    def __init__(self, pack: str, models_dir: Path | None, workers: int = 1) -> None:
        self.pack = pack
        self.models_dir = models_dir
        self.workers = max(1, workers)
        self._pool: LanePool | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._pool is not None

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    def start(self, n_items: int | None = None) -> None:
        """Spawn the workers now (they load their models while the caller reads files);
        ``n_items`` below ``MIN_POOL_ITEMS`` does not (one process is quicker)."""
        if self.workers < 2 or (n_items is not None and n_items < MIN_POOL_ITEMS):
            return
        with self._lock:
            if self._pool is None:
                self._pool = self._spawn()

    def _spawn(self) -> LanePool:
        """The workers, started now (each loads its model while the caller goes on)."""
        ctx = multiprocessing.get_context("spawn")
        return LanePool(self.workers, ctx, _init_worker, (self.pack, self.models_dir))

    def _replace_broken(self, broken: LanePool) -> LanePool | None:
        """The pool to go on with after a worker died: the same one (it replaced that worker),
        or None (analyse here from now on) when no worker of it ever started (``__main__`` not
        importable...)."""
        with self._lock:
            if self._pool is broken and broken.broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool, self.workers = None, 1
            return None if broken.broken else broken

    def _inline(self, items: Iterable[Item], max_faces: int | None, aligned: bool) -> Iterator[Analysis]:
        for key, data, name in items:
            yield analyze_bytes(key, data, name, self.pack, self.models_dir, max_faces, aligned)

    def stream(self, items: Iterable[Item], n_items: int, max_faces: int | None = None,
               aligned: bool = False, meanwhile: Callable[[], None] | None = None) -> Iterator[Analysis]:
        """Yield one analysis per item, in completion order (match them by ``key``); ``aligned``:
        every item is an aligned face crop (see ``analyze_bytes``). ``meanwhile()`` (which must
        not raise) runs once, in the calling thread, while the workers have the first task (else,
        with nothing to send them, before the stream ends): work the caller needs after the
        analyses, done in the model's time instead of after it."""
        self.start(n_items)
        pool = self._pool
        source = iter(items)
        window = self.workers * TASKS_PER_WORKER
        inflight: dict[Future[list[Analysis]], list[Item]] = {}
        retried: set[int] = set()
        exhausted = False
        while pool is not None:
            while not exhausted and len(inflight) < window:
                task = list(itertools.islice(source, TASK_SIZE))
                if not task:
                    exhausted = True
                    break
                # The only task of the stream (one more item is looked for): run it in this thread.
                alone = not inflight and len(task) < TASK_SIZE
                if not alone and not inflight:
                    more = list(itertools.islice(source, 1))
                    alone = not more
                    source = itertools.chain(more, source)
                inflight[self._submit(pool, task, max_faces, aligned, here=alone, meanwhile=meanwhile)] = task
                if meanwhile is not None and not alone:
                    meanwhile()
                meanwhile = None
            if not inflight:
                if meanwhile is not None:
                    meanwhile()
                return
            done = {fut for fut in inflight if fut.done()}  # a task run here is done already
            if not done:
                with trace.span("analysis.wait"):
                    done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for fut in done:
                task = inflight.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    pool = self._replace_broken(pool)
                    if pool is None:  # finish everything here
                        source = itertools.chain(task, *inflight.values(), source)
                        inflight.clear()
                        break
                    yield from self._retry_alone(pool, task, retried, max_faces, aligned, inflight)
                    continue
                yield from results
        yield from self._inline(source, max_faces, aligned)
        if meanwhile is not None:
            meanwhile()

    def idle(self) -> bool:
        """Whether ``analyse_async`` would find an idle worker now (a hint: ``LanePool.idle``)."""
        pool = self._pool
        return pool is not None and pool.idle()

    async def analyse_async(self, item: Item, max_faces: int | None = None, aligned: bool = False,
                            meanwhile: Callable[[], None] | None = None) -> Analysis | None:
        """One image analysed by an idle worker, awaited on the running event loop with no thread
        (``LanePool.call_async``); ``meanwhile()`` runs while the worker has it. None when that
        cannot be done (no worker pool running, none idle, or the worker died on this image): the
        caller then goes the usual way (``stream`` in a thread), which waits for a worker and
        tries a crashed image again alone."""
        pool = self._pool
        if pool is None:
            return None
        t0 = time.perf_counter()
        try:
            sent, results = await pool.call_async(_worker_batch, [item], max_faces, aligned, meanwhile=meanwhile)
            if sent:
                trace.record("analysis.wait", t0)
        except BrokenProcessPool:
            self._replace_broken(pool)
            return None
        except PoolClosed:
            raise FacedbError("the analysis workers were stopped (the database is closing)") from None
        if not sent or not results:
            return None
        return results[0]

    def _submit(self, pool: LanePool, task: list[Item], max_faces: int | None, aligned: bool = False,
                here: bool = False, meanwhile: Callable[[], None] | None = None) -> Future[list[Analysis]]:
        """The task on its way (``here``: done already, by this thread, ``meanwhile`` run while
        the worker had it: no dispatch thread)."""
        fut: Future[list[Analysis]]
        try:
            if not here:
                return pool.submit(_worker_batch, task, max_faces, aligned)
            fut = Future()
            try:
                with trace.span("analysis.wait"):
                    fut.set_result(pool.call(_worker_batch, task, max_faces, aligned, meanwhile=meanwhile))
            except PoolClosed:
                raise
            except Exception as exc:  # as the future of a dispatched task would hold it
                fut.set_exception(exc)
            return fut
        except BrokenProcessPool:  # noticed at submit: the result will say so again
            fut = Future()
            fut.set_exception(BrokenProcessPool("the analysis pool is broken"))
            return fut
        except PoolClosed:  # shut down by close()
            raise FacedbError("the analysis workers were stopped (the database is closing)") from None

    def _retry_alone(self, pool: LanePool, task: list[Item], retried: set[int], max_faces: int | None,
                     aligned: bool, inflight: dict[Future[list[Analysis]], list[Item]]) -> Iterator[Analysis]:
        """Items of a task lost with a broken pool: each once more on its own, then failed."""
        for item in task:
            if item[0] in retried:
                yield Analysis(item[0], [], reason="analysis_crashed",
                               message=f"{item[2]}: the image analysis crashed on this file")
                continue
            retried.add(item[0])
            inflight[self._submit(pool, [item], max_faces, aligned)] = [item]

    def run(self, items: Iterable[Item], n_items: int, max_faces: int | None = None,
            aligned: bool = False) -> Iterator[Analysis]:
        """Yield analyses in input order."""
        order: list[int] = []

        def keyed() -> Iterator[Item]:
            for item in items:
                order.append(item[0])
                yield item

        waiting: dict[int, Analysis] = {}
        pos = 0
        for res in self.stream(keyed(), n_items, max_faces, aligned):
            waiting[res.key] = res
            while pos < len(order) and order[pos] in waiting:
                yield waiting.pop(order[pos])
                pos += 1
        while pos < len(order):
            yield waiting.pop(order[pos])
            pos += 1
