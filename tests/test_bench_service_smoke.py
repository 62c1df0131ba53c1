"""Smoke test of the service benchmark (scripts/bench/service.py --quick) and its load generator.

Tiny sizes (a 20-image gallery, a few requests), no timing assertions: the run must finish, the
server must stop cleanly, and the report must be complete with sane numbers. It needs LFW
(../shared/datasets/lfw) and is skipped with a reason without it.
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
BENCH = REPO / "scripts" / "bench"


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_service_quick_report(tmp_path: Path) -> None:
    root = find_datasets_dir()
    if root is None or not (root / "lfw").is_dir():
        pytest.skip("../shared/datasets/lfw not found: the service benchmark smoke test needs LFW images")
    out, js = tmp_path / "service.md", tmp_path / "service.json"
    env = script_env(root)
    r = subprocess.run([sys.executable, str(BENCH / "service.py"), "--quick", "--out", str(out), "--json-out", str(js)],
                       capture_output=True, text=True, env=env, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    for heading in ("# Service benchmark", "## Summary against the targets", "## 1. `facedb search one.jpg --json`",
                    "## 2. HTTP search", "## 3. Enroll over HTTP", "## 4. Server memory", "## Commands",
                    "- Machine:", "- Libraries:"):
        assert heading in text, heading
    d = json.loads(js.read_text())
    n = d["gallery_images"]
    assert n == 20 and d["server_exit_code"] == 0
    # the same gallery both ways: over HTTP into the served home, with `facedb import` into the direct one
    assert d["http_enroll"]["images_ok"] == n and d["http_enroll"]["statuses"] == {"200": d["http_enroll"]["requests"]}
    assert d["served_faces"] == d["imports"][0]["enrolled"] >= 1
    assert all(_positive(x["images_per_s"]) for x in d["imports"] + [d["http_enroll"]])
    # CLI through the server and direct: two pairs, the same answer
    assert len(d["cli_pairs"]) == 2 and d["cli_same_answer"] is True
    for p in d["cli_pairs"]:
        assert _positive(p["served_s"]) and _positive(p["direct_s"]) and _positive(p["ratio"])
    split = d["cli_split"]
    assert split["served"]["client.request"] > 0 and "facedb.open" not in split["served"]  # the thin client
    assert split["direct"]["search.total"] > 0 and split["direct"]["facedb.open"] > 0
    # HTTP search levels against the model limit
    assert [x["clients"] for x in d["search_levels"]] == [1, 2]
    for x in d["search_levels"]:
        assert x["requests"] == 6 and x["statuses"] == {"200": 6}
        assert _positive(x["requests_per_s"]) and x["latency"]["p99_ms"] >= x["latency"]["p50_ms"] > 0
        assert x["server_cpu_s"]["workers"] > 0
    assert len(d["limits"]) == 2 and all(_positive(x["images_per_s"]) for x in d["limits"])
    # ... on a server without the tracing hook (no span in their windows); the spans come from a
    # shorter traced pass of the same levels
    assert d["spans_in_untraced_levels"] == 0 and d["traced_exit_codes"] == [0, 0]
    assert [x["clients"] for x in d["traced_levels"]] == [1, 2]
    assert all(x["statuses"] == {"200": 6} for x in d["traced_levels"])
    spans = d["server_spans"]["1"]
    for name in ("http.request", "search.total", "analysis.image", "templates.refresh", "templates.query"):
        assert spans[name]["per_request"] >= 1 and spans[name]["median_ms"] >= 0, name
    assert "chroma.query" not in spans, "a search by template needs no index"
    assert spans["search.total"]["median_ms"] <= spans["http.request"]["median_ms"]
    # memory readings of the server and its workers
    assert d["rss"][-1]["searches"] == 24
    assert all(x["processes"] >= 3 and _positive(x["total_mb"]) for x in d["rss"])  # server + 2 workers at least
