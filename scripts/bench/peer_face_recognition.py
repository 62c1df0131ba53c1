#!/usr/bin/env python
"""Peer comparison: the same LFW images through `face_recognition` (dlib HOG + ResNet encodings).

`face_recognition` is the most used Python face library. It runs here in its own venv
(``/tmp/facedb-peer-venv``), created by this script from PyPI wheels only for dlib
(``dlib-bin``, prebuilt: nothing is compiled): ``pip install --only-binary=:all: dlib-bin
numpy Pillow Click "setuptools<81"``, then ``face_recognition_models`` (a data-only sdist; its
``__init__`` needs ``pkg_resources``, hence setuptools<81) and ``face_recognition --no-deps``
(its metadata asks for ``dlib``, which would be compiled from source).

Both libraries do the same job on the same images, with bytes preloaded and models loaded
before the clock starts, one thread per process, in 1 and in N processes pulling from a shared
counter: decode + detect + (align) + embed every face, nothing stored. face_recognition uses its
defaults (``face_locations(img)`` = HOG with 1 upsample, ``face_encodings(img, locations)`` =
5-point landmarks, 1 jitter); facedb is its default sface pack (YuNet + SFace int8).

    python scripts/bench/peer_face_recognition.py               # 1000 images, 2 rounds
    python scripts/bench/peer_face_recognition.py --limit 200 --rounds 1 --out /tmp/peer.md
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from facedb.evaluation import bench
from facedb.evaluation.bench import bench_lock, log, median

#: the checkout this script belongs to (default report paths)
REPO = Path(__file__).resolve().parents[2]

VENV = Path("/tmp/facedb-peer-venv")
PINS = ["dlib-bin", "numpy", "Pillow", "Click", "setuptools<81"]

PEER_WORKER = r'''
"""Runs inside the peer venv: face_recognition over a list of images, N processes."""
import io, json, multiprocessing, os, sys, time

def work(idx, paths, upsample, chunk, counter, barrier, out):
    import numpy as np
    from PIL import Image
    import face_recognition  # loads the dlib models
    datas = [open(p, "rb").read() for p in paths]
    def load(b):
        return np.array(Image.open(io.BytesIO(b)).convert("RGB"))  # = face_recognition.load_image_file
    img = load(datas[0])
    face_recognition.face_encodings(img, face_recognition.face_locations(img, upsample))  # warm-up
    barrier.wait()
    c0 = time.process_time(); t0 = time.perf_counter()
    n = with_face = faces = 0
    while True:
        with counter.get_lock():
            start = counter.value
            counter.value += chunk
        if start >= len(datas):
            break
        for j in range(start, min(start + chunk, len(datas))):
            img = load(datas[j])
            locs = face_recognition.face_locations(img, number_of_times_to_upsample=upsample, model="hog")
            enc = face_recognition.face_encodings(img, known_face_locations=locs)
            n += 1; faces += len(enc); with_face += bool(enc)
    t1 = time.perf_counter()
    out.put({"worker": idx, "images": n, "with_face": with_face, "faces": faces, "t0": t0, "t1": t1,
             "cpu": time.process_time() - c0})

if __name__ == "__main__":
    paths = json.load(open(sys.argv[1])); procs = int(sys.argv[2]); upsample = int(sys.argv[3])
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("l", 0); barrier = ctx.Barrier(procs); out = ctx.Queue()
    ps = [ctx.Process(target=work, args=(i, paths, upsample, 4, counter, barrier, out)) for i in range(procs)]
    for p in ps: p.start()
    res = [out.get() for _ in ps]
    for p in ps: p.join()
    wall = max(r["t1"] for r in res) - min(r["t0"] for r in res)
    n = sum(r["images"] for r in res); cpu = sum(r["cpu"] for r in res)
    print(json.dumps({"procs": procs, "images": n, "wall_s": wall, "images_per_s": n / wall,
                      "with_face": sum(r["with_face"] for r in res), "faces": sum(r["faces"] for r in res),
                      "cpu_s": cpu, "cpu_share": cpu / (wall * procs)}))
'''

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def ensure_venv(log_lines: list[str]) -> dict[str, Any]:
    """Create /tmp/facedb-peer-venv and install face_recognition without compiling anything."""
    py = VENV / "bin" / "python"
    t0 = time.perf_counter()
    created = False
    if not py.exists() or subprocess.run([str(py), "-c", "import face_recognition"], capture_output=True,
                                         env={**os.environ, **ONE_THREAD}).returncode != 0:
        created = True
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        steps = [pip + ["--only-binary=:all:", *PINS],
                 pip + ["face_recognition_models"],
                 pip + ["--no-deps", "--only-binary=:all:", "face_recognition"]]
        for cmd in steps:
            log(" ".join(cmd))
            r = subprocess.run(cmd, capture_output=True, text=True)
            log_lines.append("$ " + " ".join(cmd[2:]) + "\n" + r.stdout[-2500:] + r.stderr[-1500:])
            if r.returncode != 0:
                raise RuntimeError(f"pip failed: {' '.join(cmd)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    compiled = any("Building wheel for dlib" in s or "Running setup.py install for dlib" in s for s in log_lines)
    artifacts: list[str] = []
    built: list[str] = []
    for chunk in log_lines:
        for line in chunk.splitlines():
            words = line.split()
            for w in words:
                if w.endswith((".whl", ".tar.gz", ".zip")) and ("Downloading" in line or "Processing" in line):
                    artifacts.append(w.rsplit("/", 1)[-1])
            if line.strip().startswith("Building wheel for ") and "finished" in line:
                built.append(words[3])
    info = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m, json, dlib; print(json.dumps({n: m.version(n) for n in "
         "('dlib-bin', 'face_recognition', 'face_recognition_models', 'numpy', 'Pillow')} | "
         "{'dlib_module': dlib.__version__, 'DLIB_USE_BLAS': bool(getattr(dlib, 'DLIB_USE_BLAS', False))}))"],
        capture_output=True, text=True, check=True, env={**os.environ, **ONE_THREAD})
    record = VENV / "facedb-peer-install.json"
    if created:
        record.write_text(json.dumps({"artifacts": artifacts, "built": sorted(set(built)), "compiled_dlib": compiled}))
    elif record.exists():
        prev = json.loads(record.read_text())
        artifacts, built, compiled = prev["artifacts"], prev["built"], prev["compiled_dlib"]
    return {"created_now": created, "setup_s": time.perf_counter() - t0, "compiled_dlib": compiled,
            "artifacts": artifacts, "built": sorted(set(built)),
            "versions": json.loads(info.stdout)}


def run_peer(paths: list[Path], procs: int, upsample: int, work: Path) -> dict[str, Any]:
    script = work / "peer_worker.py"
    script.write_text(PEER_WORKER)
    lst = work / "paths.json"
    lst.write_text(json.dumps([str(p) for p in paths]))
    r = subprocess.run([str(VENV / "bin" / "python"), str(script), str(lst), str(procs), str(upsample)],
                       capture_output=True, text=True, env={**os.environ, **ONE_THREAD})
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-3000:])
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["loadavg"] = bench.loadavg()
    return out


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, help="LFW folder [default: ../shared/datasets/lfw]")
    ap.add_argument("--limit", type=int, default=1000, help="images, spread evenly over LFW [1000]")
    ap.add_argument("--procs", type=int, default=2, help="the parallel case [2]")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; medians are reported [2]")
    ap.add_argument("--upsample", type=int, default=1, help="face_locations number_of_times_to_upsample [1 = default]")
    ap.add_argument("--quick", action="store_true", help="smoke-test sizes (20 images, 1 round)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "enroll.md",
                    help="the report goes in the 'peer' section of this file (kept when enroll.py regenerates it)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    if args.quick:
        args.limit, args.rounds = min(args.limit, 20), 1
    root = args.dataset or bench.lfw_dir()
    if root is None or not Path(root).is_dir():
        print("LFW not found (../shared/datasets/lfw or $FACEDB_DATASETS/lfw)", file=sys.stderr)
        return 2
    paths = bench.sample_images(bench.lfw_images(Path(root)), args.limit)
    pip_log: list[str] = []
    venv = ensure_venv(pip_log)
    log(f"peer venv ready ({venv['setup_s']:.0f} s): {venv['versions']}")
    res: dict[str, list[dict[str, Any]]] = {"facedb_1": [], "peer_1": [], f"facedb_{args.procs}": [],
                                            f"peer_{args.procs}": []}
    with tempfile.TemporaryDirectory(prefix="facedb-bench-peer-") as tmp:
        work = Path(tmp)
        for rnd in range(args.rounds):
            for procs in (1, args.procs):
                with bench_lock("peer"):
                    res[f"facedb_{procs}"].append(bench.model_limit(paths, procs))
                    log(f"round {rnd} facedb {procs}p: {res[f'facedb_{procs}'][-1]['images_per_s']:.2f} img/s")
                    res[f"peer_{procs}"].append(run_peer(paths, procs, args.upsample, work))
                    log(f"round {rnd} face_recognition {procs}p: {res[f'peer_{procs}'][-1]['images_per_s']:.2f} img/s")
    med = {k: median([r["images_per_s"] for r in v]) for k, v in res.items()}
    rel_argv = ["python", "scripts/bench/peer_face_recognition.py", *argv]
    lines = [bench.header("Peer: facedb vs face_recognition (dlib)", rel_argv, {
        "Data": f"{len(paths)} LFW images spread evenly over {root} (250x250 JPEG)",
        "Peer venv": f"{VENV}: " + ", ".join(f"{k} {v}" for k, v in venv["versions"].items())
                     + f"; dlib compiled from source: {'YES' if venv['compiled_dlib'] else 'no (dlib-bin wheel)'}",
    })]
    lines += ["", "### Result (images/s, decode + detect + embed, nothing stored; median of "
              f"{args.rounds} interleaved rounds)", "",
              "| processes | facedb (YuNet + SFace) | face_recognition (HOG + dlib ResNet) | facedb / face_recognition |",
              "| ---: | ---: | ---: | ---: |"]
    for procs in (1, args.procs):
        f, p = med[f"facedb_{procs}"], med[f"peer_{procs}"]
        runs_f = ", ".join(f"{r['images_per_s']:.1f}" for r in res[f"facedb_{procs}"])
        runs_p = ", ".join(f"{r['images_per_s']:.1f}" for r in res[f"peer_{procs}"])
        lines.append(f"| {procs} | **{f:.1f}** ({runs_f}) | **{p:.1f}** ({runs_p}) | **{f / p:.2f}x** |")
    f0, p0 = res[f"facedb_{args.procs}"][0], res[f"peer_{args.procs}"][0]
    lines += ["", "Ratios come from the same rounds on the same images. Scaling 1 -> "
              f"{args.procs} processes: facedb x{med[f'facedb_{args.procs}'] / med['facedb_1']:.2f}, "
              f"face_recognition x{med[f'peer_{args.procs}'] / med['peer_1']:.2f}. Share of the cores' time the "
              f"processes got (other jobs share the machine): facedb "
              f"{100 * median([r['cpu_share'] for r in res[f'facedb_{args.procs}']]):.0f} %, face_recognition "
              f"{100 * median([r['cpu_share'] for r in res[f'peer_{args.procs}']]):.0f} %.", "",
              "### What each found", "",
              "| library | images with a face | faces embedded |", "| --- | ---: | ---: |",
              f"| facedb sface | {f0['with_face']} / {f0['images']} | {f0['faces']} |",
              f"| face_recognition HOG (upsample {args.upsample}) | {p0['with_face']} / {p0['images']} | {p0['faces']} |",
              "", "Both sides embed every face they detect (facedb's enrollment embeds only the largest, which is "
              "cheaper still); they do not detect the same faces, so the per-image cost is what is compared.",
              "", "### Setup", "", f"Peer venv setup this run: {venv['setup_s']:.0f} s "
              f"({'created now' if venv['created_now'] else 'reused'}).", "", "```",
              f"{sys.executable} -m venv {VENV}",
              f"{VENV}/bin/python -m pip install --only-binary=:all: " + " ".join(f'"{p}"' for p in PINS),
              f"{VENV}/bin/python -m pip install face_recognition_models",
              f"{VENV}/bin/python -m pip install --no-deps --only-binary=:all: face_recognition", "```", ""]
    if venv.get("artifacts"):
        lines += ["Installed from: " + ", ".join(f"`{a}`" for a in venv["artifacts"]) + ". Built locally: "
                  + (", ".join(venv["built"]) or "nothing")
                  + " (face_recognition_models is a data-only sdist: building its wheel copies the model "
                  "files, nothing is compiled).", ""]
    text = "\n".join(lines).replace("\n# Peer:", "\n## Peer:", 1)
    if text.startswith("# Peer:"):
        text = "#" + text
    print(text)
    bench.replace_section(args.out, "peer", text)
    if args.json_out:
        args.json_out.write_text(json.dumps({"venv": venv, "runs": res, "medians": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
