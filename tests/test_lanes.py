"""The analysis workers on a pipe each (``facedb.analysis.lanes``): answers, errors, a worker
that dies, workers that cannot start, shutdown; and ``Analyzer`` on them: a one-task stream
answered by the calling thread, a many-task stream that loses a worker mid-way."""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import pytest
from facephotos import make_face_variants

from facedb.analysis.lanes import LanePool, PoolClosed
from facedb.analysis.pipeline import Analyzer
from facedb.config import DEFAULT_PACK
from facedb.errors import FacedbError

CTX = multiprocessing.get_context("spawn")
T = TypeVar("T")


def _init(tag: str) -> None:
    os.environ["LANE_TAG"] = tag


def _echo(x: int) -> tuple[int, int, str]:
    return os.getpid(), 2 * x, os.environ.get("LANE_TAG", "")


def _slow_echo(x: int) -> tuple[int, int, str]:
    time.sleep(0.2)
    return _echo(x)


def _refuse(message: str) -> None:
    raise FacedbError(message)


def _die() -> None:
    os._exit(3)


def _cannot_start(_tag: str) -> None:
    raise RuntimeError("no model here")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture()
def pool() -> Iterator[LanePool]:
    p = LanePool(2, CTX, _init, ("t",))
    yield p
    p.shutdown()


def test_call_and_submit_run_in_the_workers(pool: LanePool) -> None:
    pid, doubled, tag = pool.call(_echo, 21)
    assert (doubled, tag) == (42, "t") and pid != os.getpid() and pid in pool.pids()
    futures = [pool.submit(_slow_echo, i) for i in range(6)]
    answers = [f.result(timeout=60) for f in futures]
    assert [a[1] for a in answers] == [2 * i for i in range(6)]
    # one task per worker at a time, both workers used
    assert {a[0] for a in answers} == set(pool.pids()) and len(pool.pids()) == 2


def test_an_error_in_a_task_reaches_the_caller_and_the_worker_stays(pool: LanePool) -> None:
    before = pool.pids()
    with pytest.raises(FacedbError, match="no such face"):
        pool.call(_refuse, "no such face")
    with pytest.raises(FacedbError, match="again"):
        pool.submit(_refuse, "again").result(timeout=60)
    assert pool.call(_echo, 1)[1] == 2
    assert pool.pids() == before and not pool.broken


def test_a_dead_worker_is_replaced_and_only_its_task_fails(pool: LanePool) -> None:
    assert pool.call(_echo, 1)[1] == 2  # started and working
    before = set(pool.pids())
    # the other worker is busy with a slow task while one dies
    busy = pool.submit(_slow_echo, 5)
    time.sleep(0.05)
    with pytest.raises(BrokenProcessPool):
        pool.call(_die)
    assert busy.result(timeout=60)[1] == 10  # the other worker's task was not lost
    after = set(pool.pids())
    assert len(after) == 2 and len(after - before) == 1 and not pool.broken
    dead = (before - after).pop()
    deadline = time.monotonic() + 10
    while _alive(dead) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(dead)
    # the replacement answers
    answers = {pool.submit(_slow_echo, i).result(timeout=60)[0] for i in range(4)}
    assert answers <= after


def test_workers_that_cannot_start_break_the_pool() -> None:
    p = LanePool(2, CTX, _cannot_start, ("t",))
    try:
        with pytest.raises(BrokenProcessPool):
            p.call(_echo, 1)
        assert p.broken and not p.worked
        with pytest.raises(BrokenProcessPool):
            p.submit(_echo, 1)
    finally:
        p.shutdown(wait=False)


def test_shutdown_stops_every_worker() -> None:
    p = LanePool(2, CTX, _init, ("t",))
    assert p.call(_echo, 1)[1] == 2
    pids = p.pids()
    p.shutdown()
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(PoolClosed):
        p.call(_echo, 1)


