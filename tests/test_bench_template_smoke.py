"""Smoke test of scripts/bench/template_search.py at a tiny size: the report is complete, every
mode was measured, and the template answers equal brute force over templates recomputed from SQL.

No timing assertions: only that the numbers are present, finite and plausible.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import find_datasets_dir, script_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench" / "template_search.py"


@pytest.mark.slow
def test_template_search_benchmark_smoke(tmp_path: Path) -> None:
    root = find_datasets_dir()
    if root is None or not (root / "lfw").is_dir():
        pytest.skip("../shared/datasets/lfw not found: the benchmark's probes are LFW photos")
    out = tmp_path / "template.md"
    r = subprocess.run([sys.executable, str(SCRIPT), "--faces", "300", "--per-subject", "3", "--rounds", "2",
                        "--probes", "3", "--no-lock", "--out", str(out)], capture_output=True, text=True,
                       env=script_env(root), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.with_suffix(".json").read_text())
    assert [(run["faces"], run["subjects"]) for run in data["runs"]] == [(300, 100), (300, 300)]
    for run in data["runs"]:
        assert run["exclusive"] is True and run["exact_checked"] == 3 and run["exact_agree"] == 3
        for mode in ("template", "best", "face"):
            m = run["modes"][mode]
            assert m["search"]["n"] == 2 and m["match"]["n"] == 2
            assert all(math.isfinite(m[part]["p50_ms"]) and m[part]["p50_ms"] > 0 for part in ("search", "match"))
            assert m["match"]["p50_ms"] <= m["search"]["p50_ms"]
        assert "templates.query" in run["modes"]["template"]["parts"]
        assert "chroma.query" in run["modes"]["best"]["parts"]
        assert run["ratio_search_template_over_best"] > 0
    text = out.read_text()
    assert "| 300 | 100 | template |" in text and "exact (template = brute force)" in text
