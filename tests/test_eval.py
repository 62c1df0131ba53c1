"""`facedb eval`: complete, sane output on a small labelled set (a smoke run, not a timing test)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dbtools import run_cli
from PIL import Image, ImageOps


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
    # the scoring rule in force and both rules, with and without the enrollment quality floor
    o = rep["open_set"]
    assert rep["scoring"] == o["scoring"] and o["scoring"] in ("template", "best")
    for r in rows:
        assert set(r["by_scoring"]) == {"template", "best"} and r["scoring"] == o["scoring"]
        assert r["at_threshold"] == r["by_scoring"][o["scoring"]]["at_threshold"]
        if o["quality_floor"]:
            qf = r["quality_floor"]
            assert 0 <= qf["gallery_images_below_floor"] <= r["gallery_images"]
            assert 0 <= qf["subjects_left_out"] <= r["gallery_subjects"]


def test_eval_on_crops_without_datasets(tmp_path: Path, group_photo: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    """Six people from the group photo, two views each (crop and its mirror image)."""
    from facedb.analysis import imaging
    from facedb.analysis.engines import load_engine

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
    assert rep["open_set"]["quality_floor"] == {"eye_px": 12.0, "blur": 10.0, "raw_norm": 7.0}  # the default
    assert not home.exists(), "eval must not create or touch the user's database"
    # text output: the scoring rule, and how the floor moves FNIR / FPIR (no second embedding pass)
    from facedb.cli.evaluate import _print_eval

    _print_eval(rep)
    text = capsys.readouterr().out
    assert "subjects scored by template" in text and "quality floor eye_px=12, blur=10, raw_norm=7:" in text
    rep["open_set"] = runner_open_set_with_a_refused_subject("best")
    _print_eval(rep)
    text = capsys.readouterr().out
    assert "subjects scored by best" in text and "quality floor eye_px=12: 4 of 12 faces below it" in text
    assert "FPIR 50.00 %; FPIR<=0.01" in text and "with the floor: FNIR 0.00 % FPIR 0.00 %" in text
    assert "2 gallery faces below it, 1 subjects left with none" in text
    rep["open_set"] = runner_open_set_with_a_refused_subject("template", floor={})
    _print_eval(rep)
    text = capsys.readouterr().out
    assert "no quality floor" in text and "with the floor" not in text


def _embedded(vectors: list[list[float]], labels: list[str], eye_px: list[float]):  # type: ignore[no-untyped-def]
    from facedb.evaluation import runner

    q = np.full((len(labels), len(runner.QUALITY_SIGNALS)), 50.0)
    q[:, runner.QUALITY_SIGNALS.index("eye_px")] = eye_px
    v = np.array(vectors, dtype=np.float32)
    return runner.Embedded([Path(f"{lab}/{i}.jpg") for i, lab in enumerate(labels)], labels,
                           v / np.linalg.norm(v, axis=1, keepdims=True), quality=q)


def _refused_subject_set():  # type: ignore[no-untyped-def]
    """Low-quality faces collapse together (``g``): subject D has only such faces, and so has the
    stranger S; A, B, C and the stranger E are clean."""
    e0, e1, e2, e3, g = (np.eye(8)[k].tolist() for k in (0, 1, 2, 3, 7))
    vectors = [e0] * 3 + [e1] * 3 + [e2] * 3 + [g] * 3 + [e3, g]
    labels = ["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["D"] * 3 + ["E", "S"]
    eye = [30.0] * 9 + [5.0] * 3 + [30.0, 5.0]
    return _embedded(vectors, labels, eye)


def runner_open_set_with_a_refused_subject(scoring: str, floor: dict | None = None) -> dict:
    from facedb.evaluation import runner

    return runner.open_set(_refused_subject_set(), 0.3, [None], 0.01, seed=0, scoring=scoring,
                           quality_floor={"eye_px": 12.0} if floor is None else floor)


def test_open_set_quality_floor_and_scoring_without_a_model() -> None:
    """Enrolled, D's low-quality faces name the blurry stranger S; with the floor D is not
    enrolled, its probe becomes a stranger and FPIR drops."""
    from facedb.evaluation import runner

    e = _refused_subject_set()
    floor = {"eye_px": 12.0}
    for scoring in ("template", "best"):
        o = runner.open_set(e, 0.3, [None], 0.01, seed=0, scoring=scoring, quality_floor=floor)
        assert o["scoring"] == scoring and o["quality_floor"] == floor and o["faces_below_floor"] == 4
        (row,) = o["rows"]
        assert (row["gallery_subjects"], row["gallery_images"], row["mated_probes"], row["stranger_probes"]) == \
            (4, 8, 4, 2)
        for sc in ("template", "best"):
            at = row["by_scoring"][sc]["at_threshold"]
            assert (at["fnir"], at["fpir"], at["strangers_named"]) == (0.0, 0.5, 1)  # S is named D
            fl = row["quality_floor"]["by_scoring"][sc]["at_threshold"]
            assert (fl["fnir"], fl["fpir"], fl["strangers_named"]) == (0.0, 0.0, 0)  # D is not enrolled
        assert row["quality_floor"]["gallery_images_below_floor"] == 2
        assert row["quality_floor"]["subjects_left_out"] == 1
        assert row["at_threshold"] == row["by_scoring"][scoring]["at_threshold"]
    none = runner.open_set(e, 0.3, [None], 0.01, seed=0, quality_floor={})
    assert none["quality_floor"] is None and "quality_floor" not in none["rows"][0]


def test_template_scoring_differs_from_best_as_specified() -> None:
    """``template``: distance to the normalised mean of a subject's unit faces; ``best``: its closest face."""
    from facedb.evaluation import metrics

    rng = np.random.default_rng(0)
    g = rng.normal(size=(9, 16))
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    labels = ["a", "a", "a", "b", "b", "c", "c", "c", "c"]
    p = rng.normal(size=(5, 16))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    t = metrics.subject_scores(g, labels, p, scoring="template")
    b = metrics.subject_scores(g, labels, p, scoring="best")
    for k in range(5):
        dt, db = {}, {}
        for s in "abc":
            rows = g[[i for i, lab in enumerate(labels) if lab == s]]
            m = rows.sum(axis=0)
            dt[s] = 1.0 - float(p[k] @ (m / np.linalg.norm(m)))
            db[s] = min(1.0 - float(p[k] @ r) for r in rows)
        for sc, d in ((t, dt), (b, db)):
            order = sorted(d, key=d.get)
            assert sc.best_label[k] == order[0]
            assert sc.best_d[k] == pytest.approx(d[order[0]], abs=1e-6)
            assert sc.second_d[k] == pytest.approx(d[order[1]], abs=1e-6)
    with pytest.raises(ValueError, match="scoring"):
        metrics.subject_scores(g, labels, p, scoring="mean")


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
