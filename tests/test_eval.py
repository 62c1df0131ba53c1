"""`facedb eval`: complete, sane output on a small labelled set (a smoke run, not a timing test)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from dbtools import run_cli


def _check_report(rep: dict, n_images: int) -> None:
    assert rep["images"] == n_images and rep["faces_found"] <= n_images
    for key in ("tutorial", "leave_one_out", "verification", "open_set", "failures", "seconds_per_image"):
        assert key in rep, key
    for k in (1, 2):
        assert 0.0 <= rep["tutorial"][f"precision_at_{k}"] <= 1.0
    v = rep["verification"]
    for key in ("tar_at_far_0.001", "tar_at_far_0.01", "eer", "eer_threshold", "at_threshold"):
        assert key in v, key
    assert 0 <= v["eer"] <= 1 and v["genuine_pairs"] > 0 and v["impostor_pairs"] > 0
    rows = rep["open_set"]["rows"]
    assert rows and all(0 <= r["at_threshold"]["fnir"] <= 1 and 0 <= r["at_threshold"]["fpir"] <= 1 for r in rows)
    assert all(r["at_fpir_0.01"]["fpir"] <= 0.01 for r in rows)


def test_eval_on_crops_without_datasets(tmp_path: Path, group_photo: Path) -> None:
    """Six people from the group photo, two views each (crop and its mirror image)."""
    from facedb import imaging
    from facedb.engine import load_engine

    faces = load_engine("sface").analyze(imaging.load(group_photo).pixels)
    img = Image.open(group_photo).convert("RGB")
    root = tmp_path / "people"
    for i, f in enumerate(sorted(faces, key=lambda f: f.bbox[0])):
        x1, y1, x2, y2 = f.bbox
        w, h = x2 - x1, y2 - y1
        crop = img.crop((int(max(0, x1 - w)), int(max(0, y1 - h)), int(min(img.width, x2 + w)),
                         int(min(img.height, y2 + h))))
        (root / f"p{i}").mkdir(parents=True)
        crop.save(root / f"p{i}" / "a.png")
        ImageOps.mirror(crop).save(root / f"p{i}" / "b.png")
    home = tmp_path / "home"
    code, out, err = run_cli(home, "eval", str(root), "--json", "--splits", "3", "--plot", str(tmp_path / "p.png"))
    assert code == 0, err
    rep = json.loads(out)
    _check_report(rep, 12)
    assert rep["subjects"] == 6 and rep["faces_found"] == 12
    assert rep["tutorial"]["precision_at_1"] == 1.0
    assert rep["tutorial"]["database_crosscheck"]["reference_agrees"] == 6
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert not home.exists(), "eval must not create or touch the user's database"


@pytest.mark.dataset
def test_eval_yale_reproduces_readme_numbers(tmp_path: Path, yale_dir: Path) -> None:
    code, out, err = run_cli(tmp_path / "home", "eval", str(yale_dir), "--name-from", "prefix", "--json")
    assert code == 0, err
    rep = json.loads(out)
    _check_report(rep, 164)
    assert rep["faces_found"] == 164 and rep["subjects"] == 15
    assert rep["tutorial"]["precision_at_2"] >= 0.98
    assert rep["leave_one_out"]["rank1_accuracy"] >= 0.99
    code, out, _ = run_cli(tmp_path / "home", "eval", str(yale_dir), "--name-from", "prefix", "--limit", "30")
    assert code == 0 and "precision@2" in out and "open-set identification" in out
