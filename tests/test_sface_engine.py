"""The sface engine's "largest face" is the largest *visible* face, and it is the embedded one."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import find_datasets_dir
from facephotos import insightface_photos

from facedb.analysis import imaging
from facedb.analysis.engines import load_engine

#: LFW photos where a face cut by the image border has the largest detector box but not the
#: largest visible area (found by scanning all 7,701 LFW images; `facedb import` of LFW
#: crashed on them when the embedded face and the reported first face differed).
LFW_BORDER_CASES = ("Gwyneth_Paltrow/Gwyneth_Paltrow_0003.jpg", "Laura_Morante/Laura_Morante_0001.jpg",
                    "Paula_Locke/Paula_Locke_0001.jpg")


def test_face_cut_by_the_border_does_not_take_the_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    eng = load_engine("sface")
    bgr = imaging.load(insightface_photos() / "t1.jpg").pixels
    h, w = bgr.shape[:2]
    rows = eng.detect(bgr)
    assert len(rows) == 6
    # A detection hanging off the right edge: its box is the largest, its visible part tiny.
    ghost = rows[0].copy()
    ghost[0], ghost[1], ghost[2], ghost[3] = w - 2, 100, 400, 400
    ghost[4::2][:5] = w - 1
    monkeypatch.setattr(eng, "detect", lambda img: np.vstack([ghost[None, :], rows]))
    faces = eng.analyze(bgr, max_faces=1)
    assert len(faces) == 7
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert faces[-1].bbox[0] == w - 2 and faces[0].embedding is not None
    assert all(f.embedding is None for f in faces[1:])
    every = eng.analyze(bgr)
    assert float(np.dot(every[0].embedding, faces[0].embedding)) > 0.999


@pytest.mark.dataset
@pytest.mark.parametrize("rel", LFW_BORDER_CASES)
def test_lfw_border_cases_embed_the_reported_largest_face(rel: str) -> None:
    root = find_datasets_dir()
    assert root is not None
    path = root / "lfw" / rel
    if not path.is_file():
        pytest.skip(f"{path} not in this copy of LFW")
    eng = load_engine("sface")
    bgr = imaging.load(path).pixels
    one, every = eng.analyze(bgr, max_faces=1), eng.analyze(bgr)
    assert len(one) >= 2 and one[0].embedding is not None
    assert [f.bbox for f in one] == [f.bbox for f in every]
    assert float(np.dot(one[0].embedding, every[0].embedding)) > 0.999
