#!/usr/bin/env python
"""Which face of a group photo is the subject's? The rule of ``facedb.operations.resolve``, on LFW.

A photo with several faces is resolved against the subject's template t (the unit mean of the
subject's stored faces): with d_i the cosine distance of face i to t, the closest face is taken
iff d_best <= T and d_runner_up - d_best >= M; otherwise the photo is refused (ambiguous_faces).
This script measures, for a grid of T and M, how often the rule takes the right face, a wrong
face (a stranger stored under the name: the failure issue 16 is about), or refuses.

Protocol (embeddings of facedb's own pipeline: the pack's largest face of each photo):

* subjects: ``--people`` LFW people with >= 3 photos (seeded sample); the template is the unit
  mean of their first photos (at most 4), the last photo is the subject's face in the group;
* strangers: the one photo of ``--strangers`` people with a single LFW photo;
* "present": a group of the subject's face and m - 1 strangers (m = 2 and 4), drawn at random;
  "present, look-alike": the m - 1 strangers nearest to the subject's template (the hardest case);
* "absent": a group of m strangers and not the subject (a stranger's group photo filed under the
  subject's name, or a subject who is not in the photo at all).

Usage (about a minute on one core)::

    python scripts/experiments/multi_face_resolve.py --people 200 --strangers 800 \\
        --md docs/benchmarks/multi-face-resolve.md
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from facedb.analysis import imaging
from facedb.analysis.engines import load_engine
from facedb.evaluation.lfw import list_people, require_lfw

THRESHOLDS = (0.40, 0.45, 0.50, 0.55, 0.60)
MARGINS = (0.0, 0.05, 0.10, 0.20)


def embed(engine: object, path: Path) -> np.ndarray | None:
    faces = engine.analyze(imaging.load(path).pixels, max_faces=1)  # type: ignore[attr-defined]
    return faces[0].embedding if faces and faces[0].embedding is not None else None


def decide(dists: np.ndarray, thr: float, margin: float) -> int | None:
    order = np.argsort(dists, kind="stable")
    best = float(dists[order[0]])
    runner = float(dists[order[1]]) if len(order) > 1 else 2.0
    return int(order[0]) if best <= thr and runner - best >= margin else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path)
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--strangers", type=int, default=800)
    ap.add_argument("--groups", type=int, default=5, help="random groups per subject and size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pack", default="sface-flip")
    ap.add_argument("--md", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    lfw = require_lfw(args.lfw)
    people = list_people(lfw)
    rng = random.Random(args.seed)
    subjects = rng.sample(sorted(p for p, ims in people.items() if len(ims) >= 3), args.people)
    loners = rng.sample(sorted(p for p, ims in people.items() if len(ims) == 1), args.strangers)
    engine = load_engine(args.pack)
    started = time.time()
    templates, own = [], []
    for person in subjects:
        vecs = [v for rel in people[person][:-1][:4] if (v := embed(engine, lfw / rel)) is not None]
        face = embed(engine, lfw / people[person][-1])
        if not vecs or face is None:
            continue
        mean = np.mean(vecs, axis=0)
        templates.append(mean / np.linalg.norm(mean))
        own.append(face)
    pool = np.stack([v for p in loners if (v := embed(engine, lfw / people[p][0])) is not None])
    T, G = np.stack(templates), np.stack(own)
    d_own = 1.0 - np.sum(T * G, axis=1)            # the subject's face to their template
    d_pool = 1.0 - T @ pool.T                       # every stranger to every template
    nprng = np.random.default_rng(args.seed)
    scenarios: dict[str, list[tuple[np.ndarray, bool]]] = {}  # name -> [(distances, subject is index 0)]
    for m in (2, 4):
        present, lookalike, absent = [], [], []
        nearest = np.argsort(d_pool, axis=1)[:, :m - 1]
        for s in range(len(T)):
            for _ in range(args.groups):
                others = nprng.choice(len(pool), size=m, replace=False)
                present.append((np.concatenate([[d_own[s]], d_pool[s, others[:m - 1]]]), True))
                absent.append((d_pool[s, others], False))
            lookalike.append((np.concatenate([[d_own[s]], d_pool[s, nearest[s]]]), True))
        scenarios[f"present, {m} faces"] = present
        scenarios[f"present, {m} faces, look-alike strangers"] = lookalike
        scenarios[f"absent, {m} strangers"] = absent
    rows = []
    for thr in THRESHOLDS:
        for margin in MARGINS:
            row: dict[str, object] = {"threshold": thr, "margin": margin}
            for name, groups in scenarios.items():
                right = wrong = 0
                for dists, has_subject in groups:
                    taken = decide(dists, thr, margin)
                    if taken is None:
                        continue
                    if has_subject and taken == 0:
                        right += 1
                    else:
                        wrong += 1
                row[name] = {"n": len(groups), "right": right, "wrong": wrong}
            rows.append(row)
    elapsed = time.time() - started
    genuine = {"median": float(np.median(d_own)), "p95": float(np.percentile(d_own, 95)),
               "share_le_0.50": float(np.mean(d_own <= 0.50))}
    names = list(scenarios)
    lines = [
        "# Resolving photos with several faces (`--multi-face resolve`)",
        "",
        f"Made by `scripts/experiments/multi_face_resolve.py --people {args.people} --strangers {args.strangers} "
        f"--groups {args.groups} --seed {args.seed}` (pack `{args.pack}`, {elapsed:.0f} s): {len(T)} LFW "
        f"subjects (template: the unit mean of up to 4 photos; their held-out photo is their face in "
        f"the group) and {len(pool)} strangers (people with one LFW photo). Groups are simulated from "
        "the faces' embeddings (see the script's docstring). The subject's own held-out face lies at a "
        f"median distance of {genuine['median']:.3f} from their template (95th percentile "
        f"{genuine['p95']:.3f}; {genuine['share_le_0.50']:.1%} within 0.50).",
        "",
        "Each cell: share of groups where the subject's face was taken (right) / a stranger's face was "
        "taken (wrong); the rest are refused as `ambiguous_faces`. In the `absent` groups every taken "
        "face is wrong.",
        "",
        "| T | M | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for row in rows:
        cells = []
        for name in names:
            c = row[name]
            assert isinstance(c, dict)
            cells.append(f"{c['right'] / c['n']:.1%} / {c['wrong'] / c['n']:.2%}" if name.startswith("present")
                         else f"{c['wrong'] / c['n']:.2%} ({c['wrong']})")
        lines.append(f"| {row['threshold']:.2f} | {row['margin']:.2f} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"genuine": genuine, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
