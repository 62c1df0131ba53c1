"""WIRING tests for the InsightFace packs (``facedb.analysis.engines.insightface_pack``).

These tests check WIRING, NOT ACCURACY.  No real InsightFace weights are used and nothing is
downloaded: tiny fake ONNX models are built with the ``onnx`` package in a temp dir.

* The fake SCRFD-style detector has insightface's 9-output layout for 3 strides (8, 16, 32) with
  2 anchors per location and 5 keypoints: ``score_{8,16,32}`` (N x 1), ``bbox_{8,16,32}``
  (N x 4), ``kps_{8,16,32}`` (N x 10), dynamic input size.  Only stride 32 can fire: the
  score of a 32x32 cell is ReLU(mean of the normalised pixels), so a bright square that fills
  exactly one cell on a black background scores ~1 (white) or ~0.75 (light grey), and every
  other cell scores 0.  Box/keypoint distances are ``(1.5 - score) * constants``, so the
  dimmer square gets the *larger* box (this lets the largest-first ordering be checked against
  insightface's score ordering).  Keypoints are the ArcFace template scaled into the box.
* The fake ArcFace-style recogniser takes 1x3x112x112 and returns a 512-d (or other) vector:
  a fixed random linear projection of the 8x8-average-pooled crop, so different crops give
  different embeddings.

What is checked: packs load through ``load_engine("buffalo_s", models_dir=root)`` and through a
directory path; ``analyze()`` returns ``Face`` objects with unit-norm float32 embeddings, bboxes
where the fake detector must put them, and largest-first order; ``PackInfo`` dim/fingerprint;
ModelError (naming the folder looked in) for a missing pack, an empty folder, a nested folder,
a detector-only folder, a recogniser-only folder and a corrupt file; DependencyError when
insightface is missing; no network access and no insightface import at facedb import time.
"""
from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("insightface")


import facedb.analysis.engines as fe  # noqa: E402
from facedb.analysis.engines import load_engine  # noqa: E402
from facedb.analysis.engines.base import Face  # noqa: E402
from facedb.errors import DependencyError, ModelError  # noqa: E402
from facedb.evaluation.fakepacks import BOX_HALF, make_fake_arcface, make_fake_scrfd  # noqa: E402


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fake_models")
    return {
        "det": make_fake_scrfd(d / "det_500m.onnx"),
        "rec": make_fake_arcface(d / "w600k_mbf.onnx"),
        "rec_other": make_fake_arcface(d / "other" / "w600k_mbf.onnx", seed=1),
        "rec_256": make_fake_arcface(d / "dim256" / "w600k_mbf.onnx", dim=256),
    }


