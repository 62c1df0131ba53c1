#!/usr/bin/env python
"""CPU per HTTP search: the server, its analysis workers, the load generator, and the model alone.

Throughput on a shared machine measures the other jobs as much as the server; CPU time does
not. This benchmark runs ``facedb serve`` on a small LFW gallery, sends ``--requests``
one-image searches from the load generator (its own process, ``--clients`` threads), and reads
from /proc the CPU seconds the server process and its analysis workers spent meanwhile; the
load generator reports its own (from its first timed request to its last answer). The model
alone is ``bench.model_limit`` with one process (decode + detect + embed of the same images,
bytes preloaded, nothing stored). With the two cores to itself, the server can reach at most
``model CPU-ms per image / total CPU-ms per search`` of the model limit: the share the service
benchmark measures in wall-clock time.

Several checkouts can be measured in the same session, interleaved round by round (``--tree
LABEL=PATH``: the server and the load generator run with ``PYTHONPATH=PATH``), so that a change
is shown against the code before it on the same machine at the same time:

    git archive e62db79 | tar -x -C /tmp/before
    python scripts/bench/server_cpu.py --tree before=/tmp/before --tree after=. --rounds 3 \\
        --out docs/benchmarks/server-cpu.md
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facedb.config import DEFAULT_PACK
from facedb.evaluation import bench
from facedb.evaluation.bench import log, median

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("main", "workers", "loadgen", "total")


def measure(tree: Path, home: Path, work: Path, listing: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One server started from ``tree`` on ``home``, one load-generator run against it."""
    env = {"PYTHONPATH": str(tree.resolve())}
    server = bench.FacedbServer(home, workers=args.workers, env=env, log_path=work / "serve.log")
    server.start()
    try:
        key = server.new_key(f"cpu-{time.monotonic_ns()}", "read")
        cmd = [sys.executable, "-m", "facedb.evaluation.loadgen", "search", "--port", str(server.port),
               "--images", str(listing), "--clients", str(args.clients)]
        lenv = bench.clean_env(FACEDB_API_KEY=key, **env)
        # Warm-up, not measured: the workers load their models, the first requests fill caches.
        # cwd=tree: ``python -m`` puts the working directory before PYTHONPATH on sys.path.
        warm = bench.run_process([*cmd, "--requests", str(8 * args.workers)], env=lenv, timeout=600, cwd=tree)
        if warm.returncode != 0:
            raise RuntimeError(f"loadgen warm-up failed: {warm.stdout[-2000:]} {warm.stderr[-2000:]}")
        cpu0 = bench.tree_cpu_s(server.pid)
        r = bench.run_process([*cmd, "--requests", str(args.requests)], env=lenv, timeout=3600, cwd=tree)
        cpu1 = bench.tree_cpu_s(server.pid)
        out = json.loads(r.stdout)
        if r.returncode != 0:
            raise RuntimeError(f"loadgen failed: {out.get('statuses')} {out.get('errors')}")
    finally:
        server.stop()
    sent = out["requests"]
    main = cpu1.get(server.pid, 0.0) - cpu0.get(server.pid, 0.0)
    workers = sum(v - cpu0.get(p, 0.0) for p, v in cpu1.items() if p != server.pid)
    ms = {"main": 1000 * main / sent, "workers": 1000 * workers / sent,
          "loadgen": 1000 * out["client_cpu_s"] / out["requests"]}
    ms["total"] = sum(ms.values())
    return {"ms": ms, "requests": out["requests"], "sent": sent, "requests_per_s": out["requests_per_s"],
            "loadgen_process_cpu_s": r.cpu_s, "loadavg": bench.loadavg()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=PATH",
                    help="a checkout to measure (repeatable) [this checkout]")
    ap.add_argument("--gallery", type=int, default=200, help="LFW images enrolled [200]")
    ap.add_argument("--probes", type=int, default=100, help="LFW images the searches cycle through [100]")
    ap.add_argument("--requests", type=int, default=300, help="searches per run [300]")
    ap.add_argument("--clients", type=int, default=4, help="load-generator threads [4]")
    ap.add_argument("--workers", type=int, default=2, help="the server's analysis workers [2]")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each tree, interleaved [3]")
    ap.add_argument("--no-lock", action="store_true", help="do not take the machine-wide benchmark lock")
    ap.add_argument("--out", type=Path, help="write the markdown report here")
    ap.add_argument("--json-out", type=Path, help="the raw numbers [--out with .json]")
    args = ap.parse_args(argv)
    trees = [(t.split("=", 1)[0], Path(t.split("=", 1)[1])) for t in args.tree] or [("this checkout", REPO)]
    lfw = bench.lfw_dir()
    if lfw is None:
        print("LFW not found (../shared/datasets/lfw or $FACEDB_DATASETS/lfw)", file=sys.stderr)
        return 2
    paths = bench.lfw_images(lfw)
    gallery = bench.sample_images(paths[0::2], args.gallery)
    probes = bench.sample_images(paths[1::2], args.probes)
    work = Path(tempfile.mkdtemp(prefix="facedb-bench-server-cpu-"))
    res: dict[str, Any] = {"argv": ["python", "scripts/bench/server_cpu.py", *argv], "commit": bench.git_rev(),
                           "started": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": bench.machine_info(),
                           "trees": {label: str(path) for label, path in trees}, "runs": {}, "model": []}
    try:
        listing = work / "probes.txt"
        listing.write_text("".join(f"{p}\n" for p in probes))
        home = work / "home"
        env = bench.clean_env(PYTHONPATH=str(trees[0][1].resolve()))
        r = bench.run_process([*bench.facedb_command(), "--home", str(home), "import",
                               str(bench.subset_tree(gallery, work / "gallery")), "-q", "--multi-face", "largest",
                               "--json"], env=env)
        if r.returncode not in (0, 3):
            raise RuntimeError(f"facedb import exited {r.returncode}: {r.stderr[-2000:]}")
        res["gallery_faces"] = json.loads(r.stdout)["enrolled"]
        with bench.bench_lock("server_cpu", enabled=not args.no_lock):
            res["loadavg_start"] = bench.loadavg()
            for rnd in range(args.rounds):
                lim = bench.model_limit(probes, 1, pack=DEFAULT_PACK)
                res["model"].append(1000 * lim["cpu_s"] / lim["images"])
                log(f"round {rnd + 1}: model alone {res['model'][-1]:.1f} CPU-ms per image")
                for label, tree in trees:
                    run = measure(tree, home, work, listing, args)
                    res["runs"].setdefault(label, []).append(run)
                    log(f"round {rnd + 1}, {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in run["ms"].items())
                        + " CPU-ms per search")
            res["loadavg_end"] = bench.loadavg()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(res, args)
    print(text)
    if args.out:
        bench.write_text(args.out, text)
        bench.write_text(args.json_out or args.out.with_suffix(".json"), json.dumps(res, indent=1))
    return 0


