"""The threshold calibration protocol (``facedb.evaluation.calibration``) and its command line
(``scripts/calibrate_threshold.py``), on synthetic LFW-shaped embeddings: no images, no model.

The real report (docs/calibration.*) embeds all of LFW (about an hour without the cache); here
the protocol runs end to end on people whose embeddings are drawn around a centre each, with a
``pairs.txt`` of the real format, so every step (verification, splits, both designs, robustness
over seeds, the side-by-side comparison, the markdown) runs and is checked for what it promises.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facedb.evaluation import calibration as cal
from facedb.evaluation import lfw

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "calibrate_threshold.py"


def _people(n_people: int = 1400, dim: int = 64, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """LFW-like relative paths and unit embeddings: person p has 1 + p % 4 photos near a centre
    of its own (so about a quarter are single-photo strangers, as in LFW)."""
    rng = np.random.default_rng(seed)
    rel, rows = [], []
    for p in range(n_people):
        centre = rng.standard_normal(dim)
        centre /= np.linalg.norm(centre)
        for j in range(1 + p % 4):
            rel.append(lfw.image_name(f"Person_{p:04d}", j + 1))
            v = centre + 0.09 * rng.standard_normal(dim)
            rows.append(v / np.linalg.norm(v))
    return rel, np.array(rows, dtype=np.float32)


def _embeddings(pack: str = "sface-flip", undetected: int = 7) -> cal.Embeddings:
    rel, emb = _people()
    emb[undetected] = np.nan  # one image without a face
    return cal.Embeddings(rel_paths=rel, people=[lfw.person_of(r) for r in rel], emb=emb, emb_central=emb.copy(),
                          n_faces=np.where(np.isfinite(emb[:, 0]), 1, 0), wall_seconds=1.0, workers=2,
                          fingerprint="f" * 64, pack=pack,
                          quality=np.full((len(rel), 5), 50.0), extra={"failures": {}})


def _pairs_txt(root: Path, rel: list[str]) -> None:
    """A 10-fold ``pairs.txt`` over the synthetic people (30 same + 30 different pairs per fold)."""
    multi = sorted({r.split("/")[0] for r in rel if r.endswith("_0002.jpg")})
    lines = ["10\t30"]
    k = 0
    for _fold in range(10):
        for _ in range(30):
            lines.append(f"{multi[k % len(multi)]}\t1\t2")
            k += 1
        for _ in range(30):
            a, b = multi[k % len(multi)], multi[(k + 7) % len(multi)]
            lines.append(f"{a}\t1\t{b}\t2")
            k += 1
    root.mkdir(parents=True, exist_ok=True)
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture()
def fake_lfw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An LFW folder holding only ``pairs.txt``; the embedding pass returns the synthetic people
    (the pack named decides nothing but the label) and every pack's threshold is 0.50."""
    E = _embeddings()
    root = tmp_path / "lfw"
    _pairs_txt(root, E.rel_paths)
    calls: list[str] = []

    def fake_embed(root_: Path, cache: Path | None, pack: str, workers: int, limit: int | None = None,
                   central: bool = True) -> cal.Embeddings:
        calls.append(pack)
        return cal.Embeddings(E.rel_paths, E.people, E.emb.copy(), E.emb_central.copy(), E.n_faces, 1.0, workers,
                              E.fingerprint, False, pack, E.quality, None, dict(E.extra))

    monkeypatch.setattr(cal, "embed_lfw", fake_embed)
    monkeypatch.setattr(cal, "_pack_threshold", lambda pack: 0.50)
    return root


def test_split_holds_out_one_probe_per_person_and_never_enrolls_it() -> None:
    E = _embeddings()
    S = cal.make_split(E, seed=3, max_enroll=0)
    assert S.people_multi and S.singles
    for p in S.people_multi:
        assert S.probe_of[p] not in S.enroll_of[p]
        assert E.people[S.probe_of[p]] == p and all(E.people[i] == p for i in S.enroll_of[p])
        assert E.detected[S.probe_of[p]]
    halves = [S.half_of[p] for p in S.people_multi]
    assert abs(halves.count(0) - halves.count(1)) <= 1  # stratified
    assert S.n_people_no_face == 0
    # the same seed gives the same split; another seed another one
    assert cal.make_split(E, seed=3, max_enroll=0).probe_of == S.probe_of
    assert cal.make_split(E, seed=4, max_enroll=0).probe_of != S.probe_of


