"""The sface embedder on onnxruntime: the shipped int8 file folded to float32 at load time.

Its vectors must equal OpenCV's ``FaceRecognizerSF.feature`` within the tolerance measured on
1,000 LFW faces (``EMBEDDER_MIN_COSINE``; see facedb/engine/sface.py), which is what lets both
embedders share one pack fingerprint; the loader must refuse other files clearly; and the backend
switch (argument, ``FACEDB_SFACE_BACKEND``) must pick the embedder it names.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from facedb.analysis import imaging
from facedb.analysis.engines import load_engine, sface, sface_ort
from facedb.analysis.engines.sface import (
    EMBEDDER_MAX_DISTANCE_SHIFT,
    EMBEDDER_MIN_COSINE,
    RECOGNISER_FILE,
    SFaceEngine,
    models_dir,
)
from facedb.analysis.engines.sface_ort import SFaceOrt, dequantize_blocked, fold_sface_model
from facedb.errors import DependencyError, ModelError


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def rec_bytes() -> bytes:
    return (models_dir() / RECOGNISER_FILE).read_bytes()


@pytest.fixture(scope="module")
def opencv_engine() -> SFaceEngine:
    return SFaceEngine(embedder="opencv")


@pytest.fixture(scope="module")
def ort_engine() -> SFaceEngine:
    return SFaceEngine(embedder="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def crops(face_photo_paths: list[Path], opencv_engine: SFaceEngine) -> list[np.ndarray]:
    """The aligned 112x112 crop of the largest face of every real photo."""
    out = []
    for p in face_photo_paths:
        bgr = imaging.load(p).pixels
        rows = opencv_engine.detect(bgr)
        assert len(rows) >= 1, p
        areas = [r[2] * r[3] for r in rows]
        out.append(opencv_engine.align(bgr, rows[int(np.argmax(areas))]))
    return out


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(_unit(a) * _unit(b), axis=1)


# -- the folded model gives OpenCV's vectors ----------------------------------------------------

def test_folded_model_matches_opencv_on_real_faces(crops: list[np.ndarray], opencv_engine: SFaceEngine,
                                                   rec_bytes: bytes) -> None:
    ort = SFaceOrt(rec_bytes, threads=1)
    f_cv = np.concatenate([np.asarray(opencv_engine._recogniser.feature(c), np.float32) for c in crops])
    f_ort = np.concatenate([ort.feature(c) for c in crops])
    assert f_ort.shape == (len(crops), 128) and f_ort.dtype == np.float32
    cos = _cosines(f_cv, f_ort)
    assert cos.min() >= EMBEDDER_MIN_COSINE, f"worst cosine {cos.min():.9f} over {len(crops)} faces"
    # face-to-face distances, what search compares with the threshold, move by next to nothing
    u_cv, u_ort = _unit(f_cv), _unit(f_ort)
    shift = np.abs((u_cv @ u_cv.T) - (u_ort @ u_ort.T)).max()
    assert shift <= EMBEDDER_MAX_DISTANCE_SHIFT
    # the raw norm (a face-quality signal) is kept too, not only the direction
    np.testing.assert_allclose(np.linalg.norm(f_ort, axis=1), np.linalg.norm(f_cv, axis=1), rtol=1e-4)


def test_a_wrong_fold_is_caught(crops: list[np.ndarray], opencv_engine: SFaceEngine, rec_bytes: bytes,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: dequantising without the zero points breaks it."""
    real = sface_ort.dequantize_blocked
    monkeypatch.setattr(sface_ort, "dequantize_blocked",
                        lambda q, s, z, axis=1, block_size=0: real(q, s, None, axis, block_size))
    bad = SFaceOrt(rec_bytes, threads=1)
    f_cv = np.concatenate([np.asarray(opencv_engine._recogniser.feature(c), np.float32) for c in crops[:3]])
    f_bad = np.concatenate([bad.feature(c) for c in crops[:3]])
    assert _cosines(f_cv, f_bad).min() < EMBEDDER_MIN_COSINE


def test_prelu_rewrite_and_batching_keep_the_values(crops: list[np.ndarray], rec_bytes: bytes) -> None:
    fast = SFaceOrt(rec_bytes, threads=1, max_batch=4)
    native = SFaceOrt(rec_bytes, threads=1, fast_prelu=False)
    assert fast.prelu_rewritten == 27 and native.prelu_rewritten == 0
    some = crops[:6]
    one_by_one = np.concatenate([fast.feature(c) for c in some])
    batched = fast.features(some)  # calls of 4 + 2: a symbolic batch dimension
    assert batched.shape == (len(some), 128)
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-4)
    assert _cosines(one_by_one, np.concatenate([native.feature(c) for c in some])).min() >= EMBEDDER_MIN_COSINE
    assert fast.features([]).shape == (0, 128)