def report(res: dict[str, Any], args: argparse.Namespace) -> str:
    model = median(res["model"])
    lines = ["# CPU per HTTP search (`scripts/bench/server_cpu.py`)", "",
             f"Generated by `{' '.join(res['argv'])}` on {res['started']} (facedb commit {res['commit']}); "
             f"load average {res['loadavg_start']} at the start, {res['loadavg_end']} at the end.", "",
             f"`facedb serve --analysis-workers {args.workers}` on {res['gallery_faces']} enrolled LFW faces; "
             f"{args.requests} one-image searches (k=3) from {args.clients} load-generator threads over loopback "
             "TCP with a read key, cycling through "
             f"{args.probes} other LFW images; {args.rounds} rounds, the trees interleaved. CPU from /proc "
             "(user + system) over the measured requests (after a warm-up run); the load generator's from "
             "its own clock (timed requests only). Model alone: decode + detect + embed of the same images in one "
             f"process, median {model:.1f} CPU-ms per image (" + ", ".join(f"{x:.1f}" for x in res["model"]) + ").",
             "", "Medians over the rounds, CPU-ms per search:", "",
             "| tree | server main | analysis workers | load generator | total | beyond the model | "
             "CPU-normalised share of the model limit |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, runs in res["runs"].items():
        med = {k: median(r["ms"][k] for r in runs) for k in FIELDS}
        lines.append(f"| {label} | {med['main']:.2f} | {med['workers']:.2f} | {med['loadgen']:.2f} | "
                     f"**{med['total']:.2f}** | {med['total'] - model:.2f} | {100 * model / med['total']:.0f} % |")
    lines += ["", "Every run (main / workers / load generator CPU-ms; searches/s, which the machine's other jobs "
              "decide as much as the server):", ""]
    for label, runs in res["runs"].items():
        lines.append(f"- {label} (`{res['trees'][label]}`): " + "; ".join(
            f"{r['ms']['main']:.2f} / {r['ms']['workers']:.2f} / {r['ms']['loadgen']:.2f} ({r['requests_per_s']:.0f}/s)"
            for r in runs))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.pop("FACEDB_TRACE_DIR", None)
    sys.exit(main(sys.argv[1:]))
