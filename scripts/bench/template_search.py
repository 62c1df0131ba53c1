"""Search latency with template scoring against best-sample scoring, at 100k enrolled faces.

Issue 11 allows search latency at 100k faces to grow by at most 20 % with the new subject
scoring. This benchmark builds a real facedb home (SQLite catalog + embedded Chroma) holding
``--faces`` synthetic unit vectors through the real write path (``store_batch``: SQL rows and
subject templates, then Chroma, then marked indexed), in two layouts: ``--per-subject`` faces
per subject (10 by default) and one face per subject (the worst case for templates: as many
templates as faces). Then, in one process, it interleaves searches of the same real photo with
``scoring="template"`` (the default), ``scoring="best"`` (the previous default: subjects by their
closest face, through Chroma) and ``by="face"``, and reports per mode the median and p99 of the
whole ``FaceDB.search`` call and of its matching step (the ``search.match`` trace span: everything
after the probe's embedding), with the ratio template / best measured in the same rounds.

It also checks exactness on the way: every template answer equals a brute-force ranking over
templates recomputed from the catalog's embeddings.

    python scripts/bench/template_search.py                      # 100k faces, writes docs
    python scripts/bench/template_search.py --faces 5000 --rounds 5 --out /tmp/t.md   # smoke
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation import bench

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "template_search.md"
MODES: tuple[tuple[str, dict[str, str]], ...] = (
    ("template", {"by": "subject", "scoring": "template"}),
    ("best", {"by": "subject", "scoring": "best"}),
    ("face", {"by": "face"}),
)


@dataclass
class _Synthetic:
    """A face as ``store_batch`` stores it: a box, a score, landmarks and the embedding."""

    embedding: Any
    bbox: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] = ((0.0, 0.0),) * 5
    quality: Any = None


def build(db: Any, faces: int, per_subject: int, seed: int, chunk: int = 2000) -> float:
    """Enroll ``faces`` synthetic vectors, ``per_subject`` per subject; returns the seconds."""
    from facedb.catalog.faces import StoredItem

    rng = np.random.default_rng(seed)
    subjects = max(1, faces // per_subject)
    info = db.pack.contract(register=True)
    dim = info.dim
    t0 = time.perf_counter()
    for start in range(0, faces, chunk):
        items = []
        for i in range(start, min(faces, start + chunk)):
            sid = i // per_subject
            centre = np.random.default_rng(seed * 1_000_003 + sid).standard_normal(dim)
            v = (centre + 0.6 * rng.standard_normal(dim)).astype(np.float32)
            items.append(StoredItem(subject=f"s{sid:06d}", label=f"/synthetic/{i}.jpg", path=f"/synthetic/{i}.jpg",
                                    digest=f"{seed:08x}{i:056x}", source="upload", size_bytes=1, width=1, height=1,
                                    face=_Synthetic(embedding=v / np.linalg.norm(v))))
        with db.store.writing() as index:
            new = db.catalog.store_batch(items, info.name)
            db.store.journal.index_new_faces(index, info, new)
        if start // chunk % 10 == 0:
            bench.log(f"  {min(faces, start + chunk):,} / {faces:,} faces ({subjects:,} subjects)")
    return time.perf_counter() - t0


def exact_templates(db: Any, vectors: np.ndarray, k: int) -> list[list[int]]:
    """The k nearest subjects by template, by brute force over templates made afresh from SQL."""
    from facedb.index.templates import templates_from_faces

    sids, emb = db.catalog.face_embeddings_by_subject(db.pack_name)
    uniq, tmpl = templates_from_faces(sids, emb)
    d = 1.0 - vectors @ tmpl.T
    return [[int(uniq[j]) for j in np.argsort(row, kind="stable")[:k]] for row in d]


def measure(home: Path, faces: int, per_subject: int, probes: list[Path], rounds: int, k: int,
            seed: int, exclusive: bool) -> dict[str, Any]:
    from facedb import FaceDB, trace

    spans: dict[str, list[float]] = defaultdict(list)

    def tracer(name: str, t0: float, t1: float, attrs: dict[str, Any]) -> None:
        if name in ("search.match", "templates.refresh", "templates.query", "chroma.query", "search.total"):
            spans[name].append(t1 - t0)

    out: dict[str, Any] = {"faces": faces, "per_subject": per_subject, "subjects": max(1, faces // per_subject)}
    out["exclusive"] = exclusive
    with FaceDB(home=home, workers=1, exclusive=exclusive) as db:
        out["build_s"] = round(build(db, faces, per_subject, seed), 1)
        bench.log(f"  built in {out['build_s']} s")
        # First search by template: the per-process cache loads every template from SQL.
        t0 = time.perf_counter()
        db.search([probes[0]], k=k)
        out["first_template_search_s"] = round(time.perf_counter() - t0, 3)
        for _, opts in MODES:  # warm-up of every path
            db.search([probes[0]], k=k, **opts)  # type: ignore[arg-type]
        total: dict[str, list[float]] = defaultdict(list)
        match: dict[str, list[float]] = defaultdict(list)
        parts: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        previous = trace.install(tracer)
        try:
            for r in range(rounds):
                order = MODES if r % 2 == 0 else MODES[::-1]
                for name, opts in order:
                    probe = probes[r % len(probes)]
                    spans.clear()
                    t0 = time.perf_counter()
                    db.search([probe], k=k, **opts)  # type: ignore[arg-type]
                    total[name].append(time.perf_counter() - t0)
                    match[name].append(sum(spans["search.match"]))
                    for part in ("templates.refresh", "templates.query", "chroma.query"):
                        if spans[part]:
                            parts[name][part].append(sum(spans[part]))
        finally:
            trace.install(previous)
        # Exactness: the template answers against brute force over templates recomputed from SQL.
        faces_found = [f for p in probes for f in db.detect(p)[:1]]
        vectors = np.stack([f.embedding for f in faces_found])
        rep = db.search(probes, k=k)
        got = [[db.catalog.subject_id(m.subject) for m in r.faces[0].matches] for r in rep.results if r.faces]
        want = exact_templates(db, vectors, k)
        out["exact_checked"] = len(want)
        out["exact_agree"] = sum(g == w for g, w in zip(got, want))
    out["modes"] = {}
    for name, _ in MODES:
        out["modes"][name] = {"search": bench.summarize_ms(total[name]), "match": bench.summarize_ms(match[name]),
                              "parts": {p: bench.summarize_ms(v) for p, v in parts[name].items()}}
    # Paired ratios: each round's template call against the same round's best-sample call.
    ratios = [t / b for t, b in zip(total["template"], total["best"])]
    match_ratios = [t / b for t, b in zip(match["template"], match["best"])]
    out["ratio_search_template_over_best"] = round(bench.median(ratios), 3)
    out["ratio_match_template_over_best"] = round(bench.median(match_ratios), 3)
    return out


def probe_photos(n: int) -> list[Path]:
    lfw = bench.lfw_dir()
    if lfw is None:
        raise SystemExit("the LFW images are needed for the probes: set FACEDB_DATASETS (see the datasets README)")
    return bench.sample_images(bench.lfw_images(lfw), n)


def report(runs: list[dict[str, Any]], argv: list[str], started: str, minutes: float) -> str:
    held = ("the index opened per call (as one CLI command does)" if runs and not runs[0]["exclusive"]
            else "the home held with the index open (as `facedb serve` does)")
    lines = [bench.header("Search latency: template scoring vs best sample",
                             ["python", "scripts/bench/template_search.py", *argv]),
             f"Started {started}, {minutes:.1f} min. One process, SQLite catalog + embedded Chroma, {held}, "
             "a real LFW photo per search (its embedding included in *search*), modes interleaved round by round; "
             "*match* is the `search.match` trace span (everything after the embedding).", ""]
    rows = []
    for run in runs:
        for name, _ in MODES:
            m = run["modes"][name]
            rows.append([f"{run['faces']:,}", f"{run['subjects']:,}", name,
                         *(f"{m[part][q]:.1f}" for part in ("search", "match") for q in ("p50_ms", "p99_ms"))])
    lines += [bench.md_table(["faces", "subjects", "mode", "search p50 ms", "search p99 ms", "match p50 ms",
                                 "match p99 ms"], rows), ""]
    rows = [[f"{r['faces']:,}", f"{r['subjects']:,}", r["ratio_search_template_over_best"],
             r["ratio_match_template_over_best"], r["first_template_search_s"],
             f"{r['exact_agree']}/{r['exact_checked']}", r["build_s"]] for r in runs]
    lines += ["Median of the per-round ratios (template / best sample, same round, same photo):", "",
              bench.md_table(["faces", "subjects", "search ratio", "match ratio", "first template search s",
                                 "exact (template = brute force)", "build s"], rows), "",
              "- *template*: the default since issue 11 (every subject's template scored by numpy, exact); "
              "*best*: the previous default (subjects by their closest face, from Chroma, exactly ranked); "
              "*face*: `--by face`.",
              "- *first template search*: the first search of a process loads every template from SQL "
              "(a server does it once; later searches read only the changes).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=100_000)
    ap.add_argument("--per-subject", type=int, default=10, help="faces per subject of the first layout")
    ap.add_argument("--no-single", action="store_true", help="skip the one-face-per-subject layout")
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-lock", action="store_true")
    ap.add_argument("--per-call", action="store_true",
                    help="a FaceDB that opens the index per call (as one CLI command does) instead of holding it "
                         "open like `facedb serve`")
    args = ap.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.perf_counter()
    probes = probe_photos(args.probes)
    layouts = [args.per_subject] + ([] if args.no_single or args.per_subject == 1 else [1])
    runs = []
    with bench.bench_lock("template_search", enabled=not args.no_lock), \
            tempfile.TemporaryDirectory(prefix="facedb-template-bench-") as tmp:
        for per in layouts:
            bench.log(f"{args.faces:,} faces, {per} per subject")
            runs.append(measure(Path(tmp) / f"home-{per}", args.faces, per, probes, args.rounds, args.k, args.seed,
                                exclusive=not args.per_call))
            bench.log(json.dumps({k: v for k, v in runs[-1].items() if k != "modes"}))
    text = report(runs, argv, started, (time.perf_counter() - t0) / 60)
    bench.write_report(args.out, text)
    bench.write_text(args.out.with_suffix(".json"), json.dumps({"argv": argv, "started": started,
                                                                   "commit": bench.git_rev(), "runs": runs}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