# -- Analyzer on lanes, with real faces ------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    people = make_face_variants(tmp_path_factory.mktemp("lanes"), n_variants=7)
    return [p.read_bytes() for paths in people.values() for p in paths]


def test_a_one_task_stream_is_answered_by_the_calling_thread(photos: list[bytes]) -> None:
    """A server's one-image search: no dispatch thread between the request's thread and the
    worker, and the same faces as the analysis in this process."""
    with Analyzer(DEFAULT_PACK, None, workers=2) as pooled, Analyzer(DEFAULT_PACK, None, workers=1) as here:
        pooled.start()
        assert pooled._pool is not None

        def no_dispatch(*_a: object) -> None:
            raise AssertionError("a one-task stream went through the dispatch threads")

        pooled._pool.submit = no_dispatch  # type: ignore[method-assign,assignment]
        items = [(0, photos[0], "a.jpg"), (1, photos[1], "b.jpg")]
        got = sorted(pooled.stream(items, 0), key=lambda a: a.key)
        want = sorted(here.stream(items, 0), key=lambda a: a.key)
        assert [a.key for a in got] == [0, 1]
        for a, b in zip(got, want):
            assert a.reason is None and len(a.faces) == len(b.faces) >= 1
            assert abs(float(a.faces[0].embedding @ b.faces[0].embedding) - 1.0) < 1e-4  # type: ignore[operator]
        assert threading.active_count() < 50


def test_a_worker_killed_mid_stream_loses_no_image(photos: list[bytes]) -> None:
    """The images of the task a killed worker held are tried again; every image is answered once."""
    items = [(i, data, f"{i}.jpg") for i, data in enumerate(photos * 2)]
    with Analyzer(DEFAULT_PACK, None, workers=2) as analyzer:
        analyzer.start()
        assert analyzer._pool is not None
        pids = analyzer._pool.pids()
        got = []
        for a in analyzer.stream(items, len(items)):
            got.append(a)
            if len(got) == 3:
                os.kill(pids[0], signal.SIGKILL)
        assert sorted(a.key for a in got) == [i for i, _, _ in items]
        assert all(a.reason is None and a.faces for a in got), {a.reason for a in got}
        assert analyzer._pool is not None and pids[0] not in analyzer._pool.pids()
        assert pids[1] in analyzer._pool.pids()  # the other worker went on


def test_meanwhile_runs_once_in_the_calling_thread_before_the_first_answer(photos: list[bytes]) -> None:
    """``Analyzer.stream(meanwhile=...)``: the caller's own work, while the worker has the task."""
    me = threading.get_ident()
    calls: list[int] = []

    def note() -> None:
        calls.append(threading.get_ident())

    for workers, n in ((2, 1), (2, 9), (1, 1), (2, 0), (1, 0)):
        calls.clear()
        with Analyzer(DEFAULT_PACK, None, workers=workers) as analyzer:
            analyzer.start()
            items = [(i, photos[i], f"{i}.jpg") for i in range(n)]
            seen = 0
            for a in analyzer.stream(items, 0, meanwhile=note):
                assert a.reason is None
                if workers == 2:  # with workers: before the first answer came back
                    assert calls == [me]
                seen += 1
            assert seen == n and calls == [me], (workers, n)


