#!/usr/bin/env python
"""Enrollment benchmark: `facedb import` end to end vs the machine's model limit, with a breakdown.

Phases (each heavy one under the machine-wide benchmark lock, see _util.bench_lock):

1. stage breakdown, one process, one thread: read, sha256, decode (imaging.decode),
   detect (engine.detect), align+embed (engine.analyze minus engine.detect), per image;
2. model limit: decode + detect + align + embed with ``--workers`` processes in parallel and no
   storage (bytes preloaded, models loaded, barrier, then wall time) -- the physical limit;
3. ``facedb import`` (the console script) end to end, on a fresh home;
4. the same import through an instrumented driver (this file, ``--_driver``): SQL and Chroma
   write time, result waits in the main process, and per-task busy intervals in the workers;
5. the model limit again (so drift on this shared machine shows up as a spread).

    python scripts/bench/enroll.py                 # full LFW (7,701 images), writes docs/benchmarks/enroll.md
    python scripts/bench/enroll.py --limit 1000    # an evenly spread subset
    python scripts/bench/enroll.py --quick --out /tmp/enroll.md   # smoke test sizes
"""
from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _util  # noqa: E402
from _util import REPO, bench_lock, log, median  # noqa: E402

FACEDB = Path(sys.executable).with_name("facedb")
TRACE_ENV = "FACEDB_BENCH_TRACE_DIR"


# ============================================================================================
# Instrumentation (runs inside the `facedb import` process started with --_driver)
# ============================================================================================

_STATS: dict[str, float] = defaultdict(float)
_COUNTS: dict[str, int] = defaultdict(int)
_EVENTS: list[tuple[str, float, float]] = []
_IN_WRITE = [False]


