#!/usr/bin/env python
"""CLI latency: `facedb search one.jpg --json` from a cold process, with its split, and batch search.

1. a gallery: `facedb import` of LFW (``--gallery N`` images spread evenly; 0 = all 7,701)
   into a fresh home, or an existing home with ``--home``;
2. cold-process wall time of the console script, median of ``--runs`` (after one warm-up run
   that fills the page cache): ``facedb --home H search one.jpg --json``;
3. baselines: ``python -c pass``, ``python -c "import facedb.cli"``, ``facedb --help``;
4. the split: the same search through an instrumented driver (this file, ``--_driver``)
   timing each phase in the process, and ``-X importtime`` runs giving the import cost of
   each top-level package;
5. variants measured the same way (``--_variant``): chromadb preload off;
6. batch: ``facedb search --paths-from - --json`` over ``--batch`` images (images/s), and the
   same images through facedb's worker pool (pipeline.Analyzer, what a batch search could use).

    python scripts/bench/cli_latency.py                    # full LFW gallery, writes docs/benchmarks/cli_latency.md
    python scripts/bench/cli_latency.py --home ~/faces     # reuse an existing database
    python scripts/bench/cli_latency.py --quick --out /tmp/cli.md
"""
from __future__ import annotations

# Only cheap imports at module level: the driver mode runs inside the measured process.
import atexit
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

PY = sys.executable
FACEDB = str(Path(sys.executable).with_name("facedb"))
if "--_driver" not in sys.argv:
    import argparse
    import re
    import shutil
    import subprocess
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _util
    from _util import REPO, bench_lock, log, median

# ============================================================================================
# Driver: the facedb CLI with phase timers (runs in the measured process)
# ============================================================================================

_T: dict[str, float] = defaultdict(float)
_N: dict[str, int] = defaultdict(int)
_MARK: dict[str, float] = {}


