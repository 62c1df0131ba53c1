#!/usr/bin/env python
"""Service benchmark: `facedb serve` against the direct CLI and the machine's model limit.

What it measures, in one run (the heavy part under the machine-wide benchmark lock):

1. **the gallery**: an LFW subset (``--gallery`` images spread evenly) enrolled twice:
   with ``facedb import`` into home B (direct, traced: its spans give the steady rate), and over
   HTTP into home A, which a ``facedb serve`` owns (the load generator ``loadgen.py`` in its own
   process, ``--enroll-clients`` threads, one subject's images per request, TCP + API key);
   a second ``facedb import`` (home C, deleted) brackets the HTTP enroll;
2. **the CLI through the server**: ``facedb --home A search one.jpg --json`` (the CLI finds the
   server on A's socket and sends the request there) against ``facedb --home B search one.jpg
   --json`` (no server: a cold process opens everything), ``--runs`` pairs, interleaved A B A B,
   after two warm-up runs of each; ratio pair by pair;
3. **HTTP search** of one LFW image per request (``--probes`` images not in the gallery sample,
   cycled), over TCP with a read key: latency at 1 client, and throughput at ``--levels``
   concurrent clients as a share of the model limit (decode + detect + embed of every face of the
   same images, 2 processes, no storage: ``facedb.evaluation.bench.model_limit``) measured just before and just
   after the levels;
4. **memory**: the resident memory (VmRSS from /proc) of the server and its worker processes
   before and after ``--soak`` searches (``--soak-chunks`` load-generator runs of 4 clients,
   sampled after each).

The numbers against the targets (steps 2-4) are measured on a server **without** facedb's
tracing hook, as ``facedb serve`` runs unless ``FACEDB_TRACE_DIR`` is set, and as the model limit
they are compared with runs (the hook writes a JSON line for every span of the server and its
workers, on the same cores). Where a request's time goes comes from a traced server (unless
``--no-server-trace``): the HTTP enroll of step 1, two more CLI runs after the pairs, and a
shorter pass of the search levels at the end (``--traced-requests``), whose throughput the
report shows beside the untraced one.

    python scripts/bench/service.py                       # writes docs/benchmarks/service.md and .json
    python scripts/bench/service.py --quick --out /tmp/service.md --json-out /tmp/service.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facedb.config import DEFAULT_PACK  # (the pack of a new home: the served one)
from facedb.evaluation import bench
from facedb.evaluation.bench import bench_lock, log, median, percentile

#: the checkout this script belongs to (default report paths)
REPO = Path(__file__).resolve().parents[2]

FACEDB = bench.facedb_command()
ONE = Path("Aaron_Peirsol") / "Aaron_Peirsol_0001.jpg"  # one face; the person has several photos in LFW
TARGET_CLI_S = 0.25
TARGET_CLI_RATIO = 0.3
TARGET_SHARE = 0.85
TARGET_RSS_GROWTH = 0.10
#: server-side spans shown per search request (name, label)
SERVER_SPANS = (
    ("http.request", "whole request in the server (middleware to response)"),
    ("sql.active_key", "API key lookup (SQL)"),
    ("search.total", "FaceDB search"),
    ("analysis.wait", "  waiting for the analysis worker"),
    ("analysis.image", "    decode + detect + embed in the worker"),
    ("templates.refresh", "  template changes since the last search (SQL)"),
    ("templates.query", "  every subject's template scored (numpy)"),
    ("chroma.query", "  Chroma query (--by face / --scoring best only)"),
    ("sql.audit", "audit entries (batched: one SQL commit for many searches)"),
)


def fmt(x: float, nd: int = 1) -> str:
    return f"{x:,.{nd}f}"


def run_import(root: Path, home: Path, workers: int, env: dict[str, str], trace_dir: Path) -> dict[str, Any]:
    """`facedb import` on a fresh home, traced: whole-command and steady images/s."""
    # --multi-face largest: the work the model limit counts (the default, resolve, embeds every face
    # of a photo with several; a throughput benchmark keeps the limit's definition)
    r = bench.run_process([*FACEDB, "--home", str(home), "import", str(root), "--workers", str(workers), "-q",
                           "--multi-face", "largest", "--json"], env=bench.trace_env(env, trace_dir))
    if r.returncode not in (0, 3):
        raise RuntimeError(f"facedb import exited {r.returncode}: {r.stderr[-3000:]}")
    rep = json.loads(r.stdout)
    spans = bench.read_spans(trace_dir)
    act = bench.worker_activity(spans, r.pid)
    n = rep["enrolled"] + rep["duplicates"] + rep["n_failed"]
    steady = (r.t_start + r.wall_s - act["first_task"]) if act else r.wall_s
    return {"enrolled": rep["enrolled"], "duplicates": rep["duplicates"], "n_failed": rep["n_failed"],
            "images": n, "wall_s": r.wall_s, "images_per_s": n / r.wall_s,
            "first_image_after_s": r.wall_s - steady, "steady_images_per_s": n / steady if steady > 0 else 0.0,
            "cpu_s": r.cpu_s, "loadavg": bench.loadavg(), "t_end": time.time()}


def lat_summary(lat: list[float]) -> dict[str, float]:
    return bench.summarize_ms(lat)


def server_split(spans: list[dict[str, Any]], t0: float, t1: float, requests: int) -> dict[str, dict[str, float]]:
    """Median ms and calls per request of the server's spans that started in [t0, t1]."""
    by: dict[str, list[float]] = {}
    for sp in spans:
        if t0 <= sp["t0"] <= t1:
            by.setdefault(sp["name"], []).append(sp["t1"] - sp["t0"])
    return {name: {"median_ms": 1000 * median(v), "p99_ms": 1000 * percentile(v, 99), "per_request": len(v) / requests}
            for name, v in by.items() if requests}


