"""Analysis worker processes, each on a pipe of its own ("lanes"), instead of a process pool.

``concurrent.futures.ProcessPoolExecutor`` moves every task through two helper threads of the
calling process: the caller hands the task to the executor's manager thread, which puts it on
a queue whose feeder thread pickles it into the workers' shared pipe; the answer comes back
through the manager thread, which completes the future the caller waits on. A one-image HTTP
search thus wakes four threads of the server process (each waiting for the GIL behind the
event loop) around ~25 ms of model work, and the manager thread's polling costs CPU of its own
(``docs/benchmarks/server-cpu.md``).

Here each worker process has one duplex pipe, and a thread that takes an idle lane
(``call``) writes its task and reads the answer itself: no helper thread, one pickle each way.
An event loop can do the same without a thread (``call_async``: it waits on the pipe as on its
sockets), which ``facedb serve`` does for a search of one photo when a worker is idle.
``submit`` (the batches of enrolment and of many-image searches, which keep every worker busy
with several tasks in flight) runs ``call`` in a small thread pool with one thread per lane, so
a waiting task takes the first lane that frees up.

A worker that dies (a decoder crash on a hostile file) breaks only its own lane: the task it
held raises ``BrokenProcessPool`` (the caller retries its images one by one, see
``pipeline.Analyzer``), a new process takes its place, and the other lanes go on. A pool none
of whose tasks ever finished (its workers cannot start: ``__main__`` not importable...) is
marked ``broken`` instead of respawning without end: a pool is known to work once one of its
workers has said it is initialised (before its first task), so a hostile file that kills the
very first worker to see it still counts as a crash, never as "workers cannot start".
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

T = TypeVar("T")

#: What the parent sends to stop a worker.
_STOP = None

#: ``BrokenProcessPool``'s message when a worker died under a task.
WORKER_DIED = "an analysis worker died (its image is tried again alone)"


class PoolClosed(RuntimeError):
    """The pool was shut down: no more tasks."""


def _lane_main(conn: Connection, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
    """A worker process: initialise once, then answer each ``(fn, args)`` with ``(ok, value)``
    until told to stop or the parent's end of the pipe closes."""
    try:
        initializer(*initargs)
        conn.send((True, None))  # ready: the parent's first call on this lane reads it
        while True:
            try:
                msg = conn.recv()
            except EOFError:  # the parent is gone
                return
            if msg is _STOP:
                return
            fn, args = msg
            try:
                answer: tuple[bool, Any] = (True, fn(*args))
            except BaseException as exc:  # the caller raises it, as a pool's future would
                answer = (False, exc)
            try:
                conn.send(answer)
            except (TypeError, AttributeError, ValueError) as exc:  # an exception that does not pickle
                conn.send((False, RuntimeError(f"{type(answer[1]).__name__}: {answer[1]} ({exc})")))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent decides
        return


class _Lane:
    def __init__(self, ctx: BaseContext, initializer: Callable[..., None], initargs: tuple[Any, ...]) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn: Connection = parent
        self.proc = ctx.Process(target=_lane_main, args=(child, initializer, initargs), daemon=True)  # type: ignore[attr-defined]
        self.proc.start()
        child.close()
        #: the worker said it is initialised (see ``LanePool.call``)
        self.ready = False

    def stop(self, timeout: float) -> None:
        try:
            self.conn.send(_STOP)
        except OSError:
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