def _wrap(owner: Any, name: str, key: str) -> None:
    orig = getattr(owner, name)

    def w(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            _T[key] += time.perf_counter() - t
            _N[key] += 1

    setattr(owner, name, w)


def _driver_main(argv: list[str]) -> None:
    t_start = time.perf_counter()
    out_path = Path(argv[argv.index("--_driver") + 1])
    variant = argv[argv.index("--_variant") + 1] if "--_variant" in argv else ""
    args = argv[argv.index("--") + 1:]

    t = time.perf_counter()
    from facedb import cli as cli_mod

    _T["import facedb.cli (click)"] = time.perf_counter() - t
    t = time.perf_counter()
    from facedb import service  # noqa: F401  (what State.db() imports first)

    _T["import facedb.service (sqlalchemy, numpy, PIL, ...)"] = time.perf_counter() - t
    from facedb import imaging
    from facedb.catalog.database import Catalog
    from facedb.engine import sface
    from facedb.index import chroma_index
    from facedb.service import FaceDB

    _wrap(FaceDB, "__init__", "FaceDB(): SQL engine, lock, schema check, settings")
    _wrap(Catalog, "upgrade", "  of which schema check/upgrade")
    _wrap(service, "load_engine", "model load (cv2 import, ONNX read + sha256, nets)")
    _wrap(sface, "require_opencv4", "  of which import cv2")
    _wrap(sface, "_checked", "  of which sha256 of the ONNX files")
    _wrap(service, "_load_input", "read + decode the probe")
    _wrap(sface.SFaceEngine, "analyze", "detect + embed the probe")
    _wrap(chroma_index.ChromaIndex, "__init__", "Chroma: open client (waits for the chromadb import)")
    _wrap(FaceDB, "_replay_journal", "journal replay (SQL)")
    _wrap(FaceDB, "_checked_info", "pack check (SQL)")
    _wrap(FaceDB, "_require_consistent", "consistency check: Chroma count + SQL count")
    _wrap(chroma_index.ChromaIndex, "query", "Chroma: query")
    _wrap(Catalog, "hits", "SQL: hits for the neighbours")
    _wrap(chroma_index.ChromaIndex, "close", "Chroma: close")
    _wrap(service, "make_private_tree", "chmod of the home tree")
    _wrap(FaceDB, "search", "FaceDB.search (all of it)")
    _wrap(cli_mod, "emit_json", "print JSON")
    _wrap(imaging, "read_bytes", "  read bytes")
    _wrap(imaging, "_open", "  of which PIL open (5 core plugins; the other ~40 only for rarer formats)")

    orig_preload = chroma_index.preload

    def preload() -> None:
        import threading

        if variant == "no-preload":
            return

        def _import() -> None:
            t0 = time.perf_counter()
            try:
                import chromadb  # noqa: F401
            except Exception:
                pass
            _MARK["chromadb_import_start"] = t0 - t_start
            _MARK["chromadb_import_end"] = time.perf_counter() - t_start

        threading.Thread(target=_import, daemon=True).start()

    chroma_index.preload = preload
    service.preload = preload
    _ = orig_preload

    def dump() -> None:
        end = time.perf_counter()
        out_path.write_text(json.dumps({"phases": dict(_T), "counts": dict(_N), "marks": dict(_MARK),
                                        "driver_s": end - t_start,
                                        "modules": sorted(m for m in sys.modules if "." not in m)}))

    atexit.register(dump)
    sys.argv = ["facedb", *args]
    if variant == "teardown":
        # Variant: the interpreter's normal teardown (module GC, library atexit hooks), which
        # the console script skips with os._exit once its answer is flushed.
        cli_mod.cli(prog_name="facedb")
        return
    try:
        cli_mod.cli(prog_name="facedb")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    dump()
    cli_mod._fast_exit(code)


# ============================================================================================
# The benchmark
# ============================================================================================

def timed_run(cmd: list[str], stdin: str | None = None, env: dict[str, str] | None = None) -> tuple[float, Any]:
    t = time.perf_counter()
    r = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env)
    return time.perf_counter() - t, r


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in ("FACEDB_HOME", "FACEDB_DB_URL", "FACEDB_PACK", "PYTHONPROFILEIMPORTTIME"):
        env.pop(k, None)
    return env


def parse_importtime_self(stderr: str) -> dict[str, float]:
    """Exclusive (self) import time (s) summed per top-level package: sums to the total."""
    per: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m:
            per[m.group(4).split(".")[0]] += int(m.group(1)) / 1e6
    return dict(per)


def parse_importtime(stderr: str) -> tuple[dict[str, float], float]:
    """Cumulative import time (s) per top-level package, counting each package's outermost import."""
    per: dict[str, float] = defaultdict(float)
    total = 0.0
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if not m:
            continue
        cum, indent, name = int(m.group(2)), len(m.group(3)) - 1, m.group(4)
        if indent == 0:
            per[name.split(".")[0]] += cum / 1e6
            total += cum / 1e6
    return dict(per), total


