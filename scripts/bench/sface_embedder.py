#!/usr/bin/env python
"""SFace embedder: OpenCV ``FaceRecognizerSF.feature`` vs onnxruntime on the folded model.

On real LFW faces (YuNet detection + OpenCV ``alignCrop``, the largest face of each image), one
thread for both libraries (run it under ``taskset -c 0`` to pin it to one core as well):

* **agreement** on ``--agree`` faces: cosine between the two backends' vectors of the same crop
  (min / median), max |difference| of unit-vector components, and the largest change of any
  face-to-face cosine distance between the two backends (all pairs of those faces);
* **speed** on ``--time`` faces, ``--rounds`` rounds: per face, OpenCV and ORT are timed
  back to back (order alternating), so the ratio comes from the same moments; medians;
* **batching**: ORT ms per face at batch sizes ``--batches`` (one call per batch);
* **flip TTA** cost: a second single call on the mirrored crop, and one batch-2 call
  ``[crop, mirrored]`` instead of one call;
* optionally (``--unfolded N``) ORT on the file with only the stale graph inputs dropped;
* load: engine construction time per embedder, and the import time of onnx / onnxruntime in
  fresh processes.

Usage::

    taskset -c 0 python scripts/bench/sface_embedder.py --json /tmp/sface_embedder.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from facedb.evaluation import bench as common
from facedb.evaluation import lfw

DEFAULT_LFW = lfw.find_lfw()


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def import_seconds(module: str, runs: int = 5) -> float:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    out = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
           for _ in range(runs)]
    return statistics.median(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    ap.add_argument("--agree", type=int, default=1000, help="faces for the agreement check")
    ap.add_argument("--time", type=int, default=300, help="faces for the timing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,2,4,8,16")
    ap.add_argument("--unfolded", type=int, default=0, help="faces for ORT on the unfolded file (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    from facedb.analysis import imaging
    from facedb.analysis.engines.sface import RECOGNISER_FILE, SFaceEngine, models_dir
    from facedb.analysis.engines.sface_ort import SFaceOrt

    R: dict[str, Any] = {"command": common.command_line(), "machine": common.machine_info(),
                         "versions": common.library_versions("opencv-python-headless", "onnxruntime", "onnx", "numpy")}
    with common.bench_lock(label="sface_embedder"):
        t0 = time.perf_counter()
        eng_cv = SFaceEngine(embedder="opencv")
        t1 = time.perf_counter()
        eng_ort = SFaceEngine(embedder="onnxruntime", threads=1)
        t2 = time.perf_counter()
        R["load_seconds"] = {"engine_opencv": t1 - t0, "engine_onnxruntime": t2 - t1}
        rec_bytes = (models_dir() / RECOGNISER_FILE).read_bytes()
        ort = SFaceOrt(rec_bytes, threads=1, max_batch=64)
        ort_native = SFaceOrt(rec_bytes, threads=1, fast_prelu=False)  # folded weights, onnxruntime's PRelu
        R["prelu_rewritten"] = ort.prelu_rewritten
        cvrec = eng_cv._recogniser

        rel = lfw.list_images(lfw.require_lfw(a.lfw))
        order = np.random.default_rng(a.seed).permutation(len(rel))
        need = max(a.agree, a.time)
        crops: list[np.ndarray] = []
        names: list[str] = []
        for i in order:
            if len(crops) >= need:
                break
            bgr = imaging.load(a.lfw / rel[i]).pixels
            faces = eng_cv.detect(bgr)
            if len(faces) == 0:
                continue
            # the largest visible face, as SFaceEngine.analyze embeds
            h, w = bgr.shape[:2]
            areas = [max(0.0, min(w, r[0] + r[2]) - max(0, r[0])) * max(0.0, min(h, r[1] + r[3]) - max(0, r[1]))
                     for r in faces]
            crops.append(eng_cv.align(bgr, faces[int(np.argmax(areas))]))
            names.append(rel[i])
        print(f"{len(crops)} aligned LFW faces", file=sys.stderr, flush=True)

        # -- agreement
        n_ag = min(a.agree, len(crops))
        f_cv = np.concatenate([np.asarray(cvrec.feature(c), np.float32).reshape(1, -1) for c in crops[:n_ag]])
        f_ort = np.concatenate([ort.feature(c).reshape(1, -1) for c in crops[:n_ag]])
        f_ort_b = ort.features(crops[:n_ag])
        f_eng = np.concatenate([eng_ort.features([c]) for c in crops[:n_ag]])
        u_cv, u_ort, u_b = unit(f_cv), unit(f_ort), unit(f_ort_b)
        cos = np.sum(u_cv * u_ort, axis=1)
        cos_b = np.sum(u_cv * u_b, axis=1)
        d_cv = 1.0 - u_cv @ u_cv.T
        d_ort = 1.0 - u_ort @ u_ort.T
        shift = np.abs(d_cv - d_ort)
        R["agreement"] = {
            "faces": n_ag, "cos_min": float(cos.min()), "cos_median": float(np.median(cos)),
            "one_minus_cos_max": float((1 - cos).max()),
            "worst_face": names[int(np.argmin(cos))],
            "batched64_cos_min": float(cos_b.min()),
            "max_abs_component_diff_unit": float(np.abs(u_cv - u_ort).max()),
            "max_pair_distance_shift": float(shift.max()),
            "pairs": int(n_ag * (n_ag - 1) // 2),
            "raw_norm_ratio_min": float((np.linalg.norm(f_ort, axis=1) / np.linalg.norm(f_cv, axis=1)).min()),
            "raw_norm_ratio_max": float((np.linalg.norm(f_ort, axis=1) / np.linalg.norm(f_cv, axis=1)).max()),
            "engine_ort_identical_to_sfaceort": bool(np.array_equal(f_eng, f_ort)),
            "raw_norm_median": float(np.median(np.linalg.norm(f_cv, axis=1))),
        }
        print(json.dumps(R["agreement"]), file=sys.stderr, flush=True)

        # -- speed, per face, back to back
        tcrops = crops[:a.time]
        fns = {"opencv": cvrec.feature, "ort": ort.feature, "ort_native_prelu": ort_native.feature}
        for c in tcrops[:20]:  # warm-up
            for fn in fns.values():
                fn(c)
        times: dict[str, list[float]] = {k: [] for k in fns}
        t_flip_single: list[float] = []
        t_flip_pair: list[float] = []
        keys = list(fns)
        for rnd in range(a.rounds):
            for j, c in enumerate(tcrops):
                fl = cv2.flip(c, 1)
                k0 = (j + rnd) % len(keys)  # rotate the order
                for k in keys[k0:] + keys[:k0]:
                    s0 = time.perf_counter()
                    fns[k](c)
                    s1 = time.perf_counter()
                    times[k].append(s1 - s0)
                s0 = time.perf_counter()
                ort.feature(fl)
                s1 = time.perf_counter()
                ort.run_blob(ort.blob([c, fl]))
                s2 = time.perf_counter()
                t_flip_single.append(s1 - s0)
                t_flip_pair.append(s2 - s1)
        tc, to = np.array(times["opencv"]) * 1000, np.array(times["ort"]) * 1000
        tn = np.array(times["ort_native_prelu"]) * 1000
        R["speed"] = {
            "faces": len(tcrops), "rounds": a.rounds,
            "opencv_ms_median": float(np.median(tc)), "ort_ms_median": float(np.median(to)),
            "ort_native_prelu_ms_median": float(np.median(tn)),
            "ratio_of_medians": float(np.median(tc) / np.median(to)),
            "ratio_of_medians_native_prelu": float(np.median(tc) / np.median(tn)),
            "median_of_per_face_ratio": float(np.median(tc / to)),
            "opencv_ms_p90": float(np.percentile(tc, 90)), "ort_ms_p90": float(np.percentile(to, 90)),
            "ort_flipped_single_call_ms_median": float(np.median(np.array(t_flip_single) * 1000)),
            "ort_pair_batch2_call_ms_median": float(np.median(np.array(t_flip_pair) * 1000)),
        }
        print(json.dumps(R["speed"]), file=sys.stderr, flush=True)

        # -- batching: every batch size on the same group of faces, back to back (order rotating)
        bs = [int(x) for x in a.batches.split(",") if x]
        group = max(bs)
        per_face: dict[int, list[float]] = {b: [] for b in bs}
        n_groups = 0
        for rnd in range(a.rounds):
            for gi, lo in enumerate(range(0, len(tcrops) - group + 1, group)):
                blobs = {b: [ort.blob(tcrops[lo + j:lo + j + b]) for j in range(0, group, b)] for b in bs}
                k0 = (gi + rnd) % len(bs)
                for b in bs[k0:] + bs[:k0]:
                    s0 = time.perf_counter()
                    for blob in blobs[b]:
                        ort.run_blob(blob)
                    per_face[b].append((time.perf_counter() - s0) / group)
                n_groups += 1
        b1 = np.array(per_face[bs[0]])
        R["batching"] = {str(b): {"ms_per_face_median": float(np.median(per_face[b]) * 1000),
                                  f"median_ratio_to_batch{bs[0]}": float(np.median(np.array(per_face[b]) / b1)),
                                  "groups": n_groups, "faces_per_group": group} for b in bs}
        print(json.dumps(R["batching"]), file=sys.stderr, flush=True)

        # -- unfolded
        if a.unfolded:
            import onnx
            import onnxruntime as rt

            m = onnx.load_model_from_string(rec_bytes)
            inits = {t.name for t in m.graph.initializer}
            keep = [i for i in m.graph.input if i.name not in inits and i.name == "data"]
            del m.graph.input[:]
            m.graph.input.extend(keep)
            so = rt.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            try:
                s = rt.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
                tt, tf, cs = [], [], []
                for c in tcrops[:a.unfolded]:  # unfolded and folded back to back
                    blob = ort.blob([c])
                    s0 = time.perf_counter()
                    y = s.run(None, {"data": blob})[0]
                    s1 = time.perf_counter()
                    y2 = ort.run_blob(blob)
                    s2 = time.perf_counter()
                    tt.append(s1 - s0)
                    tf.append(s2 - s1)
                    cs.append(float(np.sum(unit(y) * unit(y2))))
                R["unfolded"] = {"faces": len(tt), "ms_median": float(np.median(tt) * 1000),
                                 "folded_ms_median_same_loop": float(np.median(tf) * 1000),
                                 "cos_to_folded_min": min(cs)}
            except Exception as exc:
                R["unfolded"] = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(R["unfolded"]), file=sys.stderr, flush=True)

    R["import_seconds"] = {m: import_seconds(m) for m in ("onnx", "onnxruntime", "cv2")}
    R["load_avg_end"] = common.machine_info().get("load_avg_1_5_15")
    print(json.dumps(R, indent=1))
    if a.json:
        a.json.write_text(json.dumps(R, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
