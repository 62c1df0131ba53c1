"""Real face photos every test machine has: the sample images the insightface package ships.

``t1.jpg`` is a 1280x886 group photo of six people; the helpers here cut one crop per person
(``person1`` .. ``person6``, left to right) and derive further distinct files of each face.
Tests that need them skip with a clear reason when insightface (a test extra) is absent.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hostile import insightface_images_dir
from PIL import Image, ImageOps

SKIP_REASON = "insightface (test extra) is not installed: its sample photos are needed"


def insightface_photos() -> Path:
    """``insightface/data/images``; skips the calling test when it is not there."""
    d = insightface_images_dir()
    if d is None or not (d / "t1.jpg").is_file():
        pytest.skip(SKIP_REASON)
    return d


@dataclass(frozen=True)
class PersonCrop:
    name: str                                   # person1 .. person6, left to right
    image: Image.Image                          # the crop (RGB), face plus a margin
    bbox: tuple[float, float, float, float]     # the face box in t1.jpg


def t1_people(margin: float = 1.0, engine: Any = None) -> list[PersonCrop]:
    """The six faces of t1.jpg as crops with ``margin`` x the face size on each side."""
    from facedb.analysis import imaging
    from facedb.analysis.engines import load_engine

    src = insightface_photos() / "t1.jpg"
    faces = (engine or load_engine("sface")).analyze(imaging.load(src).pixels)
    assert len(faces) == 6, f"t1.jpg: {len(faces)} faces found, expected 6"
    faces.sort(key=lambda f: f.bbox[0])
    img = Image.open(src).convert("RGB")
    out = []
    for i, f in enumerate(faces, 1):
        x1, y1, x2, y2 = f.bbox
        w, h = (x2 - x1) * margin, (y2 - y1) * margin
        box = (int(max(0, x1 - w)), int(max(0, y1 - h)), int(min(img.width, x2 + w)), int(min(img.height, y2 + h)))
        out.append(PersonCrop(f"person{i}", img.crop(box), tuple(f.bbox)))
    return out


def save_crops(out: Path) -> dict[str, tuple[Path, tuple[float, float, float, float]]]:
    """person -> (one JPEG crop of that face, its box in t1.jpg)."""
    out.mkdir(parents=True, exist_ok=True)
    crops = {}
    for p in t1_people():
        path = out / f"{p.name}.jpg"
        p.image.save(path, quality=95)
        crops[p.name] = (path, p.bbox)
    return crops


def make_face_variants(out: Path, n_variants: int = 3) -> dict[str, list[Path]]:
    """person -> ``n_variants`` JPEG files of that face with different bytes (so different
    sha256): the crop, mirrored, scaled by 1.1, then the crop re-encoded at lower qualities."""
    out.mkdir(parents=True, exist_ok=True)
    people: dict[str, list[Path]] = {}
    for p in t1_people():
        crop = p.image
        paths = []
        for v in range(n_variants):
            if v == 1:
                pic = ImageOps.mirror(crop)
            elif v == 2:
                pic = crop.resize((int(crop.width * 1.1), int(crop.height * 1.1)))
            else:
                pic = crop
            path = out / f"{p.name}_v{v}.jpg"
            pic.save(path, quality=95 - v)
            paths.append(path)
        people[p.name] = paths
    return people
