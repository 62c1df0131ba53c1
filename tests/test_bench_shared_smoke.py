"""Smoke test of the shared-stores benchmark (scripts/bench/shared_stores.py --quick).

Tiny sizes (2,000 vectors; 6 LFW images enrolled with 1 and 2 facedb processes; a home of 600
faces migrated), real servers (a PostgreSQL cluster and ``chroma run`` from facedb.evaluation.servers),
no timing assertions: the run must finish, every phase must report complete and sane numbers,
and the migrated target must check clean. Skipped with the reason where PostgreSQL, the
``chroma`` executable or LFW is absent, unless FACEDB_REQUIRE_SERVERS=1 (CI), which fails instead.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import find_datasets_dir, require_or_skip, script_env

from facedb.evaluation.servers import chroma_unavailable, postgres_unavailable

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "scripts" / "bench"


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_shared_stores_quick_report(tmp_path: Path) -> None:
    reason = postgres_unavailable() or chroma_unavailable()
    if reason:
        require_or_skip(reason)
    root = find_datasets_dir()
    if root is None or not (root / "lfw").is_dir():
        require_or_skip("../shared/datasets/lfw not found: the shared-stores benchmark smoke test needs LFW images")
    out, js = tmp_path / "shared.md", tmp_path / "shared.json"
    env = script_env(root)
    r = subprocess.run([sys.executable, str(BENCH / "shared_stores.py"), "--quick", "--out", str(out), "--json", str(js)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    for heading in ("# Shared stores", "## 1. Search through the Chroma server vs embedded Chroma",
                    "## 2. Enroll and search throughput", "## 3. `facedb migrate`", "- Machine:", "- Libraries:",
                    "Quick mode"):
        assert heading in text, heading
    d = json.loads(js.read_text())
    assert d["quick"] is True and d["phases"] == ["throughput", "migrate", "search"]

    # 1. the same vectors through the server and embedded: both answer, recall is sane, ratios computed
    (size,) = d["search"]["sizes"]
    assert size["n"] == 2000 and size["queries"] == 20
    for b in ("embedded", "server"):
        load = size[b]["load"]
        assert load["count"] == 2000 and _positive(load["vectors_per_s"])
        s = size[b]["summary"]
        assert _positive(s["p50_ms"]) and s["p99_ms"] >= s["p50_ms"] and s["recall_at_k"] >= 0.9
    assert all(_positive(v) for v in size["ratio_server_embedded"].values())
    assert size["top10_overlap_server_vs_embedded"] >= 0.9
    assert _positive(size["server"]["load"]["server_cpu_s"])

    # 2. 1 and 2 facedb processes: every request answered 200, the gallery enrolled, the stores check clean
    t = d["throughput"]
    assert [x["processes"] for x in t["runs"]] == [1, 2]
    for x in t["runs"]:
        assert x["exit_code"] == 0 and x["check_clean"] is True
        assert x["enroll"]["images_ok"] == t["enroll_images"] == x["faces_after"] == x["check_faces"]
        assert x["enroll"]["statuses"] == {"200": x["enroll"]["requests"]}
        assert x["search"]["requests"] == t["searches"] and x["search"]["statuses"] == {"200": t["searches"]}
        assert _positive(x["enroll"]["images_per_s"]) and _positive(x["search"]["images_per_s"])
    # N=2 really ran two server processes (supervisor + 2 servers + their analysis workers)
    assert t["runs"][1]["processes_seen"] > t["runs"][0]["processes_seen"]
    assert [x["processes"] for x in t["summary"]] == [1, 2] and t["summary"][0]["search_ratio"] == 1.0
    assert all(_positive(x["search_cores_busy"]) and _positive(x["enroll_cores_busy"]) for x in t["summary"])

    # 3. migrate: every row copied, every face indexed, the target checks clean and finds the real person
    mg = d["migrate"]
    rep = mg["report"]
    assert mg["exit_code"] == 0 and _positive(mg["wall_s"]) and _positive(mg["faces_per_s"])
    assert rep["rows"]["faces"] == mg["source_faces"] == 600 + mg["real_faces"] == rep["indexed_faces"]
    assert rep["check"]["clean"] is True
    assert mg["probe"]["identity"] == mg["probe"]["expected"]

    # the report can be rendered again from the JSON alone (how a later run includes an earlier one)
    again = tmp_path / "again.md"
    r = subprocess.run([sys.executable, str(BENCH / "shared_stores.py"), "--quick", "--phases", "none", "--include-json",
                        str(js), "--out", str(again), "--json", str(tmp_path / "again.json")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    text2 = again.read_text()
    assert "- Also included: the results of" in text2 and "## 3. `facedb migrate`" in text2