def _timed(owner: Any, name: str, key: str, record: bool = False) -> None:
    orig = getattr(owner, name)

    def wrapper(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            dt = time.perf_counter() - t
            kk = key + ("_in_write" if _IN_WRITE[0] and key == "sql_known_sha256" else "")
            _STATS[kk] += dt
            _COUNTS[kk] += 1
            if record:
                _EVENTS.append((key, t, t + dt))

    setattr(owner, name, wrapper)


def _instr_init_worker(*init_args: Any) -> None:
    """Pool initializer in the workers: the normal one, then per-task busy intervals to a file."""
    from facedb import pipeline

    t_boot = time.perf_counter()
    _ORIG_INIT(*init_args)
    trace = open(Path(os.environ[TRACE_ENV]) / f"worker-{os.getpid()}.txt", "a", buffering=1)
    trace.write(f"init {t_boot:.6f} {time.perf_counter():.6f}\n")
    orig = pipeline.analyze_bytes

    def analyze_bytes(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            trace.write(f"task {t:.6f} {time.perf_counter():.6f}\n")

    pipeline.analyze_bytes = analyze_bytes


try:  # only meaningful in the driver and its workers; harmless elsewhere
    from facedb.pipeline import _init_worker as _ORIG_INIT  # noqa: N812
except Exception:  # pragma: no cover
    _ORIG_INIT = None  # type: ignore[assignment]


def _install_instrumentation(stats_path: Path) -> None:
    from facedb import imaging, pipeline, service
    from facedb.catalog.database import Catalog
    from facedb.index.chroma_index import ChromaIndex
    from facedb.locking import HomeLock

    t_start = time.perf_counter()
    _timed(service.FaceDB, "__init__", "open_db")
    _timed(service, "load_engine", "engine_load_main")
    _timed(service.FaceDB, "import_dir", "import_dir_total")
    _timed(service.FaceDB, "_replay_journal", "replay_journal")
    _timed(ChromaIndex, "__init__", "chroma_open")
    _timed(ChromaIndex, "close", "chroma_close")
    _timed(ChromaIndex, "add", "chroma_add")
    _timed(Catalog, "mark_indexed", "sql_mark_indexed")
    _timed(Catalog, "known_sha256", "sql_known_sha256")
    _timed(service, "make_private_tree", "chmod_tree")
    _timed(HomeLock, "acquire", "lock_acquire")
    _timed(imaging, "read_bytes", "read_bytes")

    orig_write = service.FaceDB._write_batch

    def write_batch(self: Any, batch: Any, *a: Any, **k: Any) -> Any:
        _IN_WRITE[0] = True
        t = time.perf_counter()
        try:
            return orig_write(self, batch, *a, **k)
        finally:
            _IN_WRITE[0] = False
            dt = time.perf_counter() - t
            _STATS["write_batch"] += dt
            _COUNTS["write_batch"] += 1
            _COUNTS["written_items"] += len(batch)
            _EVENTS.append(("write_batch", t, t + dt))

    service.FaceDB._write_batch = write_batch

    orig_stream = pipeline.Analyzer.stream

    def stream(self: Any, items: Any, n_items: int) -> Any:
        gen = orig_stream(self, items, n_items)
        t_call = time.perf_counter()
        first = True
        while True:
            t = time.perf_counter()
            try:
                res = next(gen)
            except StopIteration:
                return
            now = time.perf_counter()
            _STATS["wait_results"] += now - t
            _COUNTS["results"] += 1
            _EVENTS.append(("wait", t, now))
            if first:
                _STATS["first_result_latency"] += now - t_call
                _COUNTS["first_result_latency"] += 1
                first = False
            yield res

    pipeline.Analyzer.stream = stream
    pipeline._init_worker = _instr_init_worker  # the pool reads the module global when it starts

    def dump() -> None:
        ru_self = resource.getrusage(resource.RUSAGE_SELF)
        ru_ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {"stats": dict(_STATS), "counts": dict(_COUNTS), "t_driver_start": t_start,
               "t_driver_end": time.perf_counter(),
               "main_cpu_s": ru_self.ru_utime + ru_self.ru_stime,
               "children_cpu_s": ru_ch.ru_utime + ru_ch.ru_stime,
               "events": _EVENTS}
        stats_path.write_text(json.dumps(out))

    atexit.register(dump)


def _driver_main(argv: list[str]) -> None:
    """``enroll.py --_driver STATS -- <facedb args>``: run the CLI instrumented."""
    stats_path = Path(argv[argv.index("--_driver") + 1])
    facedb_args = argv[argv.index("--") + 1:]
    _install_instrumentation(stats_path)
    from facedb.cli import cli

    sys.argv = ["facedb", *facedb_args]
    cli(prog_name="facedb")


# ============================================================================================
# The benchmark (runs in the script's own process)
# ============================================================================================

def stage_breakdown(paths: list[Path]) -> dict[str, Any]:
    """Per-image stage times in one process with one OpenCV thread (ms; mean and median)."""
    import hashlib

    import cv2

    cv2.setNumThreads(1)
    from facedb import imaging
    from facedb.engine import load_engine
    from facedb.errors import ImageError

    t = time.perf_counter()
    eng = load_engine("sface")
    load_s = time.perf_counter() - t
    eng.analyze(imaging.load(paths[0]).pixels)  # warm-up
    cols: dict[str, list[float]] = defaultdict(list)
    faces = with_face = 0
    for p in paths:
        t0 = time.perf_counter()
        data = imaging.read_bytes(p)
        t1 = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        t2 = time.perf_counter()
        try:
            img = imaging.decode(data, str(p))
        except ImageError:
            continue
        t3 = time.perf_counter()
        eng.detect(img.pixels)
        t4 = time.perf_counter()
        found = eng.analyze(img.pixels, max_faces=1)  # what enrollment does: embed the largest face
        t5 = time.perf_counter()
        eng.analyze(img.pixels)  # every face (search does this)
        t6 = time.perf_counter()
        faces += len(found)
        with_face += bool(found)
        cols["read"].append(t1 - t0)
        cols["sha256"].append(t2 - t1)
        cols["decode"].append(t3 - t2)
        cols["detect"].append(t4 - t3)
        cols["align_embed"].append(max(0.0, (t5 - t4) - (t4 - t3)))
        cols["align_embed_all"].append(max(0.0, (t6 - t5) - (t4 - t3)))
        cols["model_total"].append((t3 - t2) + (t5 - t4))
    n = len(cols["read"])
    out: dict[str, Any] = {"images": n, "faces_per_image": faces / n if n else 0.0, "with_face": with_face,
                           "engine_load_s": load_s}
    for k, v in cols.items():
        out[k] = {"mean_ms": 1000 * sum(v) / len(v), "median_ms": 1000 * median(v)}
    emb_faces = out["faces_per_image"]
    out["embed_per_face_ms"] = out["align_embed_all"]["mean_ms"] / emb_faces if emb_faces else float("nan")
    return out


def _worker_trace(trace_dir: Path) -> dict[str, Any]:
    """Busy/idle of the pool workers from their per-task intervals."""
    workers = []
    for f in sorted(trace_dir.glob("worker-*.txt")):
        init = None
        tasks = []
        for line in f.read_text().splitlines():
            kind, a, b = line.split()
            if kind == "init":
                init = (float(a), float(b))
            else:
                tasks.append((float(a), float(b)))
        if tasks:
            workers.append((init, sorted(tasks)))
    if not workers:
        return {}
    first = min(t[0][0] for _, t in workers)
    last = max(t[-1][1] for _, t in workers)
    busy = sum(b - a for _, ts in workers for a, b in ts)
    gaps = []
    for _, ts in workers:
        gaps += [ts[i + 1][0] - ts[i][1] for i in range(len(ts) - 1)]
    tail_idle = sum(last - ts[-1][1] for _, ts in workers)
    return {"workers": len(workers), "tasks": sum(len(ts) for _, ts in workers),
            "first_task": first, "last_task": last, "busy_s": busy,
            "span_s": last - first, "utilisation": busy / (len(workers) * (last - first)) if last > first else 0,
            "idle_between_tasks_s": sum(gaps), "gaps_over_50ms": sum(1 for g in gaps if g > 0.05),
            "idle_in_gaps_over_50ms_s": sum(g for g in gaps if g > 0.05), "tail_idle_s": tail_idle,
            "init_s": [round(i[1] - i[0], 3) for i, _ in workers if i]}


def run_import(root: Path, workers: int, mode: str, work: Path, env_extra: dict[str, str] | None = None,
               keep: Path | None = None) -> dict[str, Any]:
    """One `facedb import` on a fresh home. mode: 'cli' (console script) or 'instr' (instrumented)."""
    home = work / f"home-{mode}-{time.monotonic_ns()}"
    trace_dir = work / f"trace-{mode}-{time.monotonic_ns()}"
    trace_dir.mkdir()
    stats_path = trace_dir / "stats.json"
    args = ["--home", str(home), "import", str(root), "--workers", str(workers), "-q", "--json"]
    env = dict(os.environ)
    env.pop("FACEDB_HOME", None)
    env.update(env_extra or {})
    if mode == "cli":
        cmd = [str(FACEDB), *args]
    else:
        env[TRACE_ENV] = str(trace_dir)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--_driver", str(stats_path)]
        cmd += ["--", *args]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    la = _util.loadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr[-3000:]}")
    rep = json.loads(proc.stdout)
    reasons: dict[str, int] = defaultdict(int)
    for s in rep["subjects"]:
        for f in s["failed"]:
            reasons[f["reason"]] += 1
    for f in rep["failed"]:
        reasons[f["reason"]] += 1
    out: dict[str, Any] = {
        "mode": mode, "cmd": cmd, "exit_code": proc.returncode, "wall_s": wall,
        "enrolled": rep["enrolled"], "duplicates": rep["duplicates"], "n_failed": rep["n_failed"],
        "failed_by_reason": dict(reasons), "subjects": len(rep["subjects"]),
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), "loadavg": la,
        "env": env_extra or {},
    }
    if stats_path.exists():
        st = json.loads(stats_path.read_text())
        out["instr"] = {k: v for k, v in st.items() if k != "events"}
        out["trace"] = _worker_trace(trace_dir)
        ev = st["events"]
        if ev and out["trace"]:
            out["trace"]["pool_start_to_first_task_s"] = out["trace"]["first_task"] - st["t_driver_start"]
    out["home_bytes"] = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
    if keep is not None:
        shutil.rmtree(keep, ignore_errors=True)
        shutil.move(str(home), str(keep))
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(trace_dir, ignore_errors=True)
    return out