def build_gallery(home: Path, n: int | None, work: Path) -> dict[str, Any]:
    lfw = _util.lfw_dir()
    assert lfw is not None
    paths = _util.lfw_images(lfw)
    if n and n < len(paths):
        root = _util.subset_tree(_util.sample_images(paths, n), work / "gallery")
    else:
        root = lfw
    t, r = timed_run([FACEDB, "--home", str(home), "import", str(root), "-q", "--json"], env=clean_env())
    if r.returncode not in (0, 3):
        raise RuntimeError(r.stderr[-3000:])
    rep = json.loads(r.stdout)
    return {"images": rep["enrolled"], "subjects": len(rep["subjects"]), "import_s": t}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, help="an existing facedb home to search [default: build one]")
    ap.add_argument("--gallery", type=int, default=0, help="images to enroll when building (0 = all of LFW)")
    ap.add_argument("--probe", type=Path, help="the one.jpg [default: LFW Aaron_Peirsol_0001.jpg]")
    ap.add_argument("--runs", type=int, default=10, help="cold runs per measurement [10]")
    ap.add_argument("--importtime-runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=200, help="images in the batch search [200]")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (gallery 30, 2 runs, batch 10)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "cli_latency.md")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.gallery = args.gallery or 30
        args.runs, args.importtime_runs, args.batch = min(args.runs, 2), 1, min(args.batch, 10)
    lfw = _util.lfw_dir()
    if lfw is None:
        print("LFW not found (../shared/datasets/lfw or $FACEDB_DATASETS/lfw)", file=sys.stderr)
        return 2
    all_paths = _util.lfw_images(lfw)
    probe = args.probe or lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"  # one face, person enrolled
    if not probe.exists():
        probe = all_paths[0]
    work = Path(tempfile.mkdtemp(prefix="facedb-bench-cli-"))
    env = clean_env()
    res: dict[str, Any] = {"argv": ["python", "scripts/bench/cli_latency.py", *argv]}
    try:
        home = args.home
        if home is None:
            home = work / "home"
            log("building the gallery")
            with bench_lock("cli-gallery"):
                res["gallery"] = build_gallery(home, args.gallery or None, work)
            log(f"gallery: {res['gallery']}")
        else:
            res["gallery"] = {"existing_home": str(home)}
        search_cmd = [FACEDB, "--home", str(home), "search", str(probe), "--json"]
        batch_paths = _util.sample_images(all_paths[1::2], args.batch)
        batch_stdin = "".join(f"{p}\n" for p in batch_paths)
        with bench_lock("cli-latency"):
            # warm-up: page cache, .pyc files
            for _ in range(2):
                timed_run(search_cmd, env=env)
            rows: dict[str, list[float]] = defaultdict(list)
            phases: dict[str, list[float]] = defaultdict(list)
            phases_v: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
            marks: dict[str, list[float]] = defaultdict(list)
            modules: list[str] = []
            baselines = {
                "python -c pass": [PY, "-c", "pass"],
                "python -c 'import facedb.cli'": [PY, "-c", "import facedb.cli"],
                "facedb --help": [FACEDB, "--help"],
            }
            for i in range(args.runs):
                # interleave everything so drift on the shared machine hits all alike
                t, r = timed_run(search_cmd, env=env)
                if r.returncode != 0:
                    raise RuntimeError(f"{search_cmd} exited {r.returncode}: {r.stdout[-2000:]} {r.stderr[-2000:]}")
                rows["facedb search one.jpg --json"].append(t)
                if i == 0:
                    res["search_output"] = json.loads(r.stdout)
                for label, cmd in baselines.items():
                    rows[label].append(timed_run(cmd, env=env)[0])
                for variant in ("", "no-preload", "teardown"):
                    stats = work / "driver.json"
                    cmd = [PY, str(Path(__file__).resolve()), "--_driver", str(stats)]
                    if variant:
                        cmd += ["--_variant", variant]
                    t, r = timed_run(cmd + ["--", "--home", str(home), "search", str(probe), "--json"], env=env)
                    if r.returncode != 0:
                        raise RuntimeError(r.stderr[-3000:])
                    d = json.loads(stats.read_text())
                    label = "driver" + (f" ({variant})" if variant else "")
                    rows[label].append(t)
                    target = phases if not variant else phases_v[variant]
                    for k, v in d["phases"].items():
                        target[k].append(v)
                    target["(driver body)"].append(d["driver_s"])
                    target["(outside the driver body: interpreter start, site, exit)"].append(t - d["driver_s"])
                    if not variant:
                        for k, v in d["marks"].items():
                            marks[k].append(v)
                        modules = d["modules"]
            imp: dict[str, list[float]] = defaultdict(list)
            imp_self: dict[str, list[float]] = defaultdict(list)
            imp_total: list[float] = []
            for _ in range(args.importtime_runs):
                _, r = timed_run(search_cmd, env={**env, "PYTHONPROFILEIMPORTTIME": "1"})
                per, total = parse_importtime(r.stderr)
                for k, v in per.items():
                    imp[k].append(v)
                for k, v in parse_importtime_self(r.stderr).items():
                    imp_self[k].append(v)
                imp_total.append(total)
            res["numpy_scan"] = numpy_scan(home, args.runs)
            # batch: the console script over --paths-from -, and 1 image for the fixed cost
            batch_cmd = [FACEDB, "--home", str(home), "search", "--paths-from", "-", "--json"]
            t_batch, r = timed_run(batch_cmd, stdin=batch_stdin, env=env)
            if r.returncode not in (0, 3):
                raise RuntimeError(r.stderr[-3000:])
            bout = json.loads(r.stdout)
            res["batch"] = {"images": len(batch_paths), "wall_s": t_batch, "images_per_s": len(batch_paths) / t_batch,
                            "steady_images_per_s": (len(batch_paths) - 1) / max(1e-9, t_batch - median(rows["facedb search one.jpg --json"])),
                            "with_face": sum(1 for x in bout["results"] if x["faces"])}
            res["batch_pool"] = pool_batch(batch_paths)
            res["limit_1"] = _util.model_limit(batch_paths, 1)
            res["limit_2"] = _util.model_limit(batch_paths, 2)
        res["rows"] = {k: {"median_s": median(v), "runs": v} for k, v in rows.items()}
        res["phases"] = {k: median(v) for k, v in phases.items()}
        res["phases_variant"] = {var: {k: median(v) for k, v in d.items()} for var, d in phases_v.items()}
        res["marks"] = {k: median(v) for k, v in marks.items()}
        res["importtime"] = {k: median(v) for k, v in imp.items()}
        res["importtime_self"] = {k: median(v) for k, v in imp_self.items()}
        res["importtime_total"] = median(imp_total)
        res["modules"] = modules
        text = report(args, res, probe, home)
        print(text)
        _util.write_report(args.out, text)
        if args.json_out:
            args.json_out.write_text(json.dumps(res, indent=1, default=str))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def numpy_scan(home: Path, runs: int) -> dict[str, Any]:
    """What the search path would cost without Chroma: a new process that loads every indexed
    embedding from the catalog and ranks them exactly with numpy (no chromadb import)."""
    code = (
        "import sys, time, json\n"
        "t0 = time.perf_counter()\n"
        "import numpy as np\n"
        "from facedb.catalog.database import Catalog\n"
        "t1 = time.perf_counter()\n"
        "c = Catalog('sqlite:///' + sys.argv[1] + '/facedb.sqlite3')\n"
        "ids, mat = c.embeddings('sface')\n"
        "t2 = time.perf_counter()\n"
        "q = mat[0]\n"
        "d = 1.0 - mat @ q\n"
        "top = np.argpartition(d, 32)[:32]\n"
        "top = top[np.argsort(d[top])]\n"
        "hits = c.hits([int(ids[i]) for i in top])\n"
        "t3 = time.perf_counter()\n"
        "print(json.dumps({'imports_s': t1 - t0, 'load_embeddings_s': t2 - t1, 'rank_and_hits_s': t3 - t2,\n"
        "                  'faces': int(len(ids))}))\n"
    )
    rows: dict[str, list[float]] = defaultdict(list)
    faces = 0
    for _ in range(runs):
        t, r = timed_run([PY, "-c", code, str(home)], env=clean_env())
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-3000:])
        d = json.loads(r.stdout)
        faces = d.pop("faces")
        for k, v in d.items():
            rows[k].append(v)
        rows["process_wall_s"].append(t)
    return {"faces": faces, **{k: median(v) for k, v in rows.items()}}


