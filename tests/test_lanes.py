"""The analysis workers on a pipe each (``facedb.analysis.lanes``): answers, errors, a worker
that dies, workers that cannot start, shutdown; and ``Analyzer`` on them: a one-task stream
answered by the calling thread, a many-task stream that loses a worker mid-way."""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
from facephotos import make_face_variants

from facedb.analysis.lanes import LanePool, PoolClosed
from facedb.analysis.pipeline import Analyzer
from facedb.config import DEFAULT_PACK
from facedb.errors import FacedbError

CTX = multiprocessing.get_context("spawn")


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