def _lay_out(folder: Path, *files: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


@pytest.fixture(autouse=True)
def no_network_no_cache(monkeypatch):
    """Fail loudly on any download attempt or socket connection; start with an empty engine cache."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    import insightface.model_zoo.model_zoo as mz
    import insightface.utils.storage as storage

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)  # DNS lookups happen before connect()
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(storage, "download_file", refuse)
    monkeypatch.setattr(mz, "download_onnx", refuse)
    fe.forget_engines()
    yield
    fe.forget_engines()


def _expected_fingerprint(*files: Path) -> str:
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(files, key=lambda p: p.name)]
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _scene(squares: list[tuple[int, int, int]]) -> np.ndarray:
    """640x480 black BGR image with bright squares filling stride-32 cells (cx, cy, value)."""
    img = np.zeros((480, 640, 3), np.uint8)
    for cx, cy, value in squares:
        img[cy * 32:(cy + 1) * 32, cx * 32:(cx + 1) * 32] = value
    return img


def _expected_box(cx: int, cy: int, value: int) -> tuple[float, float, float, float]:
    """Where the fake detector must put the box: centred on the cell's anchor (its top-left)."""
    score = (value - 127.5) / 128.0
    half = (1.5 - score) * BOX_HALF * 32
    ax, ay = cx * 32, cy * 32
    return (ax - half, ay - half, ax + half, ay + half)


# -- loading ----------------------------------------------------------------------------------

def test_wiring_named_pack_loads_from_models_dir(tmp_path, model_files):
    pack = _lay_out(tmp_path / "models" / "buffalo_s", model_files["det"], model_files["rec"])
    engine = load_engine("buffalo_s", models_dir=tmp_path)
    assert engine.info.name == "buffalo_s"
    assert engine.info.dim == 512
    assert engine.info.threshold == pytest.approx(0.6)
    assert engine.info.fingerprint == _expected_fingerprint(pack / "det_500m.onnx", pack / "w600k_mbf.onnx")
    assert load_engine("buffalo_s", models_dir=tmp_path) is engine  # cached per (name, models_dir)


def test_wiring_directory_path_loads_and_name_reloads(tmp_path, model_files):
    folder = _lay_out(tmp_path / "my_models", model_files["det"], model_files["rec"])
    engine = load_engine(str(folder))
    assert engine.info.dim == 512
    assert Path(engine.info.name) == folder.absolute()
    assert load_engine(engine.info.name).info == engine.info  # the recorded name can be loaded again


def test_wiring_dim_is_read_from_the_recogniser(tmp_path, model_files):
    _lay_out(tmp_path / "models" / "buffalo_l", model_files["det"], model_files["rec_256"])
    engine = load_engine("buffalo_l", models_dir=tmp_path)
    assert engine.info.dim == 256
    faces = engine.analyze(_scene([(10, 7, 255)]))
    assert faces and faces[0].embedding.shape == (256,)


def test_wiring_fingerprint_changes_with_weights_but_not_with_unused_files(tmp_path, model_files):
    a = load_engine(str(_lay_out(tmp_path / "a", model_files["det"], model_files["rec"]))).info
    b = load_engine(str(_lay_out(tmp_path / "b", model_files["det"], model_files["rec_other"]))).info
    folder_c = _lay_out(tmp_path / "c", model_files["det"], model_files["rec"])
    (folder_c / "notes.txt").write_text("not a model")
    c = load_engine(str(folder_c)).info
    assert a.fingerprint != b.fingerprint
    assert a.fingerprint == c.fingerprint
    assert len(a.fingerprint) == 64


# -- analyze ----------------------------------------------------------------------------------

@pytest.fixture()
def engine(tmp_path, model_files):
    _lay_out(tmp_path / "models" / "buffalo_s", model_files["det"], model_files["rec"])
    return load_engine("buffalo_s", models_dir=tmp_path)


def test_wiring_analyze_returns_unit_norm_faces_where_fake_detector_fires(engine):
    faces = engine.analyze(_scene([(10, 7, 255)]))
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face)
    assert face.embedding.dtype == np.float32 and face.embedding.shape == (512,)
    assert float(np.linalg.norm(face.embedding)) == pytest.approx(1.0, abs=1e-5)
    assert face.score == pytest.approx((255 - 127.5) / 128.0, abs=1e-3)
    assert face.bbox == pytest.approx(_expected_box(10, 7, 255), abs=1.0)
    x1, y1, x2, y2 = face.bbox
    assert len(face.landmarks) == 5
    for px, py in face.landmarks:
        assert x1 <= px <= x2 and y1 <= py <= y2
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    assert lx < rx and abs(ly - ry) < 2  # eyes: left of right, level


def test_wiring_analyze_no_face_on_blank_image(engine):
    assert engine.analyze(np.zeros((480, 640, 3), np.uint8)) == []
    assert engine.analyze(np.full((480, 640, 3), 128, np.uint8)) == []


def test_wiring_analyze_orders_largest_first_and_embeds_each_face(engine):
    # The white square scores higher (insightface's order) but the grey one gets the larger box.
    faces = engine.analyze(_scene([(4, 4, 255), (14, 9, 223)]))
    assert len(faces) == 2
    assert faces[0].area > faces[1].area
    assert faces[0].bbox == pytest.approx(_expected_box(14, 9, 223), abs=1.0)
    assert faces[1].bbox == pytest.approx(_expected_box(4, 4, 255), abs=1.0)
    assert faces[0].score < faces[1].score
    cos = float(np.dot(faces[0].embedding, faces[1].embedding))
    assert cos < 0.999  # different crops -> different embeddings


def test_wiring_analyze_bbox_clipped_to_image_and_scaled_images(engine):
    # A square in the top-left cell: the raw box starts at negative coordinates.
    face = engine.analyze(_scene([(0, 0, 255)]))[0]
    assert face.bbox[0] == 0.0 and face.bbox[1] == 0.0
    # ... and a grey (larger-box) square in the bottom-right cell: the raw box ends past the image.
    assert _expected_box(19, 14, 223)[2] > 640 and _expected_box(19, 14, 223)[3] > 480
    face = engine.analyze(_scene([(19, 14, 223)]))[0]
    assert face.bbox[2] == 640.0 and face.bbox[3] == 480.0
    assert face.bbox[0] == pytest.approx(_expected_box(19, 14, 223)[0], abs=1.0)
    # A 1280x960 image is shrunk by 2 for detection; boxes come back in full-image pixels.
    big = np.zeros((960, 1280, 3), np.uint8)
    big[14 * 32:16 * 32, 20 * 32:22 * 32] = 255  # covers stride-32 cell (10, 7) after halving
    faces = engine.analyze(big)
    assert len(faces) == 1
    assert faces[0].bbox == pytest.approx(tuple(2 * v for v in _expected_box(10, 7, 255)), abs=2.0)


