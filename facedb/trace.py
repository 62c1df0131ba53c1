"""A tracing hook: named spans around facedb's phases, for benchmarks and diagnostics.

Off by default: a span is then one global lookup. Two ways to turn it on:

- in a process: ``trace.install(callback)``; ``callback(name, t0, t1, attrs)`` gets every span
  (``time.perf_counter`` seconds, comparable across processes on Linux: CLOCK_MONOTONIC);
- for whole commands: the environment variable ``FACEDB_TRACE_DIR``. Every facedb process
  (the CLI, the server, the analysis workers) then appends its spans as JSON lines to
  ``<dir>/trace-<pid>.jsonl``; ``read_dir`` collects them.

Spans carry names and counts only: never image data, embeddings or subject names.
"""
from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

ENV_DIR = "FACEDB_TRACE_DIR"
Tracer = Callable[[str, float, float, dict[str, Any]], None]

_tracer: Tracer | None = None


def install(tracer: Tracer | None) -> Tracer | None:
    """Set the process's tracer (None turns tracing off); returns the previous one."""
    global _tracer
    previous, _tracer = _tracer, tracer
    return previous


@contextmanager
def span(name: str, **attrs: Any) -> Iterator[dict[str, Any]]:
    """Time the block as span ``name``; the yielded dict may receive more attributes."""
    tracer = _tracer
    if tracer is None:
        yield attrs
        return
    t0 = time.perf_counter()
    try:
        yield attrs
    finally:
        tracer(name, t0, time.perf_counter(), attrs)


def record(name: str, t0: float, **attrs: Any) -> None:
    """Span ``name`` from ``t0`` (``time.perf_counter()``) to now: for a block that knows only at
    its end whether it counts (``Searcher.search_async``, which may hand the search on)."""
    tracer = _tracer
    if tracer is not None:
        tracer(name, t0, time.perf_counter(), attrs)


F = TypeVar("F", bound=Callable[..., Any])


def traced(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function is a span ``name``."""
    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _tracer is None:
                return fn(*args, **kwargs)
            with span(name):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


class _FileTracer:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._file = open(folder / f"trace-{os.getpid()}.jsonl", "a", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, name: str, t0: float, t1: float, attrs: dict[str, Any]) -> None:
        line = json.dumps({"pid": os.getpid(), "name": name, "t0": t0, "t1": t1, **attrs})
        with self._lock:
            self._file.write(line + "\n")


def install_from_env() -> None:
    """Trace to ``$FACEDB_TRACE_DIR`` when it is set (called at import, so workers trace too)."""
    folder = os.environ.get(ENV_DIR)
    if folder and _tracer is None:
        install(_FileTracer(Path(folder)))


def read_dir(folder: Path) -> list[dict[str, Any]]:
    """Every span written under ``folder``, oldest first."""
    spans = []
    for path in sorted(folder.glob("trace-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                spans.append(json.loads(line))
    return sorted(spans, key=lambda s: s["t0"])


install_from_env()
