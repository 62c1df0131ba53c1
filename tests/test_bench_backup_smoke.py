"""Smoke test of scripts/bench/backup.py at a tiny size: both commands ran, the restore checked
clean with every face indexed, and the report names its numbers. No timing assertions."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import script_env

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench" / "backup.py"


@pytest.mark.slow
def test_backup_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "backup.md"
    r = subprocess.run([sys.executable, str(SCRIPT), "--faces", "300", "--no-lock", "--out", str(out)],
                       capture_output=True, text=True, env=script_env(None), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads(out.with_suffix(".json").read_text())["sizes"]
    rebuilt, shipped = row["rounds"]
    assert row["faces"] == 300 and rebuilt["backup"]["rows"]["faces"] == 300
    assert rebuilt["backup"]["rows"]["api_keys"] == 1
    # The source has no index: its snapshot does not ship one and the restore rebuilds it; the
    # restored home's snapshot ships its index, and that restore copies it.
    assert not rebuilt["backup"]["index_shipped"] and rebuilt["restore"]["index_path"] == "rebuilt"
    assert shipped["backup"]["index_shipped"] and shipped["restore"]["index_path"] == "shipped"
    for r in (rebuilt, shipped):
        assert r["restore"]["clean"] is True and r["restore"]["indexed_faces"] == 300 and r["restore"]["exit"] == 0
        for part, key in (("backup", "wall_s"), ("restore", "wall_s"), ("restore", "index_s")):
            assert math.isfinite(r[part][key]) and r[part][key] >= 0
    text = out.read_text()
    assert "| 300 | rebuilt |" in text and "| 300 | shipped |" in text
