"""The analysis workers run niced (``pipeline.WORKER_NICE`` above their parent), so that the
parent's short turns (a server's event loop, import's storing) do not wait behind them."""
from __future__ import annotations

import os
from pathlib import Path

from facedb.analysis import pipeline
from facedb.config import DEFAULT_PACK


def _nice(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[16])


def test_the_workers_are_niced_and_still_answer(face_photo: Path) -> None:
    analyzer = pipeline.Analyzer(DEFAULT_PACK, None, workers=2)
    try:
        analyzer.start()
        data = face_photo.read_bytes()
        found = list(analyzer.stream([(i, data, face_photo.name) for i in range(pipeline.MIN_POOL_ITEMS)],
                                     pipeline.MIN_POOL_ITEMS))
        assert len(found) == pipeline.MIN_POOL_ITEMS and all(len(a.faces) == 1 for a in found)
        pool = analyzer._pool
        assert pool is not None
        pids = [lane.proc.pid for lane in pool._lanes]
        assert len(pids) == 2 and os.getpid() not in pids
        assert {_nice(pid) for pid in pids} == {min(19, _nice(os.getpid()) + pipeline.WORKER_NICE)}
    finally:
        analyzer.close()