def test_wiring_analyze_accepts_gray_and_bgra_like_bgr(engine):
    bgr = _scene([(10, 7, 255)])
    ref = engine.analyze(bgr)[0]
    gray = engine.analyze(bgr[:, :, 0].copy())
    bgra = engine.analyze(np.dstack([bgr, np.full(bgr.shape[:2], 255, np.uint8)]))
    for faces in (gray, bgra):
        assert len(faces) == 1
        assert faces[0].bbox == pytest.approx(ref.bbox)
        assert np.allclose(faces[0].embedding, ref.embedding, atol=1e-6)


def test_wiring_analyze_emits_no_warnings(engine):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(engine.analyze(_scene([(10, 7, 255)]))) == 1


def test_wiring_same_image_same_embedding(engine):
    img = _scene([(10, 7, 255)])
    a, b = engine.analyze(img)[0], engine.analyze(img.copy())[0]
    assert np.array_equal(a.embedding, b.embedding)


# -- errors -----------------------------------------------------------------------------------

def test_wiring_missing_pack_names_where_it_looked(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_engine("buffalo_l", models_dir=tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "models" / "buffalo_l") in msg
    assert "buffalo_l.zip" in msg and "non-commercial" in msg


def test_wiring_missing_pack_hints_at_pack_outside_models_subfolder(tmp_path, model_files):
    _lay_out(tmp_path / "buffalo_l", model_files["det"], model_files["rec"])
    with pytest.raises(ModelError, match="'models' subfolder"):
        load_engine("buffalo_l", models_dir=tmp_path)


def test_wiring_models_dir_pointing_at_the_pack_itself_gets_a_hint(tmp_path, model_files):
    folder = _lay_out(tmp_path / "buffalo_s_files", model_files["det"], model_files["rec"])
    with pytest.raises(ModelError) as exc:
        load_engine("buffalo_s", models_dir=folder)
    assert str(folder / "models" / "buffalo_s") in str(exc.value)
    assert "itself holds .onnx files" in str(exc.value)


def test_wiring_empty_pack_dir(tmp_path):
    (tmp_path / "models" / "antelopev2").mkdir(parents=True)
    with pytest.raises(ModelError) as exc:
        load_engine("antelopev2", models_dir=tmp_path)
    assert str(tmp_path / "models" / "antelopev2") in str(exc.value)
    assert "no .onnx files" in str(exc.value)


def test_wiring_nested_pack_dir(tmp_path, model_files):
    nested = _lay_out(tmp_path / "models" / "buffalo_l" / "buffalo_l", model_files["det"], model_files["rec"])
    with pytest.raises(ModelError) as exc:
        load_engine("buffalo_l", models_dir=tmp_path)
    assert str(nested) in str(exc.value)
    assert "too deep" in str(exc.value)


def test_wiring_detector_only(tmp_path, model_files):
    folder = _lay_out(tmp_path / "models" / "buffalo_s", model_files["det"])
    with pytest.raises(ModelError) as exc:
        load_engine("buffalo_s", models_dir=tmp_path)
    assert str(folder) in str(exc.value)
    assert "no face recognition model" in str(exc.value)


def test_wiring_recogniser_only_directory(tmp_path, model_files):
    folder = _lay_out(tmp_path / "rec_only", model_files["rec"])
    with pytest.raises(ModelError) as exc:
        load_engine(str(folder))
    assert str(folder) in str(exc.value)
    assert "no face detection model" in str(exc.value)


def test_wiring_missing_directory_path(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_engine(str(tmp_path / "nope"))
    assert str(tmp_path / "nope") in str(exc.value)


def test_wiring_corrupt_onnx_is_model_error(tmp_path, model_files):
    folder = _lay_out(tmp_path / "models" / "buffalo_s", model_files["det"])
    (folder / "w600k_mbf.onnx").write_bytes(model_files["rec"].read_bytes()[:200])  # truncated download
    with pytest.raises(ModelError) as exc:
        load_engine("buffalo_s", models_dir=tmp_path)
    assert str(folder / "w600k_mbf.onnx") in str(exc.value)


def test_wiring_missing_insightface_is_dependency_error(tmp_path, model_files, monkeypatch):
    _lay_out(tmp_path / "models" / "buffalo_s", model_files["det"], model_files["rec"])
    for mod in [m for m in sys.modules if m == "insightface" or m.startswith("insightface.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "insightface", None)  # makes `import insightface` fail
    with pytest.raises(DependencyError, match=r"facedb-service\[insightface\]"):
        load_engine("buffalo_s", models_dir=tmp_path)


def test_wiring_packs_registered_and_insightface_not_imported_eagerly():
    assert {"buffalo_l", "buffalo_s", "antelopev2"} <= set(fe.known_packs())
    code = ("import sys, facedb.analysis.engines as fe; fe.known_packs(); "
            "import facedb.analysis.engines.insightface_pack; "
            "assert 'insightface' not in sys.modules, 'insightface imported eagerly'; "
            "assert 'onnxruntime' not in sys.modules, 'onnxruntime imported eagerly'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert proc.returncode == 0, proc.stderr