def test_a_lane_given_back_wakes_one_waiting_task_not_all() -> None:
    """Six callers waiting for one worker: each answer wakes the next caller only (woken callers
    that find no lane go back to sleep: with a wake-up for all, that is 5+4+3+2+1 extra wake-ups),
    and every caller is answered, in the order they came."""
    pool = LanePool(1, CTX, _init, ("one",))
    wakeups = [0]
    real_wait = pool._cond.wait

    def counted_wait(timeout: float | None = None) -> bool:
        woke = real_wait(timeout)
        wakeups[0] += 1
        return woke

    pool._cond.wait = counted_wait  # type: ignore[method-assign]
    try:
        pool.call(_echo, 0)  # the worker has loaded: every later call only waits for the lane
        answers: list[int] = []
        first = threading.Thread(target=lambda: answers.append(pool.call(_slow_echo, 1)[1]))
        first.start()
        time.sleep(0.05)  # the first caller holds the only lane (its task takes 0.2 s)
        waiting = []
        for i in range(2, 7):
            t = threading.Thread(target=lambda i=i: answers.append(pool.call(_slow_echo, i)[1]))
            t.start()
            waiting.append(t)
            deadline = time.monotonic() + 10
            while len(pool._cond._waiters) < len(waiting) and time.monotonic() < deadline:  # type: ignore[attr-defined]
                time.sleep(0.005)  # it waits before the next one comes: they queue in this order
        for t in [first, *waiting]:
            t.join(30)
        assert answers == [2, 4, 6, 8, 10, 12]
        assert wakeups[0] <= 5  # one wake-up per waiting caller (a wake-up for all: up to 15)
    finally:
        pool.shutdown()


# -- the event loop's way (``call_async``: a server's search of one photo, no thread) ------------

Runner = Callable[[Coroutine[Any, Any, T]], T]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Runner[Any]:
    """Runs a coroutine on asyncio's own loop, or on uvloop's (what ``facedb serve`` runs on
    when it is installed: chromadb brings it), whose ``add_reader`` leaves the pipe non-blocking."""
    if request.param == "asyncio":
        return asyncio.run
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")
    return uvloop.run  # type: ignore[no-any-return]


def _blocking(pool: LanePool) -> bool:
    return all(os.get_blocking(lane.conn.fileno()) for lane in pool._lanes)

def test_call_async_answers_on_the_event_loop_without_a_thread(pool: LanePool, run: Runner[Any]) -> None:
    assert pool.call(_echo, 1)[1] == 2 and pool.call(_echo, 1)[1] == 2  # both workers have loaded
    threads_before = threading.active_count()
    order: list[str] = []

    async def main() -> list[tuple[bool, tuple[int, int, str] | None]]:
        # two at once: one per worker, each waited for on the loop; meanwhile runs once the task is sent
        return list(await asyncio.gather(pool.call_async(_slow_echo, 3, meanwhile=lambda: order.append("a")),
                                         pool.call_async(_slow_echo, 4, meanwhile=lambda: order.append("b"))))

    got = run(main())
    assert [ok for ok, _ in got] == [True, True]
    answers = [a for _, a in got if a is not None]
    assert [a[1] for a in answers] == [6, 8] and {a[0] for a in answers} == set(pool.pids())
    assert order == ["a", "b"] and threading.active_count() == threads_before
    # both lanes went back to the pool, their pipes blocking again for ``call`` in a thread
    assert _blocking(pool)
    assert {pool.submit(_slow_echo, i).result(timeout=60)[0] for i in range(4)} == set(pool.pids())


def test_call_async_declines_when_no_worker_is_idle_and_ready(run: Runner[Any]) -> None:
    p = LanePool(1, CTX, _init, ("t",))
    try:
        # a worker that has not said it is ready (its first task goes the usual way, which waits)
        assert run(p.call_async(_echo, 1)) == (False, None)
        assert p.call(_echo, 1)[1] == 2
        busy = p.submit(_slow_echo, 1)
        time.sleep(0.05)
        assert run(p.call_async(_echo, 2)) == (False, None)  # the one worker is busy
        assert busy.result(timeout=60)[1] == 2
        assert run(p.call_async(_echo, 3)) == (True, (p.pids()[0], 6, "t"))
    finally:
        p.shutdown()


def test_call_async_raises_the_task_error_and_a_dead_worker_is_replaced(pool: LanePool, run: Runner[Any]) -> None:
    pool.call(_echo, 1), pool.call(_echo, 1)
    with pytest.raises(FacedbError, match="no such face"):
        run(pool.call_async(_refuse, "no such face"))
    before = set(pool.pids())
    with pytest.raises(BrokenProcessPool):
        run(pool.call_async(_die))
    after = set(pool.pids())
    assert len(after) == 2 and len(after - before) == 1 and not pool.broken
    # the replacement works (its first task goes the usual way), and so does the other lane
    answers = {pool.submit(_slow_echo, i).result(timeout=60)[0] for i in range(4)}
    assert answers <= after