def fmt(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def write_breakdown(inst: dict[str, Any], images: int) -> dict[str, float]:
    """Main-process seconds of the instrumented import, by component."""
    s = inst["instr"]["stats"]
    g = s.get
    chroma = g("chroma_open", 0) + g("chroma_add", 0) + g("chroma_close", 0)
    overhead = g("replay_journal", 0) + g("chmod_tree", 0) + g("lock_acquire", 0)
    sql_rows = g("write_batch", 0) - chroma - overhead - g("sql_mark_indexed", 0)
    return {
        "write_total": g("write_batch", 0), "chroma_open": g("chroma_open", 0), "chroma_add": g("chroma_add", 0),
        "chroma_close": g("chroma_close", 0), "chroma_total": chroma,
        "sql_rows": sql_rows, "sql_mark_indexed": g("sql_mark_indexed", 0),
        "sql_total": sql_rows + g("sql_mark_indexed", 0) + g("sql_known_sha256", 0) + g("replay_journal", 0),
        "sql_dedupe_before_analysis": g("sql_known_sha256", 0),
        "replay_journal": g("replay_journal", 0), "chmod_tree": g("chmod_tree", 0), "lock_acquire": g("lock_acquire", 0),
        "read_bytes": g("read_bytes", 0), "wait_results": g("wait_results", 0),
        "import_dir_total": g("import_dir_total", 0), "open_db": g("open_db", 0),
        "engine_load_main": g("engine_load_main", 0), "first_result_latency": g("first_result_latency", 0),
        "batches": inst["instr"]["counts"].get("write_batch", 0),
    }


def _cpu_per_image(r: dict[str, Any], n: int) -> float:
    return r["cpu_s"] / n


def report(args: argparse.Namespace, ctx: dict[str, Any]) -> str:
    n = ctx["n_images"]
    ncores = os.cpu_count() or 1
    lim = ctx["limits"]
    lim_med = median([r["images_per_s"] for r in lim])
    lim_cpu = median([r["cpu_s"] / r["images"] for r in lim])  # CPU-s per image at the limit
    cli_runs = ctx["e2e_cli"]

    def bracket(r: dict[str, Any]) -> float:
        """Mean images/s of the limit runs just before and just after an import (same conditions)."""
        before = [x for x in lim if x.get("t_end", 0) < r.get("t_end", 0)]
        after = [x for x in lim if x.get("t_end", 0) > r.get("t_end", 0)]
        near = ([before[-1]] if before else []) + ([after[0]] if after else [])
        return sum(x["images_per_s"] for x in near) / len(near) if near else lim_med

    ratios = [(n / r["wall_s"]) / bracket(r) for r in cli_runs]
    ratio = median(ratios)
    e2e_cpu = median([_cpu_per_image(r, n) for r in cli_runs])
    bd = ctx["breakdown"]
    lines = [_util.header("Enrollment benchmark: `facedb import` vs the model limit", ctx["argv"], {
        "Data": f"{ctx['data_desc']} ({n:,} images)",
        "Workers": f"{args.workers} (the machine has {ncores} cores)",
    })]
    target = "MET" if ratio >= 0.85 else "NOT MET"
    lines += ["", "## Result", "",
              "Model limit = decode + detect + align + embed (largest face, as enrollment does) with "
              f"{args.workers} single-threaded processes in parallel, bytes preloaded, models loaded, nothing "
              "stored (`_util.model_limit`). End to end = the whole `facedb import` command on a fresh home "
              "(Python start, imports, model loads, worker spawn, reading, hashing, SQL, Chroma, exit).", "",
              "| measurement | images/s (wall) | % of the bracketing limit runs | CPU ms per image (all processes) | CPU share of the cores |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(lim):
        tag = " (largest face only)" if r.get("largest_only") else ""
        lines.append(f"| model limit{tag}, run {i + 1} | {fmt(r['images_per_s'])} | "
                     f"{100 * r['images_per_s'] / lim_med:.0f} % | {1000 * r['cpu_s'] / r['images']:.1f} | "
                     f"{100 * r['cpu_share']:.0f} % |")
    lines.append(f"| **model limit, median** | **{fmt(lim_med)}** | 100 % | {1000 * lim_cpu:.1f} | |")
    rows = [("`facedb import` (console script)", r) for r in cli_runs]
    rows += [("`facedb import`, instrumented driver (same code, timers on)", r) for r in ctx.get("e2e_instr", [])]
    for label, r in rows:
        ips = n / r["wall_s"]
        lines.append(f"| {label} | {'**' if r in cli_runs else ''}{fmt(ips)}{'**' if r in cli_runs else ''} | "
                     f"{100 * ips / bracket(r):.0f} % | {1000 * _cpu_per_image(r, n):.1f} | "
                     f"{100 * r['cpu_s'] / (r['wall_s'] * ncores):.0f} % |")
    lines += ["", f"**End-to-end / limit = {100 * ratio:.1f} %** (wall-clock images/s of each console-script "
              "import divided by the mean of the limit runs just before and after it, median over the imports"
              + (": " + ", ".join(f"{100 * x:.1f} %" for x in ratios) if len(ratios) > 1 else "")
              + f"; target >= 85 %: **{target}**).", "",
              f"CPU-normalised: the limit spends {1000 * lim_cpu:.1f} CPU-ms per image, `facedb import` "
              f"{1000 * e2e_cpu:.1f} (all its processes): on an otherwise idle machine with both workers always "
              f"busy, end to end could reach at most {100 * lim_cpu / e2e_cpu:.0f} % of the limit. "
              "This machine is shared with other jobs: the 'CPU share' column is the fraction of the "
              f"{ncores} cores' time the measured processes actually got; when it differs between rows, the "
              "wall-clock ratio mostly measures the neighbours. Load averages at each phase: "
              + "; ".join(f"{r['loadavg']}" for r in lim + cli_runs) + ".", ""]
    r0 = cli_runs[0]
    lines += [f"Import outcome: {r0['enrolled']:,} enrolled, {r0['duplicates']} duplicates, {r0['n_failed']} failed "
              f"({', '.join(f'{k} {v}' for k, v in sorted(r0['failed_by_reason'].items())) or 'none'}), "
              f"{r0['subjects']:,} subjects; exit code {r0['exit_code']} (3 = some inputs failed); home on disk "
              f"{r0['home_bytes'] / 1e6:.1f} MB; {fmt(r0['wall_s'])} s wall, {fmt(r0['cpu_s'])} CPU-s.", ""]
    lines += ["## Per-image breakdown (one process, one OpenCV thread)", "",
              f"{bd['images']} images spread over the set; {bd['faces_per_image']:.2f} faces detected per image "
              f"({bd['with_face']} with at least one). Enrollment aligns and embeds only the largest face "
              "(`analyze(max_faces=1)`); the all-faces row is what search does.", "",
              "| stage | mean ms | median ms | share of model time |", "| --- | ---: | ---: | ---: |"]
    mt = bd["model_total"]["mean_ms"]
    for k, label in (("read", "read file (main process)"), ("sha256", "sha256 (main process)"),
                     ("decode", "decode (imaging.decode)"), ("detect", "detect (YuNet, engine.detect)"),
                     ("align_embed", "align + embed the largest face (analyze(max_faces=1) - detect)"),
                     ("model_total", "model total (decode + detect + align + embed, largest face)"),
                     ("align_embed_all", "for comparison: align + embed every face (analyze - detect)")):
        share = f"{100 * bd[k]['mean_ms'] / mt:.0f} %" if k in ("decode", "detect", "align_embed", "model_total") else ""
        if k not in bd:
            continue
        lines.append(f"| {label} | {bd[k]['mean_ms']:.2f} | {bd[k]['median_ms']:.2f} | {share} |")
    lines.append(f"| align + embed per face (all faces / faces) | {bd['embed_per_face_ms']:.2f} | | |")
    single = 1000 / mt
    lines += ["", f"One process: {fmt(single)} images/s from the mean model time.", ""]
    if ctx.get("e2e_instr"):
        inst = ctx["e2e_instr"][0]
        wb = write_breakdown(inst, n)
        tr = inst.get("trace", {})
        per = lambda s: f"{1000 * s / n:.2f}"  # noqa: E731
        lines += ["## Storage and the main process (instrumented `facedb import`)", "",
                  f"Wall {fmt(inst['wall_s'])} s; CPU: main process {fmt(inst['instr']['main_cpu_s'])} s, workers "
                  f"{fmt(inst['instr']['children_cpu_s'])} s. {wb['batches']} write batches of up to "
                  f"{ctx.get('write_batch', '?')} images. "
                  "Wall-clock times of the main process (it shares the cores with the two workers).", "",
                  "| main-process component | total s | ms per image |", "| --- | ---: | ---: |"]
        for k, label in (("read_bytes", "read files (lazily, as the workers need more work)"),
                         ("sql_dedupe_before_analysis", "SQL: sha256 dedupe query per block of 64 files read"),
                         ("sql_rows", "SQL: insert images/faces/failures (write batch)"),
                         ("sql_mark_indexed", "SQL: mark indexed"),
                         ("replay_journal", "SQL: journal replay on every lock take"),
                         ("chroma_open", "Chroma: open client (every batch)"),
                         ("chroma_add", "Chroma: upsert"), ("chroma_close", "Chroma: close (every batch)"),
                         ("chmod_tree", "chmod of the whole home on every lock release"),
                         ("lock_acquire", "home lock acquire"),
                         ("write_total", "= all write batches"),
                         ("sql_total", "SQL total"), ("chroma_total", "Chroma total"),
                         ("wait_results", "main waiting for worker results"),
                         ("engine_load_main", "model load in the main process (only for pack info)"),
                         ("open_db", "FaceDB() open (SQL engine, schema check)")):
            lines.append(f"| {label} | {wb[k]:.2f} | {per(wb[k])} |")
        if tr:
            start = tr.get("pool_start_to_first_task_s", 0)
            lines += ["", f"Workers: {tr['workers']}, busy {100 * tr['utilisation']:.1f} % of the time between "
                      f"the first and the last task ({fmt(tr['span_s'])} s); idle between tasks "
                      f"{fmt(tr['idle_between_tasks_s'])} s in total (both workers), "
                      f"{fmt(tr['idle_in_gaps_over_50ms_s'])} s of it in {tr['gaps_over_50ms']} gaps > 50 ms "
                      "(the main process feeds the pool from a bounded window of queued tasks, so the workers "
                      f"only wait when it falls behind). First task {fmt(start, 2)} s after the driver "
                      f"started (imports, DB open, model load in main, spawn, model load in the workers "
                      f"{tr['init_s']} s); after the last task: {fmt(inst['wall_s'] - tr['span_s'] - start, 2)} s "
                      "(last write, pool shutdown, JSON, interpreter exit).", ""]
    lines += ["## Commands", "", "```",
              f"# the model limit: _util.model_limit(<the {n} images>, procs={args.workers}) (spawned processes)",
              f"facedb --home <fresh dir> import {ctx['import_root_desc']} --workers {args.workers} -q --json",
              "```", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, help="LFW folder [default: ../shared/datasets/lfw]")
    ap.add_argument("--limit", type=int, help="only N images, spread evenly over the set")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--breakdown-n", type=int, default=500, help="images for the single-process breakdown")
    ap.add_argument("--repeats", type=int, default=1, help="console-script imports, each followed by a limit run")
    ap.add_argument("--no-instr", action="store_true", help="skip the instrumented import")
    ap.add_argument("--keep-home", type=Path, help="keep the (first) console-script import's home here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test sizes (8 images, one limit run, benchmark lock not taken): checks the "
                         "script, measures nothing")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "enroll.md")
    ap.add_argument("--json-out", type=Path, help="also write the raw numbers as JSON")
    args = ap.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 8
        args.breakdown_n = min(args.breakdown_n, 4)
    lock = not args.quick
    root = args.dataset or _util.lfw_dir()
    if root is None or not Path(root).is_dir():
        print("LFW not found (../shared/datasets/lfw or $FACEDB_DATASETS/lfw)", file=sys.stderr)
        return 2
    root = Path(root)
    all_paths = _util.lfw_images(root)
    work = Path(tempfile.mkdtemp(prefix="facedb-bench-enroll-"))
    try:
        if args.limit and args.limit < len(all_paths):
            paths = _util.sample_images(all_paths, args.limit)
            import_root = _util.subset_tree(paths, work / "subset")
            data_desc = f"LFW subset: {len(paths)} images spread evenly over {root}"
            import_root_desc = f"<symlink tree of the {len(paths)} images as <person>/<file>>"
        else:
            paths = all_paths
            import_root = root
            data_desc = f"LFW, all of {root}"
            import_root_desc = str(root)
        n = len(paths)
        from facedb.service import WRITE_BATCH

        ctx: dict[str, Any] = {"argv": ["python", "scripts/bench/enroll.py", *argv], "n_images": n,
                               "write_batch": WRITE_BATCH,
                               "data_desc": data_desc, "import_root_desc": import_root_desc,
                               "limits": [], "e2e_cli": []}
        log(f"{n} images; breakdown on {args.breakdown_n}")
        with bench_lock("breakdown", enabled=lock):
            ctx["breakdown"] = stage_breakdown(_util.sample_images(paths, args.breakdown_n))

        def checkpoint() -> None:  # the raw numbers so far survive an interrupted run
            if args.json_out:
                args.json_out.write_text(json.dumps(ctx, indent=1, default=str))

        def limit() -> None:
            with bench_lock("limit", enabled=lock):
                ctx["limits"].append(_util.model_limit(paths, args.workers, max_faces=1))
            ctx["limits"][-1]["t_end"] = time.time()
            checkpoint()
            log(f"limit: {ctx['limits'][-1]['images_per_s']:.2f} img/s, cpu share {ctx['limits'][-1]['cpu_share']:.2f}")

        def e2e(mode: str, env: dict[str, str] | None = None, label: str = "") -> dict[str, Any]:
            with bench_lock(f"e2e-{mode}", enabled=lock):
                r = run_import(import_root, args.workers, mode, work, env,
                               keep=args.keep_home if mode == "cli" and not ctx["e2e_cli"] else None)
            r["label"] = label
            r["t_end"] = time.time()
            ctx.setdefault("_partial", []).append(r)
            checkpoint()
            log(f"e2e {mode} {label}: {n / r['wall_s']:.2f} img/s, {1000 * r['cpu_s'] / n:.1f} cpu-ms/img")
            return r

        # Interleaved so that load changes on this shared machine hit the limit and the imports alike.
        limit()
        for _ in range(args.repeats):
            ctx["e2e_cli"].append(e2e("cli"))
            if not args.quick:
                limit()
        if not args.no_instr:
            ctx["e2e_instr"] = [e2e("instr")]
        if not args.no_instr and not args.quick:
            limit()
        text = report(args, ctx)
        print(text)
        _util.write_report(args.out, text)
        if args.json_out:
            args.json_out.write_text(json.dumps(ctx, indent=1, default=str))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if "--_driver" in sys.argv:
        _driver_main(sys.argv)
    else:
        sys.exit(main(sys.argv[1:]))