def pool_batch(paths: list[Path]) -> dict[str, Any]:
    """The batch's images through facedb's worker pool (2 workers), including pool start-up."""
    code = (
        "import sys, time, json\n"
        "t0 = time.perf_counter()\n"
        "from facedb import imaging\n"
        "from facedb.pipeline import Analyzer\n"
        "paths = sys.stdin.read().split('\\n')[:-1]\n"
        "items = [(i, imaging.read_bytes(p), p) for i, p in enumerate(paths)]\n"
        "with Analyzer('sface', None, 2) as a:\n"
        "    n = sum(1 for r in a.run(iter(items), len(items)) if r.faces)\n"
        "print(json.dumps({'with_face': n, 'in_process_s': time.perf_counter() - t0}))\n"
    )
    t, r = timed_run([PY, "-c", code], stdin="".join(f"{p}\n" for p in paths), env=clean_env())
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    d = json.loads(r.stdout)
    return {"images": len(paths), "wall_s": t, "images_per_s": len(paths) / t, **d}


def report(args: argparse.Namespace, res: dict[str, Any], probe: Path, home: Path) -> str:
    rows = res["rows"]
    cold = rows["facedb search one.jpg --json"]["median_s"]
    target = "MET" if cold <= 1.5 else "NOT MET"
    g = res["gallery"]
    gal = (f"{g['images']:,} LFW faces of {g['subjects']:,} subjects, enrolled with `facedb import` "
           f"({g['import_s']:.0f} s)" if "images" in g else f"existing home {g['existing_home']}")
    lines = [_util.header("CLI latency: `facedb search` from a cold process", res["argv"], {
        "Gallery": gal, "Probe": f"`{probe}`",
        "Runs": f"{args.runs} cold processes per row, interleaved, after 2 warm-up runs (page cache warm; "
                "'cold' = a new process)",
    })]
    lines += ["", "## Result", "",
              f"**`facedb search one.jpg --json`: median {cold:.3f} s** (target <= 1.5 s: **{target}**; runs: "
              + ", ".join(f"{x:.2f}" for x in rows["facedb search one.jpg --json"]["runs"]) + ").", "",
              "| command (new process each time) | median s |", "| --- | ---: |"]
    for k, v in rows.items():
        lines.append(f"| `{k}` | {v['median_s']:.3f} |")
    b, bp, l1, l2 = res["batch"], res["batch_pool"], res["limit_1"], res["limit_2"]
    lines += ["", "## Batch search", "",
              f"`facedb search --paths-from - --json` over {b['images']} LFW images (stdin list): "
              f"**{b['images_per_s']:.1f} images/s** whole command ({b['wall_s']:.1f} s), "
              f"{b['steady_images_per_s']:.1f} images/s after the one-image cold cost; "
              f"{b['with_face']} images with a face.", "",
              "| same images | images/s |", "| --- | ---: |",
              f"| `facedb search --paths-from -` (worker pool, one process per core, from 32 files) | {b['images_per_s']:.1f} |",
              f"| facedb worker pool (`pipeline.Analyzer`, 2 workers, incl. start-up; no search) | {bp['images_per_s']:.1f} |",
              f"| model limit, 1 process (decode+detect+embed, warm) | {l1['images_per_s']:.1f} |",
              f"| model limit, 2 processes | {l2['images_per_s']:.1f} |", ""]
    ph = res["phases"]
    lines += ["## Where the time goes (instrumented driver, median per phase)", "",
              "Phases nest as indented; lazily imported libraries count in the phase that first imports them "
              "(chromadb is imported by a background thread started at the beginning of `FaceDB.search`; "
              "opening the Chroma client waits for it).", "",
              "| phase | median s |", "| --- | ---: |"]
    order = ["(outside the driver body: interpreter start, site, exit)", "(driver body)",
             "import facedb.cli (click)", "import facedb.service (sqlalchemy, numpy, PIL, ...)",
             "FaceDB(): SQL engine, lock, schema check, settings", "  of which schema check/upgrade",
             "FaceDB.search (all of it)", "model load (cv2 import, ONNX read + sha256, nets)", "  of which import cv2",
             "  of which sha256 of the ONNX files", "read + decode the probe", "  read bytes",
             "  of which PIL open (5 core plugins; the other ~40 only for rarer formats)", "detect + embed the probe",
             "Chroma: open client (waits for the chromadb import)", "journal replay (SQL)", "pack check (SQL)",
             "consistency check: Chroma count + SQL count", "Chroma: query", "SQL: hits for the neighbours",
             "Chroma: close", "chmod of the home tree", "print JSON"]
    for k in order + sorted(set(ph) - set(order)):
        if k in ph:
            lines.append(f"| {k} | {ph[k]:.3f} |")
    m = res["marks"]
    if m:
        lines += ["", f"Background chromadb import: from {m.get('chromadb_import_start', 0):.3f} s to "
                  f"{m.get('chromadb_import_end', 0):.3f} s after the driver started."]
    for var, pv in res["phases_variant"].items():
        if var == "teardown":
            lines += ["", "Variant `teardown` (the interpreter's normal teardown instead of the console "
                      "script's flush + `os._exit`): "
                      f"driver wall {rows['driver (teardown)']['median_s']:.3f} s vs {rows['driver']['median_s']:.3f} s; "
                      "outside the driver body "
                      f"{pv.get('(outside the driver body: interpreter start, site, exit)', 0):.3f} s vs "
                      f"{ph.get('(outside the driver body: interpreter start, site, exit)', 0):.3f} s."]
            continue
        lines += ["", f"Variant `{var}`: driver wall {rows['driver (' + var + ')']['median_s']:.3f} s vs "
                  f"{rows['driver']['median_s']:.3f} s with the preload; Chroma open "
                  f"{pv.get('Chroma: open client (waits for the chromadb import)', 0):.3f} s, detect + embed "
                  f"{pv.get('detect + embed the probe', 0):.3f} s, model load "
                  f"{pv.get('model load (cv2 import, ONNX read + sha256, nets)', 0):.3f} s."]
    ns = res.get("numpy_scan")
    if ns:
        lines += ["", f"Without Chroma (measured, new process): importing numpy + the catalog module "
                  f"{ns['imports_s']:.3f} s, loading all {ns['faces']:,} indexed embeddings from SQL "
                  f"{ns['load_embeddings_s']:.3f} s, exact cosine ranking + the hits query "
                  f"{ns['rank_and_hits_s']:.3f} s; whole process {ns['process_wall_s']:.3f} s."]
    imp = sorted(res["importtime"].items(), key=lambda kv: -kv[1])
    lines += ["", "## Import cost by top-level package (`PYTHONPROFILEIMPORTTIME=1`, cumulative, median)", "",
              f"Total of top-level imports: {res['importtime_total']:.3f} s (import-time profiling inflates it "
              "somewhat; the chromadb import runs in a background thread).", "",
              "| package | s |", "| --- | ---: |"]
    for k, v in imp[:15]:
        lines.append(f"| {k} | {v:.3f} |")
    selfs = sorted(res.get("importtime_self", {}).items(), key=lambda kv: -kv[1])
    if selfs:
        lines += ["", "Exclusive import time (each module's own time, summed by top-level package; these add up "
                  "to the total, so dependencies are counted under their own names):", "",
                  "| package | s |", "| --- | ---: |"]
        for k, v in selfs[:20]:
            lines.append(f"| {k} | {v:.3f} |")
    heavy = [p for p in ("sklearn", "insightface", "onnxruntime", "alembic", "torch", "matplotlib", "scipy")
             if p in res["modules"]]
    lines += ["", "Heavy optional libraries imported on the search path: " + (", ".join(heavy) if heavy else "none")
              + " (checked: sklearn, insightface, onnxruntime, alembic, torch, matplotlib, scipy).", ""]
    lines += ["## Commands", "", "```", f"facedb --home {home if args.home else '<gallery home>'} search {probe} --json",
              f"find ... | facedb --home <gallery home> search --paths-from - --json   # {b['images']} images",
              "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if "--_driver" in sys.argv:
        _driver_main(sys.argv)
    else:
        sys.exit(main(sys.argv[1:]))
