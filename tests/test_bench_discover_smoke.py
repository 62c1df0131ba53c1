"""Smoke test of scripts/bench/cluster_speed.py at a tiny size (above the exact-graph limit, so the
approximate graph runs): the report is complete and the planted people are recovered. No timing
assertions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from facedb.analysis.clustering import EXACT_KNN_MAX

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench" / "cluster_speed.py"


@pytest.mark.slow
def test_cluster_speed_benchmark_smoke(tmp_path: Path) -> None:
    out, js = tmp_path / "discover.md", tmp_path / "discover.json"
    n = EXACT_KNN_MAX + 1000
    r = subprocess.run([sys.executable, str(SCRIPT), "--faces", str(n), "--recall-sample", "200", "--out", str(out),
                        "--json", str(js)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    speed = json.loads(js.read_text())["speed"]
    assert speed["faces"] == n and speed["seconds"] > 0 and speed["peak_rss_mb"] > 0
    assert speed["bcubed_precision"] >= 0.999 and speed["bcubed_f"] >= 0.95
    assert 0 < speed["knn_recall"] <= 1
    text = out.read_text()
    assert "## Speed" in text and f"{n:,}" in text