def test_dequantize_blocked_semantics() -> None:
    q = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], np.int8)
    s = np.array([[0.5, 2.0], [1.0, 0.25]], np.float32)  # blocks of 3 along axis 1: [0..2], [3..4]
    z = np.array([[1, 0], [0, -1]], np.int8)
    got = dequantize_blocked(q, s, z, axis=1, block_size=3)
    want = np.array([[0.0, 0.5, 1.0, 8.0, 10.0], [-1.0, -2.0, -3.0, -0.75, -1.0]], np.float32)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(ModelError, match="blocked scale shape"):
        dequantize_blocked(q, s, z, axis=1, block_size=2)  # would need 3 blocks
    np.testing.assert_array_equal(dequantize_blocked(q[0], np.float32(2.0), np.int8(1), axis=0),
                                  np.array([0, 2, 4, 6, 8], np.float32))


def test_alignment_is_opencvs(face_photo_paths: list[Path], opencv_engine: SFaceEngine,
                              ort_engine: SFaceEngine) -> None:
    """The onnxruntime engine aligns with OpenCV's alignCrop (on a stand-in network): same crops."""
    assert ort_engine._recogniser is None and ort_engine._aligner is not None
    n = 0
    for p in face_photo_paths:
        bgr = imaging.load(p).pixels
        for row in opencv_engine.detect(bgr):
            assert np.array_equal(ort_engine.align(bgr, row), opencv_engine.align(bgr, row)), p
            n += 1
    assert n >= len(face_photo_paths)


# -- the loader refuses other files -------------------------------------------------------------

def test_loader_refuses_a_wrong_file(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ModelError, match="not an ONNX model"):
        fold_sface_model(b"this is not a model")
    with pytest.raises(ModelError, match="not an ONNX model"):
        SFaceOrt(b"\x00" * 64)
    # the YuNet detector is an int8 ONNX file of the same kind, but not a 112x112 -> 128 recogniser
    det = (models_dir() / sface.DETECTOR_FILE).read_bytes()
    with pytest.raises(ModelError, match="not the SFace recogniser|expected one output"):
        fold_sface_model(det)
    # a float model without quantised weights
    x = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 112, 112])
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["data"], ["out"])], "g", [x], [y]))
    with pytest.raises(ModelError, match="no constant DequantizeLinear"):
        fold_sface_model(plain.SerializeToString())
    # a tampered recogniser in a models folder is refused before anything runs
    bad = tmp_path / "models"
    bad.mkdir()
    (bad / sface.DETECTOR_FILE).write_bytes(det)
    (bad / RECOGNISER_FILE).write_bytes(b"\x08" + onnx.ModelProto().SerializeToString())
    with pytest.raises(ModelError, match="sha256"):
        SFaceEngine(bad, embedder="onnxruntime")


# -- the backend switch -------------------------------------------------------------------------

def test_backend_switch(monkeypatch: pytest.MonkeyPatch, face_photo: Path) -> None:
    monkeypatch.delenv(sface.BACKEND_ENV, raising=False)
    monkeypatch.delenv(sface_ort.THREADS_ENV, raising=False)
    assert sface.choose_embedder() == ("onnxruntime", False)
    e = SFaceEngine()
    assert e.embedder == "onnxruntime" and e._ort is not None
    monkeypatch.setenv(sface.BACKEND_ENV, "opencv")
    e = SFaceEngine()
    assert e.embedder == "opencv" and e._ort is None
    assert SFaceEngine(embedder="onnxruntime").embedder == "onnxruntime"  # the argument wins
    monkeypatch.setenv(sface.BACKEND_ENV, "tensorflow")
    with pytest.raises(ModelError, match="onnxruntime, opencv"):
        SFaceEngine()
    # load_engine honours the variable (its cache is keyed by it)
    monkeypatch.setenv(sface.BACKEND_ENV, "opencv")
    assert load_engine("sface").embedder == "opencv"
    monkeypatch.setenv(sface.BACKEND_ENV, "onnxruntime")
    eng = load_engine("sface")
    assert eng.embedder == "onnxruntime"
    monkeypatch.setenv(sface_ort.THREADS_ENV, "1")
    assert load_engine("sface")._ort.threads == 1
    # both embedders are one pack: same fingerprint, so a database built with either opens with both
    assert SFaceEngine(embedder="opencv").info == SFaceEngine(embedder="onnxruntime").info
    # and analyze() really runs the chosen library
    bgr = imaging.load(face_photo).pixels
    calls = []
    ort_eng = SFaceEngine(embedder="onnxruntime")
    real = ort_eng._ort.feature
    ort_eng._feature = lambda c: calls.append(1) or real(c)
    ort_eng.analyze(bgr)
    assert calls


