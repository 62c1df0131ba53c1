"""The aligned-crop path rests on two facts, checked here on real faces.

1. OpenCV's ``FaceRecognizerSF.alignCrop`` (the aligner of the ``sface`` packs, and what made the
   LFW crop set of docs/benchmarks/aligned-crops.md) is the least-squares similarity warp of the
   five detected landmarks onto ``ARCFACE_TEMPLATE`` (InsightFace's ``norm_crop``, Umeyama): a
   crop from another ArcFace/SFace toolchain is on the template SFace expects, not on a
   near-miss of it (a template mismatch would cost accuracy on every dataset crop).
2. ``embed_aligned`` of the crop the pipeline aligns gives the very vector the photo path gives
   (``sface-flip``: the crop and its mirror), also after a lossless round trip through a PNG
   file: so a crop set is matched against photo-enrolled people exactly as the photos would
   be, and the report's "crops lose nothing" is a property of the code, not of a sample.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facedb.analysis import imaging
from facedb.analysis.aligned import ARCFACE_TEMPLATE, SIDE, embed_aligned
from facedb.analysis.engines import load_engine
from facedb.analysis.engines.sface import SFaceEngine


@pytest.fixture(scope="module")
def engine() -> SFaceEngine:
    e = load_engine("sface-flip")
    assert isinstance(e, SFaceEngine) and e.flip
    return e


def _largest(engine: SFaceEngine, path: Path) -> tuple[np.ndarray, np.ndarray]:
    bgr = imaging.load(path).pixels
    rows = engine.detect(bgr)
    assert len(rows), path
    return bgr, max(rows, key=lambda r: float(r[2] * r[3]))


def _umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity transform taking ``src`` points onto ``dst`` (Umeyama 1991)."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sv, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(cov) < 0:
        sign[1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = float((sv * sign).sum() / (s0 ** 2).sum() * len(src))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


def test_align_crop_is_the_arcface_template_warp(engine: SFaceEngine, face_photo_paths: list[Path]) -> None:
    import cv2

    template = np.asarray(ARCFACE_TEMPLATE, np.float64)
    for path in face_photo_paths:
        bgr, row = _largest(engine, path)
        ours = engine.align(bgr, row)
        theirs = cv2.warpAffine(bgr, _umeyama(np.asarray(row[4:14], np.float64).reshape(5, 2), template), (SIDE, SIDE))
        assert ours.shape == theirs.shape == (SIDE, SIDE, 3)
        # Same warp up to float rounding: at most a grey level here and there, never a shifted face.
        assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 0.05, path
        # And a template even one pixel off is far from that: the check can tell them apart.
        off = cv2.warpAffine(bgr, _umeyama(np.asarray(row[4:14], np.float64).reshape(5, 2), template + 1.0),
                             (SIDE, SIDE))
        assert np.abs(ours.astype(int) - off.astype(int)).mean() > 1.0, path


def test_crop_path_embeds_what_the_photo_path_embeds(engine: SFaceEngine, face_photo_paths: list[Path],
                                                     tmp_path: Path) -> None:
    for i, path in enumerate(face_photo_paths):
        bgr, row = _largest(engine, path)
        photo = max(engine.analyze(bgr), key=lambda f: f.area)
        crop_file = tmp_path / f"{i}.png"
        Image.fromarray(np.ascontiguousarray(engine.align(bgr, row)[:, :, ::-1])).save(crop_file)
        [face] = embed_aligned(engine, imaging.load(crop_file).pixels, crop_file.name)
        assert photo.embedding is not None and face.embedding is not None
        assert np.abs(photo.embedding - face.embedding).max() < 1e-5, path
        assert face.landmarks == list(ARCFACE_TEMPLATE)