def cli_split(proc: bench.Proc, spans: list[dict[str, Any]]) -> dict[str, float]:
    """Phases of one traced CLI run (its own process): start, named spans, end."""
    own = [sp for sp in spans if sp["pid"] == proc.pid]
    tot = bench.span_totals(own)
    out = {k: v["s"] for k, v in tot.items()}
    if own:
        out["(start)"] = min(sp["t0"] for sp in own) - proc.t_start
        out["(end)"] = proc.t_start + proc.wall_s - max(sp["t1"] for sp in own)
    out["(wall)"] = proc.wall_s
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gallery", type=int, default=1000, help="LFW images enrolled [1000]")
    ap.add_argument("--probes", type=int, default=200, help="LFW images the HTTP searches cycle through [200]")
    ap.add_argument("--runs", type=int, default=10, help="CLI pairs (server, direct) [10]")
    ap.add_argument("--requests", type=int, default=400, help="HTTP searches per concurrency level [400]")
    ap.add_argument("--levels", default="1,2,4,8", help="concurrent clients [1,2,4,8]")
    ap.add_argument("--soak", type=int, default=10_000, help="searches between the two memory readings [10000]")
    ap.add_argument("--soak-chunks", type=int, default=10)
    ap.add_argument("--soak-clients", type=int, default=4)
    ap.add_argument("--enroll-clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2, help="analysis workers of the server and the import [2]")
    ap.add_argument("--no-server-trace", action="store_true",
                    help="never run the server with the tracing hook (no span tables)")
    ap.add_argument("--traced-requests", type=int, default=100,
                    help="HTTP searches per level of the traced pass (where the time goes) [100]")
    ap.add_argument("--keep-homes", type=Path, help="keep the served and the direct home here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test sizes (gallery 20, 2 pairs, a few requests, benchmark lock not taken): "
                         "checks the script, measures nothing")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "service.md")
    ap.add_argument("--json-out", type=Path, help="the raw numbers [default: --out with .json]")
    args = ap.parse_args(argv)
    if args.quick:
        args.gallery, args.probes, args.runs = min(args.gallery, 20), min(args.probes, 6), min(args.runs, 2)
        args.requests, args.levels, args.soak, args.soak_chunks = min(args.requests, 6), "1,2", min(args.soak, 24), 2
        args.traced_requests = min(args.traced_requests, 6)
    json_out = args.json_out or args.out.with_suffix(".json")
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    lfw = bench.lfw_dir()
    if lfw is None:
        print("LFW not found (../shared/datasets/lfw or $FACEDB_DATASETS/lfw): the service benchmark needs it",
              file=sys.stderr)
        return 2
    all_paths = bench.lfw_images(lfw)
    gallery = bench.sample_images(all_paths[0::2], args.gallery)
    probes = bench.sample_images(all_paths[1::2], args.probes)
    one = lfw / ONE
    work = Path(tempfile.mkdtemp(prefix="facedb-bench-service-"))
    env = bench.clean_env()
    res: dict[str, Any] = {"argv": ["python", "scripts/bench/service.py", *argv], "started": time.strftime("%Y-%m-%d %H:%M %Z"),
                           "machine": bench.machine_info(), "versions": bench.library_versions("facedb", "fastapi",
                           "uvicorn", "chromadb", "sqlalchemy", "numpy", "opencv-python-headless"),
                           "commit": bench.git_rev(), "facedb_install": install_kind(),
                           "gallery_images": len(gallery), "probes": len(probes),
                           "one": str(one), "workers": args.workers, "levels": levels,
                           "server_traced": not args.no_server_trace}
    server: bench.FacedbServer | None = None

    def checkpoint() -> None:
        bench.write_text(json_out, json.dumps(res, indent=1, default=str))

    try:
        root = bench.subset_tree(gallery, work / "gallery")
        listing_enroll = work / "enroll.tsv"
        listing_enroll.write_text("".join(f"{p.parent.name}\t{p}\n" for p in gallery))
        listing_probes = work / "probes.txt"
        listing_probes.write_text("".join(f"{p}\n" for p in probes))
        home_a, home_b = work / "home-served", work / "home-direct"
        with bench_lock("service", enabled=not args.quick):
            res["loadavg_start"] = bench.loadavg()
            # -- 1. enrollment: direct import, HTTP enroll into the served home, import again ----------
            log(f"import of {len(gallery)} images into the direct home")
            res["imports"] = [run_import(root, home_b, args.workers, env, work / "trace-import-1")]
            log(f"import: {res['imports'][0]['images_per_s']:.1f} img/s")
            server_trace = work / "trace-server"
            traced_env = env if args.no_server_trace else bench.trace_env(env, server_trace)

            def serve(traced: bool) -> bench.FacedbServer:
                srv = bench.FacedbServer(home_a, workers=args.workers, env=traced_env if traced else env,
                                         log_path=work / f"serve-{'traced' if traced else 'plain'}.log")
                srv.start()
                return srv

            server = serve(traced=True)
            res["server_start_s"] = server.start_s
            res["rss"] = [{"when": "started, empty home", "searches": 0, **bench.tree_rss_mb(server.pid)}]
            wkey = bench.facedb_json(home_a, "keys", "create", "bench-write", "--scope", "write", env=env)[0]["key"]
            rkey = bench.facedb_json(home_a, "keys", "create", "bench-read", "--scope", "read", env=env)[0]["key"]
            log("enroll over HTTP")
            res["http_enroll"] = bench.run_loadgen("enroll", server.port, wkey, listing_enroll, args.enroll_clients,
                                         server_pid=server.pid)
            res["http_enroll"]["t_end"] = time.time()
            res["http_enroll"]["latency"] = lat_summary(res["http_enroll"].pop("latencies_s"))
            log(f"HTTP enroll: {res['http_enroll']['images_per_s']:.1f} img/s")
            res["rss"].append({"when": "after the HTTP enroll", "searches": 0, **bench.tree_rss_mb(server.pid)})
            status, health = bench.http_json("127.0.0.1", server.port, "GET", "/healthz")
            res["served_faces"] = health["faces"] if status == 200 else None
            if not args.quick:
                home_c = work / "home-direct-2"
                res["imports"].append(run_import(root, home_c, args.workers, env, work / "trace-import-2"))
                shutil.rmtree(home_c, ignore_errors=True)
                log(f"import again: {res['imports'][-1]['images_per_s']:.1f} img/s")
            checkpoint()

            # -- 2.-4. on a server without the tracing hook, as `facedb serve` runs by default ----
            res["traced_exit_codes"] = [server.stop()]
            server = serve(traced=False)
            res["plain_server_start_s"] = server.start_s

            # -- 2. the CLI through the server vs a direct cold process ----------------------------
            cmd_a = [*FACEDB, "--home", str(home_a), "search", str(one), "--json"]
            cmd_b = [*FACEDB, "--home", str(home_b), "search", str(one), "--json"]
            for _ in range(2):
                bench.run_process(cmd_a, env=env)
                bench.run_process(cmd_b, env=env)
            pairs = []
            for i in range(args.runs):
                ra = bench.run_process(cmd_a, env=env)
                rb = bench.run_process(cmd_b, env=env)
                if ra.returncode != 0 or rb.returncode != 0:
                    raise RuntimeError(f"search exited {ra.returncode}/{rb.returncode}: {ra.stderr[-1500:]} {rb.stderr[-1500:]}")
                if i == 0:
                    ja, jb = json.loads(ra.stdout), json.loads(rb.stdout)
                    fa = [[m["subject"] for m in f["matches"]] for r in ja["results"] for f in r["faces"]]
                    fb = [[m["subject"] for m in f["matches"]] for r in jb["results"] for f in r["faces"]]
                    res["cli_same_answer"] = fa == fb
                    res["cli_answer_faces"] = len(fa)
                pairs.append({"served_s": ra.wall_s, "direct_s": rb.wall_s, "ratio": ra.wall_s / rb.wall_s,
                              "served_cpu_s": ra.cpu_s, "direct_cpu_s": rb.cpu_s})
            res["cli_pairs"] = pairs
            log(f"CLI: served {median(p['served_s'] for p in pairs):.3f} s, direct "
                f"{median(p['direct_s'] for p in pairs):.3f} s")
            checkpoint()

            # -- 3. HTTP search: latency and throughput against the model limit ------------------
            res["limits"] = [bench.model_limit(probes, args.workers, pack=DEFAULT_PACK)]
            log(f"model limit: {res['limits'][-1]['images_per_s']:.1f} img/s")
            res["search_levels"] = []
            for c in levels:
                n = args.requests
                out = bench.run_loadgen("search", server.port, rkey, listing_probes, c, requests=n, warmup=2,
                              server_pid=server.pid)
                lat = out.pop("latencies_s")
                out["latency"] = lat_summary(lat)
                res["search_levels"].append(out)
                log(f"search x{c}: {out['requests_per_s']:.1f} req/s, p50 {out['latency']['p50_ms']:.0f} ms")
                checkpoint()
            res["limits"].append(bench.model_limit(probes, args.workers, pack=DEFAULT_PACK))
            log(f"model limit: {res['limits'][-1]['images_per_s']:.1f} img/s")

            # -- 4. memory over many searches ----------------------------------------------------
            res["rss"].append({"when": "before the soak", "searches": 0, **bench.tree_rss_mb(server.pid)})
            done = 0
            per = max(1, args.soak // args.soak_chunks)
            soak = []
            while done < args.soak:
                n = min(per, args.soak - done)
                out = bench.run_loadgen("search", server.port, rkey, listing_probes, args.soak_clients, requests=n)
                done += out["requests"]
                lat = out.pop("latencies_s")
                soak.append({"requests": out["requests"], "requests_per_s": out["requests_per_s"],
                             "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000})
                res["rss"].append({"when": "soak", "searches": done, **bench.tree_rss_mb(server.pid)})
                log(f"soak {done}: {res['rss'][-1]['total_mb']:.0f} MB")
            res["soak"] = soak
            res["server_exit_code"] = server.stop()

            # -- 5. where the time goes: a traced server, the CLI split and a shorter pass of the levels
            splits: dict[str, dict[str, float]] = {}
            # the spans' server (with --no-server-trace an untraced one: the served CLI run needs a server)
            server = serve(traced=not args.no_server_trace)
            for label, cmd in (("served", cmd_a), ("direct", cmd_b)):
                tdir = work / f"trace-cli-{label}"
                t0 = time.perf_counter()
                r = bench.run_process(cmd, env=bench.trace_env(env, tdir))
                splits[label] = cli_split(r, bench.read_spans(tdir))
                if label == "served" and not args.no_server_trace:
                    srv = [sp for sp in bench.read_spans(server_trace) if sp["t0"] >= t0 and sp["name"] == "http.request"]
                    splits[label]["(server: http.request)"] = sum(sp["t1"] - sp["t0"] for sp in srv)
            res["cli_split"] = splits
            res["traced_levels"] = []
            if not args.no_server_trace:
                for c in levels:
                    out = bench.run_loadgen("search", server.port, rkey, listing_probes, c,
                                            requests=args.traced_requests, warmup=2, server_pid=server.pid)
                    out["latency"] = lat_summary(out.pop("latencies_s"))
                    res["traced_levels"].append(out)
                    log(f"traced search x{c}: {out['requests_per_s']:.1f} req/s")
            res["traced_exit_codes"].append(server.stop())
            res["loadavg_end"] = bench.loadavg()
        if not args.no_server_trace:
            spans = bench.read_spans(server_trace)
            # the check that the levels against the targets ran untraced: no server span in their windows
            res["spans_in_untraced_levels"] = sum(1 for x in res["search_levels"] for sp in spans
                                                  if x["t_first"] <= sp["t0"] <= x["t_last"])
            res["server_spans"] = {}
            for out in res["traced_levels"]:
                res["server_spans"][str(out["clients"])] = server_split(spans, out["t_first"], out["t_last"],
                                                                         out["requests"])
            e = res["http_enroll"]
            res["server_spans"]["enroll"] = server_split(spans, e["t_first"], e["t_last"], e["requests"])
        if args.keep_homes:
            args.keep_homes.mkdir(parents=True, exist_ok=True)
            for h in (home_a, home_b):
                shutil.rmtree(args.keep_homes / h.name, ignore_errors=True)
                shutil.move(str(h), str(args.keep_homes / h.name))
        text = report(res)
        print(text)
        bench.write_report(args.out, text)
        checkpoint()
        return 0
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


def install_kind() -> str:
    """Where the measured facedb comes from: a regular install (what `pip install .` gives) or
    this checkout (an editable install adds its import hook to every process's start)."""
    src = bench.facedb_source()
    kind = "this checkout" if src == str(REPO / "facedb") else "a regular install"
    editable = any(Path(sys.prefix).glob("lib/python*/site-packages/__editable__*facedb*"))
    return f"`{src}` ({kind}{', editable' if editable else ''}), console script `{FACEDB[0]}`"


def loadgen_cpu_s(run: dict[str, Any]) -> float:
    """The load generator's CPU seconds while it sent the timed requests (its own reading), or its
    whole process's for runs recorded before it was kept."""
    return float(run.get("client_cpu_s", run["loadgen_cpu_s"]))


def verdict(ok: bool) -> str:
    return "**yes**" if ok else "**no**"


def report(res: dict[str, Any]) -> str:
    pairs = res["cli_pairs"]
    served = median(p["served_s"] for p in pairs)
    direct = median(p["direct_s"] for p in pairs)
    ratio = median(p["ratio"] for p in pairs)
    lims = res["limits"]
    limit = sum(x["images_per_s"] for x in lims) / len(lims)
    levels = res["search_levels"]
    one_client = next((x for x in levels if x["clients"] == 1), levels[0])
    best = max(levels, key=lambda x: x["requests_per_s"])
    imports = res["imports"]
    imp = median(x["images_per_s"] for x in imports)
    imp_steady = median(x["steady_images_per_s"] for x in imports)
    he = res["http_enroll"]
    rss = res["rss"]
    before = next(x for x in rss if x["when"] == "before the soak")
    after = rss[-1]
    growth = after["total_mb"] / before["total_mb"] - 1 if before["total_mb"] else float("nan")
    m = res["machine"]
    lines = [
        "# Service benchmark: `facedb serve`", "",
        f"Generated by `{' '.join(res['argv'])}` on {res['started']} (facedb commit {res['commit']}).", "",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores ({m['usable_cores']} usable), {m['ram_gb']} GB RAM, "
        f"{m['os']}, Python {m['python']}; load average at start {res['loadavg_start']}, at the end "
        f"{res.get('loadavg_end', '?')} (the machine is shared with other jobs: numbers are medians, ratios come "
        "from the same run).",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()),
        f"- facedb imported from {res.get('facedb_install', '?')}",
        f"- Gallery: {res['gallery_images']:,} LFW images spread evenly over every other LFW file; the served home "
        f"was enrolled over HTTP ({res.get('served_faces', '?')} faces indexed), the direct home with `facedb import` "
        f"({imports[0]['enrolled']:,} faces).",
        f"- Server: `facedb serve --workers {res['workers']}` (one analysis process per core). The CLI pairs, "
        "the search levels and the memory soak ran on a server **without** the tracing hook (`FACEDB_TRACE_DIR` "
        "unset, as `facedb serve` runs by default; so does the model limit)"
        + ("; the HTTP enroll, the CLI split and a shorter pass of the levels ran on a server with it, for the "
           "span tables" if res["server_traced"] else "") + f". Ready (answering /healthz) "
        f"{res['server_start_s']:.1f} s after its first start; exit code after SIGTERM: "
        f"{res.get('server_exit_code')} (the other starts: {res.get('traced_exit_codes', [])}).",
        "- Load generator: `scripts/bench/loadgen.py`, its own process, one kept-alive HTTP connection per client "
        "thread, requests encoded before the clock starts, loopback TCP with an API key.",
        "",
        "## Summary against the targets (issue 8)", "",
        "| target | measured | met? |", "| --- | --- | --- |",
        f"| `facedb search one.jpg --json` through a running server: median <= {TARGET_CLI_S} s | median "
        f"**{served:.3f} s** over {len(pairs)} runs | {verdict(served <= TARGET_CLI_S)} |",
        f"| ... and <= {TARGET_CLI_RATIO}x a direct cold run (interleaved pairs) | direct median {direct:.3f} s; "
        f"ratio **{ratio:.3f}x** (median of the pair ratios) | {verdict(ratio <= TARGET_CLI_RATIO)} |",
        f"| HTTP search, 1 client: p50 / p99 | **{one_client['latency']['p50_ms']:.1f} / "
        f"{one_client['latency']['p99_ms']:.1f} ms** ({one_client['requests']} requests) | — |",
    ]
    for x in levels:
        share = x["requests_per_s"] / limit
        lines.append(f"| HTTP search throughput at {x['clients']} client{'s' if x['clients'] > 1 else ''} >= "
                     f"{100 * TARGET_SHARE:.0f} % of the model limit | {x['requests_per_s']:.1f} searches/s = "
                     f"**{100 * share:.1f} %** of {limit:.1f} img/s | {verdict(share >= TARGET_SHARE)} |")
    lines += [
        f"| enroll over HTTP (img/s) as a share of `facedb import` | {he['images_per_s']:.1f} img/s vs "
        f"{imp:.1f} img/s = **{100 * he['images_per_s'] / imp:.0f} %** (vs the import's steady rate "
        f"{imp_steady:.1f} img/s: {100 * he['images_per_s'] / imp_steady:.0f} %) | — |",
        f"| server RSS growth over {after['searches']:,} searches <= {100 * TARGET_RSS_GROWTH:.0f} % | "
        f"{before['total_mb']:.0f} MB -> {after['total_mb']:.0f} MB = **{100 * growth:+.1f} %** | "
        f"{verdict(growth <= TARGET_RSS_GROWTH)} |",
        "",
        "## 1. `facedb search one.jpg --json` through the server vs a direct cold run", "",
        f"Probe `{res['one']}`. A = the CLI on the served home (it finds the server on the home's socket "
        "`facedb.sock` and sends the image there; the client imports no numpy, OpenCV, Chroma or SQLAlchemy); "
        "B = the CLI on the direct home (no server: a new process imports everything, loads the model, "
        f"opens SQL and Chroma). {len(pairs)} pairs, A B A B ..., after two warm-up runs of each; whole "
        "process wall time from outside. Both answers name the same subjects: "
        f"{'yes' if res.get('cli_same_answer') else 'NO'} ({res.get('cli_answer_faces', 0)} face).", "",
        "| run | A: through the server, s | B: direct, s | A/B | A CPU s | B CPU s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for i, p in enumerate(pairs, 1):
        lines.append(f"| {i} | {p['served_s']:.3f} | {p['direct_s']:.3f} | {p['ratio']:.3f} | "
                     f"{p['served_cpu_s']:.2f} | {p['direct_cpu_s']:.2f} |")
    lines += [f"| **median** | **{served:.3f}** | **{direct:.3f}** | **{ratio:.3f}** | "
              f"{median(p['served_cpu_s'] for p in pairs):.2f} | {median(p['direct_cpu_s'] for p in pairs):.2f} |",
              f"| min – max | {min(p['served_s'] for p in pairs):.3f} – {max(p['served_s'] for p in pairs):.3f} | "
              f"{min(p['direct_s'] for p in pairs):.3f} – {max(p['direct_s'] for p in pairs):.3f} | "
              f"{min(p['ratio'] for p in pairs):.3f} – {max(p['ratio'] for p in pairs):.3f} | | |", ""]
    sp = res.get("cli_split", {})
    if sp.get("served"):
        s = sp["served"]
        lines += ["Split of one traced run of each (spans of `facedb.trace`, seconds):", "",
                  "| phase | A: through the server | B: direct |", "| --- | ---: | ---: |"]
        d = sp.get("direct", {})
        rows = (("(start)", "process start to the first span (interpreter, imports)"),
                ("file.read", "read the probe"), ("client.request", "HTTP request over the socket (A)"),
                ("(server: http.request)", "  of which in the server (its `http.request` span)"),
                ("facedb.open", "FaceDB() open (B)"), ("engine.load", "model load (B)"),
                ("analysis.image", "decode + detect + embed (B)"), ("chroma.open", "Chroma open (B)"),
                ("search.total", "FaceDB search, all of it (B)"), ("sql.audit", "audit entry (B)"),
                ("(end)", "last span to exit (JSON printed, exit)"), ("(wall)", "whole process"))
        for k, label in rows:
            if k in s or k in d:
                a = f"{s[k]:.3f}" if k in s else ""
                b = f"{d[k]:.3f}" if k in d else ""
                lines.append(f"| {label} | {a} | {b} |")
        lines.append("")
    lines += ["## 2. HTTP search of one LFW image per request", "",
              f"`POST /v1/search` with one image (multipart `images`, k=3) over loopback TCP with a read key; the "
              f"requests cycle through {res['probes']} LFW images (every other file, spread evenly; not the gallery's "
              "files, partly the same people). Model limit = decode + detect + embed of every face of the same "
              f"images with {res['workers']} single-threaded processes, bytes preloaded, nothing stored "
              "(`facedb.evaluation.bench.model_limit`), run just before and just after the levels: "
              + ", ".join(f"{x['images_per_s']:.1f}" for x in lims) + f" img/s (mean {limit:.1f}).", "",
              "| clients | requests | searches/s | share of the model limit | p50 ms | p90 ms | p99 ms | max ms | "
              "server CPU s: main / workers | load generator CPU s | load average |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for x in levels:
        la = x["latency"]
        sc = x.get("server_cpu_s", {})
        lines.append(f"| {x['clients']} | {x['requests']} | {x['requests_per_s']:.1f} | "
                     f"{100 * x['requests_per_s'] / limit:.1f} % | {la['p50_ms']:.1f} | {la['p90_ms']:.1f} | "
                     f"{la['p99_ms']:.1f} | {la['max_ms']:.1f} | {sc.get('main', 0):.1f} / {sc.get('workers', 0):.1f} | "
                     f"{loadgen_cpu_s(x):.1f} | {x['loadavg']} |")
    lim_cpu_ms = 1000 * median(x["cpu_s"] / x["images"] for x in lims)
    lines += ["", f"CPU per search (from /proc: the server process and its workers, divided by the requests "
              "answered, warm-up included; the load generator's own reading from its first timed request to its "
              "last answer, divided by the timed requests: its start, file reads and request encoding come before "
              f"the clock), against the model limit's {lim_cpu_ms:.1f} CPU-ms per image. "
              "On an otherwise idle machine whose cores the measured processes have to themselves, throughput can "
              "reach at most the CPU-normalised share (limit CPU-ms per image / CPU-ms per search); the wall-clock "
              "share above also measures the other jobs on this shared machine.", "",
              "| clients | server main CPU-ms | workers CPU-ms | load generator CPU-ms | total CPU-ms per search | "
              "CPU-normalised share of the limit |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for x in levels:
        sc, k = x.get("server_cpu_s", {}), max(1, x.get("sent", x["requests"]))
        main_ms, work_ms = 1000 * sc.get("main", 0) / k, 1000 * sc.get("workers", 0) / k
        lg_ms = 1000 * loadgen_cpu_s(x) / max(1, x["requests"])
        tot = main_ms + work_ms + lg_ms
        x["cpu_ms_per_search"] = tot
        lines.append(f"| {x['clients']} | {main_ms:.1f} | {work_ms:.1f} | {lg_ms:.1f} | {tot:.1f} | "
                     f"{100 * lim_cpu_ms / tot:.0f} % |" if tot else f"| {x['clients']} | | | | | |")
    lines += ["", f"Best: {best['requests_per_s']:.1f} searches/s at {best['clients']} clients = "
              f"{100 * best['requests_per_s'] / limit:.1f} % of the model limit. The model limit keeps both cores "
              "busy with model work only; the server also runs HTTP, multipart parsing, the key lookup, Chroma, SQL "
              "and the audit write on the same two cores, and the load generator runs there too (its CPU is in "
              "the table).", ""]
    traced = res.get("traced_levels") or []
    if traced:
        lines += [f"The same levels on a server **with** the tracing hook ({traced[0]['requests']} searches a level, "
                  "after the soak; the span table below comes from this pass), against the same model limit:", "",
                  "| clients | searches/s | share of the model limit | p50 ms | p99 ms | server main / workers CPU-ms "
                  "per search |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for x in traced:
            sc, k = x.get("server_cpu_s", {}), max(1, x.get("sent", x["requests"]))
            lines.append(f"| {x['clients']} | {x['requests_per_s']:.1f} | {100 * x['requests_per_s'] / limit:.1f} % | "
                         f"{x['latency']['p50_ms']:.1f} | {x['latency']['p99_ms']:.1f} | "
                         f"{1000 * sc.get('main', 0) / k:.1f} / {1000 * sc.get('workers', 0) / k:.1f} |")
        lines.append("")
    ss = res.get("server_spans", {})
    if ss:
        cols = [str(x["clients"]) for x in (traced or levels)]
        lines += ["Where a search request's time goes in the traced server (its spans, median ms per call; calls per "
                  "request in brackets):", "",
                  "| span | " + " | ".join(f"{c} client{'s' if c != '1' else ''}" for c in cols) + " |",
                  "| --- | " + " | ".join("---:" for _ in cols) + " |"]
        for name, label in SERVER_SPANS:
            cells = []
            for c in cols:
                v = ss.get(c, {}).get(name)
                cells.append(f"{v['median_ms']:.1f} ({v['per_request']:.2f})" if v else "")
            if any(cells):
                lines.append(f"| {label} (`{name}`) | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## 3. Enroll over HTTP vs `facedb import`", "",
              f"The same {res['gallery_images']:,} images. `facedb import` = the whole command on a fresh home "
              f"(`--workers {res['workers']}`), run before and after the HTTP enroll; its steady rate counts from "
              "its first analysed image to its exit. HTTP = `POST /v1/subjects/<name>/images` from "
              f"{he['clients']} client threads, one subject's images per request (at most 32), into the "
              "running server's (empty) home; wall time from the first request to the last answer.", "",
              "| run | images | wall s | images/s | steady images/s | load average |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for i, x in enumerate(imports, 1):
        lines.append(f"| `facedb import`, run {i} | {x['images']:,} | {x['wall_s']:.1f} | {x['images_per_s']:.1f} | "
                     f"{x['steady_images_per_s']:.1f} | {x['loadavg']} |")
    lines += [f"| HTTP enroll, {he['clients']} clients, {he['requests']} requests | {he['images_ok']:,} | "
              f"{he['wall_s']:.1f} | **{he['images_per_s']:.1f}** | | {he['loadavg']} |", "",
              f"HTTP enroll = **{100 * he['images_per_s'] / imp:.0f} %** of `facedb import` (median "
              f"{imp:.1f} img/s), {100 * he['images_per_s'] / imp_steady:.0f} % of its steady rate; request latency "
              f"p50 {he['latency']['p50_ms']:.0f} ms, p99 {he['latency']['p99_ms']:.0f} ms.", ""]
    hsc = he.get("server_cpu_s", {})
    if hsc and he["images_ok"]:
        http_cpu = 1000 * (hsc.get("main", 0) + hsc.get("workers", 0) + loadgen_cpu_s(he)) / he["images_ok"]
        imp_cpu = 1000 * median(x["cpu_s"] / x["images"] for x in imports)
        lines += [f"CPU per image: `facedb import` {imp_cpu:.1f} ms (all its processes, start-up included); over HTTP "
                  f"{http_cpu:.1f} ms (server main {1000 * hsc.get('main', 0) / he['images_ok']:.1f}, workers "
                  f"{1000 * hsc.get('workers', 0) / he['images_ok']:.1f}, load generator "
                  f"{1000 * loadgen_cpu_s(he) / he['images_ok']:.1f}): CPU-normalised, HTTP enroll can reach at most "
                  f"{100 * imp_cpu / http_cpu:.0f} % of the import's rate.", ""]
    en = ss.get("enroll") if ss else None
    if en:
        lines += ["Server spans per enroll request (median ms; calls per request): " + "; ".join(
            f"`{k}` {en[k]['median_ms']:.1f} ({en[k]['per_request']:.2f})" for k in
            ("http.request", "ingest.total", "ingest.write_batch", "analysis.wait", "sql.store_batch", "chroma.add",
             "sql.mark_indexed", "sql.audit") if k in en) + ".", ""]
    lines += ["## 4. Server memory", "",
              "Resident memory (VmRSS, /proc) of the server process and its descendants (the analysis workers).", "",
              "| when | searches since the soak began | processes | server MB | workers MB | total MB |",
              "| --- | ---: | ---: | ---: | --- | ---: |"]
    for x in rss:
        lines.append(f"| {x['when']} | {x['searches']:,} | {x['processes']} | {x['main_mb']:.0f} | "
                     f"{', '.join(f'{v:.0f}' for v in x['children_mb'])} | {x['total_mb']:.0f} |")
    soak = res.get("soak", [])
    lines += ["", f"Growth over {after['searches']:,} searches ({res['soak'] and len(soak)} load-generator runs of "
              f"{soak[0]['requests'] if soak else 0} searches, 4 clients): **{100 * growth:+.1f} %** "
              f"(target <= {100 * TARGET_RSS_GROWTH:.0f} %). Throughput per run: "
              + ", ".join(f"{x['requests_per_s']:.0f}" for x in soak) + " searches/s.", ""]
    lines += ["## Commands", "", "```",
              "facedb --home <served> serve --port <free port> --workers 2        # the spans' pass: FACEDB_TRACE_DIR=<dir>",
              "facedb --home <served> keys create bench-read --scope read --json   # and bench-write --scope write",
              "facedb --home <direct> import <symlink tree of the gallery> --workers 2 -q --json",
              "FACEDB_API_KEY=<write key> python scripts/bench/loadgen.py enroll --port <port> --images <subject TAB path> "
              f"--clients {he['clients']}",
              f"facedb --home <served> search {res['one']} --json    # A: through the server",
              f"facedb --home <direct> search {res['one']} --json    # B: direct cold run",
              "FACEDB_API_KEY=<read key> python scripts/bench/loadgen.py search --port <port> --images <probes> "
              "--clients N --requests R --warmup 2",
              "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