def test_default_falls_back_to_opencv_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> None:
        raise DependencyError("onnxruntime is not installed or broken (test)")

    monkeypatch.setattr(sface_ort, "_import_onnx", missing)
    monkeypatch.delenv(sface.BACKEND_ENV, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        e = SFaceEngine()
    assert e.embedder == "opencv" and any("OpenCV's embedder" in str(w.message) for w in caught)
    with pytest.raises(DependencyError):
        SFaceEngine(embedder="onnxruntime")  # asked for explicitly: no silent fallback
    monkeypatch.setenv(sface.BACKEND_ENV, "onnxruntime")
    with pytest.raises(DependencyError):
        SFaceEngine()


def test_engines_agree_end_to_end(face_photo_paths: list[Path], opencv_engine: SFaceEngine,
                                  ort_engine: SFaceEngine) -> None:
    for p in face_photo_paths:
        bgr = imaging.load(p).pixels
        a, b = opencv_engine.analyze(bgr), ort_engine.analyze(bgr)
        assert [f.bbox for f in a] == [f.bbox for f in b]
        for fa, fb in zip(a, b):
            assert float(np.dot(fa.embedding, fb.embedding)) >= EMBEDDER_MIN_COSINE, p


def test_database_built_with_opencv_opens_with_onnxruntime(tmp_path: Path, face_photo_paths: list[Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from facedb import FaceDB

    people = face_photo_paths[:3]
    monkeypatch.setenv(sface.BACKEND_ENV, "opencv")
    db = FaceDB(home=tmp_path / "home", workers=1)
    try:
        for i, p in enumerate(people):
            db.enroll(f"person{i}", [p])
    finally:
        db.close()
    monkeypatch.setenv(sface.BACKEND_ENV, "onnxruntime")
    db = FaceDB(home=tmp_path / "home", workers=1)
    try:
        assert db.pack.engine.embedder == "onnxruntime"
        report = db.search(people, k=1)
        for i, res in enumerate(report.results):
            face = res.faces[0]
            assert face.identity == f"person{i}"
            assert face.matches[0].distance <= 1e-5
    finally:
        db.close()


def test_embedded_faces_carry_their_quality(group_photo: Path, opencv_engine: SFaceEngine,
                                            ort_engine: SFaceEngine) -> None:
    import cv2

    bgr = imaging.load(group_photo).pixels
    faces = ort_engine.analyze(bgr, max_faces=2)
    assert len(faces) == 6
    assert all(f.quality is None for f in faces[2:])  # detected, not embedded: no quality
    for f in faces[:2]:
        q = f.quality
        assert set(q) == {"det_score", "face_px", "eye_px", "blur", "raw_norm"}
        assert q["det_score"] == pytest.approx(f.score) and q["face_px"] == pytest.approx(f.area ** 0.5)
        assert 10 < q["eye_px"] < 200 and q["blur"] > 0 and 5 < q["raw_norm"] < 30
    # the same numbers from the crop itself, and from the OpenCV embedder
    row = next(r for r in ort_engine.detect(bgr) if abs(float(r[14]) - faces[0].score) < 1e-6)
    crop = ort_engine.align(bgr, row)
    assert faces[0].quality["raw_norm"] == pytest.approx(float(np.linalg.norm(ort_engine.features([crop]))), rel=1e-6)
    assert faces[0].quality["blur"] == pytest.approx(
        float(cv2.Laplacian(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var()))
    other = opencv_engine.analyze(bgr, max_faces=1)[0].quality
    for k, v in faces[0].quality.items():
        assert other[k] == pytest.approx(v, rel=1e-4), k


_LOAD_RSS_CHILD = r"""
import json, sys
from facedb.analysis.engines import memory
from facedb.analysis.engines.sface import SFaceEngine
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
if sys.argv[1] == "keep":
    memory.release_freed_memory = lambda: False  # the loader's call does nothing
    import facedb.analysis.engines.sface as sface_module
    sface_module.release_freed_memory = memory.release_freed_memory
before = rss()
SFaceEngine(embedder="onnxruntime", threads=1)
print(json.dumps({"growth_mb": rss() - before}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc (Linux)")
def test_loading_the_pack_gives_the_freed_heap_back() -> None:
    """Folding the weights and building the onnxruntime session leaves freed heap that glibc
    would keep in every process (server and each worker): measured 112 MB of growth without the
    release in most runs (up to 253), 75 MB with it; 118-203 and 80-83 MB on an Intel Xeon.
    Fresh processes, the same load, compared by the least growth of each: one load with the
    release grew by 153 MB once, in a CI run, so a pair whose release run is such an outlier is
    followed by another (at most 3 pairs)."""
    import json
    import subprocess
    import sys

    from facedb.analysis.engines import memory

    if not memory.release_freed_memory():
        pytest.skip("this C library has no malloc_trim (not glibc): nothing to release")
    growth: dict[str, list[float]] = {"release": [], "keep": []}
    for _ in range(3):
        for mode in ("release", "keep"):
            r = subprocess.run([sys.executable, "-c", _LOAD_RSS_CHILD, mode], capture_output=True, text=True,
                               timeout=300)
            assert r.returncode == 0, r.stderr[-2000:]
            growth[mode].append(json.loads(r.stdout.strip().splitlines()[-1])["growth_mb"])
        if min(growth["release"]) < min(growth["keep"]) - 15:
            break
    assert min(growth["release"]) < min(growth["keep"]) - 15, growth