def test_quality_floor_refuses_gallery_images_but_keeps_the_split() -> None:
    E = _embeddings()
    refused = np.zeros(len(E.rel_paths), dtype=bool)
    refused[::3] = True
    S0 = cal.make_split(E, seed=1, max_enroll=0)
    S1 = cal.make_split(E, seed=1, max_enroll=0, refused=refused)
    assert S1.probe_of == S0.probe_of and S1.half_of == S0.half_of
    assert S1.n_refused > 0
    assert all(not refused[i] for p in S1.people_multi for i in S1.enroll_of[p])


def test_run_calibrates_reports_and_writes_markdown(fake_lfw: Path, tmp_path: Path) -> None:
    settings = cal.Settings(pack="sface-flip", lfw_root=fake_lfw, command="python scripts/calibrate_threshold.py",
                            compare=("sface", "best"), repeats=3, gallery_sizes=[100, "max"],
                            table_thresholds=[0.40, 0.50, 0.60], margins=[0.0, 0.05])
    R = cal.run(settings)
    v = R["verification"]
    assert v["n_pairs"] == 600 and 0.9 <= v["accuracy_mean"] <= 1.0
    assert R["seeds"] == [0, 1, 2]
    C = R["config"]
    rb = C["robustness"]
    assert len(rb["per_seed"]) == 3
    for row in rb["per_seed"]:  # calibrated on the calibration half: FPIR within the target there
        assert row["calib_fpir"] <= settings.target_fpir + 1e-12
        assert 0.0 < row["threshold"] < 1.0
    rec = C["recommendation"]["threshold"]
    assert rec == math.floor(rb["threshold_median"] * 100 + 1e-9) / 100
    assert f"{rec:.2f}" in C["table"] and "0.50" in C["table"]
    for size, s in C["table"]["0.50"].items():
        assert 0.0 <= s["fpir_mean"] <= 1.0 and 0.0 <= s["fnir_mean"] <= 1.0, size
        assert s["seeds"] == 3
    assert R["baseline"]["pack"] == "sface" and R["baseline"]["scoring"] == "best"
    assert R["baseline"]["same_detected_images"] is True
    md = cal.markdown(R)
    assert md.startswith("# Threshold calibration on LFW: sface-flip + template")
    assert "## Side by side on the same seeds" in md and "| 0.50 (in force)" in md
    out = tmp_path / "cal.json"
    cal.write_json(R, out)
    back = json.loads(out.read_text())  # plain JSON: no NaN, numpy values converted
    assert back["config"]["recommendation"]["threshold"] == rec
    cal.print_all(R)  # the console report runs on the same dict


def test_run_rejects_an_unknown_scoring(fake_lfw: Path) -> None:
    with pytest.raises(ValueError, match="scoring"):
        cal.run(cal.Settings(pack="sface", lfw_root=fake_lfw, command="x", scoring="closest"))
    with pytest.raises(ValueError, match="compared scoring"):
        cal.run(cal.Settings(pack="sface", lfw_root=fake_lfw, command="x", compare=("sface", "mean")))


def test_script_is_a_thin_command_line(tmp_path: Path) -> None:
    """``--help`` runs from any folder (no sys.path insert needed) and bad input exits 2, not a traceback."""
    ok = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=300,
                        cwd=tmp_path)
    assert ok.returncode == 0 and "--quality-floor" in ok.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--compare", "sface:mean", "--lfw", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad.returncode == 2 and "--compare" in bad.stderr and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, str(SCRIPT), "--lfw", str(tmp_path / "nowhere")],
                             capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert missing.returncode == 2 and "LFW not found" in missing.stderr and "Traceback" not in missing.stderr