def test_call_async_to_a_worker_that_died_idle_is_a_broken_lane_replaced(pool: LanePool, run: Runner[Any]) -> None:
    """A worker killed while idle: writing the task to its pipe fails, which is the dead worker
    (``BrokenProcessPool``, that a search answers by going the usual way), not an OSError, and
    its lane is replaced."""
    pool.call(_echo, 1), pool.call(_echo, 1)
    victim = pool._idle[0].proc
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    before = set(pool.pids())
    with pytest.raises(BrokenProcessPool):
        run(pool.call_async(_echo, 2))
    after = set(pool.pids())
    assert victim.pid in before and victim.pid not in after and len(after) == 2 and not pool.broken
    assert {pool.submit(_slow_echo, i).result(timeout=60)[0] for i in range(4)} <= after


def test_a_cancelled_call_async_still_waits_for_its_answer(pool: LanePool, run: Runner[Any]) -> None:
    """A request cancelled while its worker has the task: the answer is read before the lane
    goes back, so the next task on that lane gets its own answer, not the stale one."""
    pool.call(_echo, 1), pool.call(_echo, 1)

    async def main() -> None:
        task = asyncio.ensure_future(pool.call_async(_slow_echo, 7))
        await asyncio.sleep(0.05)
        task.cancel()
        t0 = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 > 0.05  # it waited for the worker (0.2 s task)

    run(main())
    pids = set(pool.pids())
    answers = [pool.submit(_echo, i).result(timeout=60) for i in range(6)]
    assert [a[1] for a in answers] == [2 * i for i in range(6)] and {a[0] for a in answers} <= pids


def test_analyse_async_gives_the_faces_of_the_usual_way(photos: list[bytes], run: Runner[Any]) -> None:
    with Analyzer(DEFAULT_PACK, None, workers=2) as analyzer:
        assert run(analyzer.analyse_async((0, photos[0], "a.jpg"))) is None  # no pool yet
        analyzer.start()
        want = next(iter(analyzer.stream([(0, photos[0], "a.jpg")], 0)))
        next(iter(analyzer.stream([(0, photos[0], "a.jpg")], 0)))
        seen: list[int] = []
        got = run(analyzer.analyse_async((0, photos[0], "a.jpg"), meanwhile=lambda: seen.append(1)))
        assert got is not None and got.reason is None and seen == [1]
        assert len(got.faces) == len(want.faces) >= 1
        assert abs(float(got.faces[0].embedding @ want.faces[0].embedding) - 1.0) < 1e-5  # type: ignore[operator]
        bad = run(analyzer.analyse_async((1, b"not an image", "x.jpg")))
        assert bad is not None and bad.reason is not None and not bad.faces


def test_call_async_never_takes_a_lane_a_waiting_thread_was_woken_for() -> None:
    """The threads keep their turn: a lane given back while a thread waits for one goes to that
    thread, even if the event loop asks for it before the thread has woken up."""
    p = LanePool(1, CTX, _init, ("t",))
    try:
        assert p.call(_echo, 1)[1] == 2
        lane = p._take()  # the only lane, held here
        answers: list[tuple[int, int, str]] = []
        waiter = threading.Thread(target=lambda: answers.append(p.call(_echo, 5)))
        waiter.start()
        deadline = time.monotonic() + 10
        while p._waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert p._waiting == 1
        with p._cond:  # the waiter is woken but cannot run before this block ends
            p._give_back(lane)
            assert p._take_idle() is None
        waiter.join(60)
        assert [a[1] for a in answers] == [10]
        assert p._take_idle() is not None  # no one waits now
    finally:
        p.shutdown(wait=False)
