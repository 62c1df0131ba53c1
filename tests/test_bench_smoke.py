"""Smoke test of scripts/bench/search_scale.py at tiny sizes: the report is complete and sane.

No timing assertions: only that every number is present, finite and plausible.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("chromadb")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench" / "search_scale.py"


def _fake_lfw_cache(folder: Path, dim: int = 128) -> None:
    """A tiny cache in scripts/calibrate_threshold.py's format (embeddings + meta with rel_paths)."""
    rng = np.random.default_rng(0)
    rel, rows = [], []
    for p in range(60):
        centre = rng.standard_normal(dim)
        for j in range(1 + p % 4):
            rel.append(f"Person_{p:03d}/Person_{p:03d}_{j + 1:04d}.jpg")
            rows.append(centre + 0.6 * rng.standard_normal(dim))
    emb = np.array(rows, dtype=np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[5] = np.nan  # an image without a detected face
    tag = f"sface-000000000000-n{len(rel)}"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{tag}-embeddings.npy", emb)
    np.save(folder / f"{tag}-embeddings-central.npy", emb)
    (folder / f"{tag}-meta.json").write_text(json.dumps({"rel_paths": rel, "pack": "sface", "fingerprint": "0"}))


def _finite_positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_search_scale_quick(tmp_path: Path) -> None:
    cache = tmp_path / "lfw-cache"
    _fake_lfw_cache(cache)
    out_md, out_json = tmp_path / "report.md", tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--no-lock", "--sizes", "600", "--dims", "128",
         "--queries", "12", "--batch", "6", "--sweep", "50", "--lfw-cache", str(cache),
         "--workdir", str(tmp_path / "work"), "--out", str(out_md), "--json", str(out_json)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| data | d | N |" in proc.stdout

    rep = json.loads(out_json.read_text())
    assert rep["sql_catalog_written"] is False
    assert rep["machine"]["cores"] and rep["versions"]["chromadb"] != "not installed"
    kinds = [(r["kind"], r["dim"], r["n"]) for r in rep["results"]]
    assert kinds[0][0] == "real LFW" and ("synthetic", 128, 600) in kinds
    for r in rep["results"]:
        assert r["load"]["count"] == r["n"]
        assert _finite_positive(r["load"]["load_s"]) and _finite_positive(r["disk_mb"])
        assert _finite_positive(r["load"]["peak_rss_mb"])
        assert r["load"]["config"]["space"] == "cosine"
        ex = r["exact"]
        for key in ("numpy_query", "numpy_query_1thread", "reference_query", "reference_query_1thread"):
            assert ex[key]["n"] >= 1 and _finite_positive(ex[key]["p50_ms"])
            assert ex[key]["p99_ms"] >= ex[key]["p50_ms"]
        assert ex["reference_recall_vs_numpy"] == pytest.approx(1.0)  # both exact
        efs = sorted(run["ef_search"] for run in r["runs"])
        assert efs == sorted({50, rep["hnsw"]["ef_search"]})
        for run in r["runs"]:
            assert run["ef_search_recorded"] == run["ef_search"]  # modify() stored and seen by a new process
            assert 0.0 <= run["recall_min"] <= run["recall_at_k"] <= 1.0
            assert run["recall_at_k"] >= 0.9  # tiny, clustered data: HNSW is near exact
            assert _finite_positive(run["facedb_query"]["p50_ms"]) and _finite_positive(run["batch_qps"])
            cold = run["cold"]
            assert 0 < cold["open_and_first_query_s"] <= cold["spawn_to_first_answer_s"]
            assert _finite_positive(run["peak_rss_mb"])
        if r["kind"] == "synthetic":
            assert r["identities"] == 60 and abs(r["mean_cos_to_centre"] - 0.75) < 0.03
        else:
            assert r["n"] + r["queries"] == 149 and r["queries"] == 12  # 150 images, one without a face

    md = out_md.read_text()
    for heading in ("## Load, footprint, cold open", "## Search, k=10", "## ef_search sweep", "## Targets",
                    "## Sizes not run"):
        assert heading in md
    assert "SQL catalog is **not** written" in md and "Command: `" in md
    assert f"chromadb {rep['versions']['chromadb']}" in md
    assert not (tmp_path / "work" / "syn-128-600").exists()  # scratch data removed