class LanePool:
    """``workers`` processes started at once (``initializer(*initargs)`` in each), one task per
    process at a time. ``call`` runs a task in the calling thread's turn; ``submit`` returns a
    future. Thread-safe."""

    def __init__(self, workers: int, ctx: BaseContext, initializer: Callable[..., None],
                 initargs: tuple[Any, ...]) -> None:
        self._ctx, self._init, self._initargs = ctx, initializer, initargs
        self._cond = threading.Condition()
        self._lanes = [_Lane(ctx, initializer, initargs) for _ in range(max(1, workers))]
        self._idle: deque[_Lane] = deque(self._lanes)
        self._dispatch = ThreadPoolExecutor(len(self._lanes), thread_name_prefix="facedb-analysis")
        self._closed = False
        #: threads waiting in ``_take`` for a lane
        self._waiting = 0
        #: a worker has started and loaded its model; False with ``broken``: none can
        self.worked = False
        self.broken = False

    @property
    def size(self) -> int:
        return len(self._lanes)

    def pids(self) -> list[int]:
        with self._cond:
            return [lane.proc.pid for lane in self._lanes if lane.proc.pid is not None]

    def call(self, fn: Callable[..., T], *args: Any, meanwhile: Callable[[], None] | None = None) -> T:
        """``fn(*args)`` in the first free worker, waited for here; ``meanwhile()`` runs in this
        thread while the worker works (it must not raise). ``BrokenProcessPool`` when that worker
        died meanwhile; ``PoolClosed`` once the pool is shut down; what ``fn`` raised."""
        lane = self._take()
        with self._replaced_on_error(lane):
            if not lane.ready:  # its first task: wait for the worker to have loaded its model
                lane.conn.recv()
                lane.ready = self.worked = True
            lane.conn.send((fn, args))
            if meanwhile is not None:
                meanwhile()
        result: T = self._read_answer(lane)
        return result

    async def call_async(self, fn: Callable[..., T], *args: Any,
                         meanwhile: Callable[[], None] | None = None) -> tuple[bool, T | None]:
        """``call`` on the running event loop, without a thread: the task is written to an idle
        worker's pipe and the loop waits for the answer on that pipe, as it waits on its sockets.
        ``(False, None)`` when no worker is idle and ready, or a thread is waiting for one (it
        keeps its turn): the caller then uses ``call`` in a thread, which waits for one. Else
        ``(True, what fn returned)``, or what ``call`` raises.

        For a search of one photo, this saves the two thread hand-offs of ``call`` in a thread
        (the loop's to the thread, and the answer's back to the loop) and the GIL passes between
        them (``docs/benchmarks/server-cpu.md``). Once the task is sent it is waited for even if
        the awaiting request is cancelled (as ``server.deps.call`` waits for its thread), so a
        lane never goes back to the pool with an answer left in its pipe."""
        lane = self._take_idle()
        if lane is None:
            return False, None
        loop = asyncio.get_running_loop()
        with self._replaced_on_error(lane):
            lane.conn.send((fn, args))
        answered = loop.create_future()
        waiting = asyncio.ensure_future(self._answer(lane, answered, loop))
        if meanwhile is not None:
            meanwhile()
        try:
            value: T = await asyncio.shield(waiting)
        except asyncio.CancelledError:
            if not waiting.done():
                await asyncio.wait({waiting})
            raise
        return True, value

    async def _answer(self, lane: _Lane, answered: asyncio.Future[None], loop: asyncio.AbstractEventLoop) -> Any:
        """The answer of the task sent on ``lane``, read when its pipe is readable; the lane goes
        back to the pool (or is replaced, as in ``call``)."""
        fd = lane.conn.fileno()

        def readable() -> None:
            if not answered.done():
                answered.set_result(None)

        loop.add_reader(fd, readable)
        with self._replaced_on_error(lane):
            try:
                await answered
            finally:
                loop.remove_reader(fd)
                # uvloop leaves the watched descriptor non-blocking: ``call`` in a thread, and the
                # read below of an answer the worker is still writing, need it blocking again
                os.set_blocking(fd, True)
        return self._read_answer(lane)  # readable: the worker wrote its answer (or died: EOF)

    def _read_answer(self, lane: _Lane) -> Any:
        """The answer to the task sent on ``lane``, which then goes back to the pool; what the task
        raised is raised here."""
        with self._replaced_on_error(lane):
            ok, value = lane.conn.recv()
        self._give_back(lane)
        if not ok:
            raise value
        return value

    @contextmanager
    def _replaced_on_error(self, lane: _Lane) -> Iterator[None]:
        """Around a lane's pipe use, between taking the lane and reading its answer: anything
        raised there costs the lane (its pipe may hold a stale answer, so it is replaced, never
        reused). A dead worker (EOF, or an error on its pipe) is raised as ``BrokenProcessPool``."""
        try:
            yield
        except (EOFError, OSError):
            self._lost(lane)
            raise BrokenProcessPool(WORKER_DIED) from None
        except BaseException:
            self._lost(lane)
            raise

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``call`` in one of the pool's dispatch threads (one per worker)."""
        if self._closed or self.broken:
            raise BrokenProcessPool("the analysis pool is broken") if self.broken else PoolClosed("shut down")
        return self._dispatch.submit(self.call, fn, *args)

    def shutdown(self, wait: bool = True, cancel_futures: bool = False, timeout: float = 30.0) -> None:
        """Stop taking tasks; with ``wait``, let the running ones finish, then stop every worker
        (each gets ``timeout`` seconds to exit before it is killed)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._dispatch.shutdown(wait=wait, cancel_futures=cancel_futures)
        with self._cond:
            if wait:
                self._cond.wait_for(lambda: len(self._idle) == len(self._lanes))
            lanes, self._lanes, self._idle = list(self._lanes), [], deque()
        for lane in lanes:
            lane.stop(timeout if wait else 0.0)

    # -- lanes ----------------------------------------------------------------------------------
    def _take(self) -> _Lane:
        with self._cond:
            while True:
                if self.broken:
                    raise BrokenProcessPool("the analysis pool is broken")
                if self._closed:
                    raise PoolClosed("the analysis pool is shut down")
                if self._idle:
                    return self._idle.popleft()
                self._waiting += 1
                try:
                    self._cond.wait()
                except BaseException:  # woken for a lane it will not take: pass the wake-up on
                    self._cond.notify()
                    raise
                finally:
                    self._waiting -= 1

    def idle(self) -> bool:
        """Whether ``call_async`` would find a lane now: a hint, read without the lock (the lane
        may be taken before the call), so that a caller that would be declined skips its set-up."""
        return bool(self._idle) and not self._waiting and not self._closed

    def _take_idle(self) -> _Lane | None:
        """An idle lane whose worker has loaded its model, without waiting; else None. Never one
        that a waiting thread was woken for: the threads keep their turn."""
        with self._cond:
            if (self.broken or self._closed or self._waiting or not self._idle
                    or not self._idle[0].ready):
                return None
            return self._idle.popleft()

    def _give_back(self, lane: _Lane) -> None:
        with self._cond:
            if lane in self._lanes:
                self._idle.append(lane)
            if self._closed:
                self._cond.notify_all()  # a shutdown waits for every lane, and the waiting tasks end
            else:
                # One lane came back: wake one waiting task (the longest-waiting), not all of them.
                # With 8 searches waiting for 2 workers, waking all made 7 threads fight for the
                # GIL and go back to sleep at each answer, on the cores the workers run on.
                self._cond.notify()

    def _lost(self, lane: _Lane) -> None:
        """``lane``'s worker died (or its pipe cannot be trusted): a new one in its place, unless
        no worker ever started (they cannot: the pool is broken) or the pool is shutting down."""
        with self._cond:
            if lane not in self._lanes:
                return
            i = self._lanes.index(lane)
            if not self.worked:
                self.broken = True
                self._lanes.pop(i)
            elif self._closed:
                self._lanes.pop(i)
            else:
                self._lanes[i] = _Lane(self._ctx, self._init, self._initargs)
                self._idle.append(self._lanes[i])
            self._cond.notify_all()
        lane.stop(0.0)
