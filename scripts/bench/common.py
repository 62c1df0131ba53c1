"""Small helpers shared by the ``scripts/bench/*.py`` benchmarks (no facedb imports here).

Import it from a sibling script with::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

API (kept small on purpose):

- ``bench_lock(enabled=True)``: context manager holding the exclusive machine-wide benchmark lock
  (``flock`` on ``/tmp/facedb-bench.lock``) so two heavy benchmarks never run at the same time.
- ``machine_info() -> dict``: CPU model, cores, RAM, OS, Python, load average now.
- ``library_versions(*names) -> dict``: distribution name -> version (or ``"not installed"``).
- ``percentile(values, q)`` and ``summarize_ms(seconds) -> dict``: n, p50/p90/p99/mean/min in ms.
- ``median(values)``.
- ``peak_rss_mb() -> float``: this process's peak resident set size (VmHWM) in MiB.
- ``dir_size_mb(path) -> float``: bytes actually allocated on disk under ``path``, in MiB.
- ``command_line() -> str``: the exact command that started this process.
- ``md_table(headers, rows) -> str``: a GitHub markdown table.
- ``environment_md(command, versions) -> str``: a markdown block with machine, versions, command.
- ``write_text(path, text)``: write a file, creating its parent folders.
"""
from __future__ import annotations

import fcntl
import math
import os
import platform
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

LOCK_PATH = "/tmp/facedb-bench.lock"


@contextmanager
def bench_lock(enabled: bool = True, label: str = "") -> Iterator[None]:
    """Hold the exclusive benchmark lock for the duration of the block (a no-op if disabled)."""
    if not enabled:
        yield
        return
    with open(LOCK_PATH, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"[bench] waiting for {LOCK_PATH} (another benchmark is running){' - ' + label if label else ''}",
                  file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": _ram_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1_5_15": load,
    }


def library_versions(*names: str) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def median(values: Iterable[float]) -> float:
    xs = sorted(values)
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def percentile(values: Iterable[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100] (numpy's default method)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Latency samples in seconds -> n and p50/p90/p99/mean/min in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
        "min_ms": min(ms) if ms else math.nan,
    }


def peak_rss_mb() -> float:
    """Peak RSS of this process (VmHWM) in MiB; falls back to getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def dir_size_mb(path: str | os.PathLike[str]) -> float:
    """Allocated size (st_blocks, so sparse files count as they really are) under path, MiB."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total / 1024 / 1024


def command_line() -> str:
    exe = "python" if Path(sys.executable).name.startswith("python") else sys.executable
    return " ".join(shlex.quote(a) for a in [exe, *sys.argv])


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_md(command: str, versions: dict[str, str], machine: dict[str, Any] | None = None) -> str:
    m = machine or machine_info()
    libs = ", ".join(f"{k} {v}" for k, v in versions.items())
    return "\n".join([
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}, "
        f"Python {m['python']}; load average at start {m['load_avg_1_5_15']} (shared machine)",
        f"- Libraries: {libs}",
        f"- Command: `{command}`",
    ])


def write_text(path: str | os.PathLike[str], text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
