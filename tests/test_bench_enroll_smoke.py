"""Smoke test of the enrollment benchmark (scripts/bench/enroll.py --quick) and its helpers.

Tiny sizes, no timing assertions: the report must be complete and its numbers sane.
The end-to-end part needs ../shared/datasets/lfw and is skipped with a reason without it.
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


def _lfw() -> Path | None:
    root = find_datasets_dir()
    return root / "lfw" if root is not None and (root / "lfw").is_dir() else None


@pytest.fixture()
def util():
    """The benchmarks' helper module, as the scripts import it (installed with facedb)."""
    from facedb.evaluation import bench

    return bench


def test_sample_and_subset_tree(util, tmp_path: Path) -> None:
    src = tmp_path / "src"
    paths = []
    for person in ("Ann_Lee", "Bob_Ray"):
        (src / person).mkdir(parents=True)
        for i in range(5):
            p = src / person / f"{person}_{i:04d}.jpg"
            p.write_bytes(b"x")
            paths.append(p)
    picked = util.sample_images(paths, 4)
    assert len(picked) == 4 and len(set(picked)) == 4
    assert {p.parent.name for p in picked} == {"Ann_Lee", "Bob_Ray"}  # spread over the list
    assert util.sample_images(paths, None) == paths and util.sample_images(paths, 99) == paths
    tree = util.subset_tree(picked, tmp_path / "tree")
    files = sorted(tree.glob("*/*.jpg"))
    assert len(files) == 4 and all(f.is_symlink() and f.resolve().exists() for f in files)


def test_report_keeps_marked_sections(util, tmp_path: Path) -> None:
    doc = tmp_path / "r.md"
    util.write_report(doc, "# one\n")
    util.replace_section(doc, "peer", "## Peer\nold")
    util.replace_section(doc, "peer", "## Peer\nnew")
    util.write_report(doc, "# two\n")  # regenerated: the peer section survives
    text = doc.read_text()
    assert text.startswith("# two") and "new" in text and "old" not in text
    assert text.count("<!-- section:peer -->") == 1


def test_importtime_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import cli_latency

    err = ("import time: self [us] | cumulative | imported package\n"
           "import time:       100 |        100 |   encodings.utf_8\n"
           "import time:      2000 |      50000 | click\n"
           "import time:       300 |       1200 |   sqlalchemy.util\n"
           "import time:       500 |      30000 | sqlalchemy\n")
    per, total = cli_latency.parse_importtime(err)
    assert per == {"click": 0.05, "sqlalchemy": 0.03}
    assert total == pytest.approx(0.08)


@pytest.mark.slow
def test_enroll_quick_report(tmp_path: Path) -> None:
    if _lfw() is None:
        pytest.skip("../shared/datasets/lfw not found: the enrollment benchmark smoke test needs LFW images")
    out, js = tmp_path / "enroll.md", tmp_path / "enroll.json"
    env = script_env(find_datasets_dir())
    r = subprocess.run([sys.executable, str(BENCH / "enroll.py"), "--quick", "--out", str(out), "--json-out", str(js)],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    text = out.read_text()
    for heading in ("# Enrollment benchmark", "## Result", "End-to-end / limit", "CPU-normalised",
                    "## Per-image breakdown", "## Storage and the main process", "## Commands", "- Machine:",
                    "- Libraries:"):
        assert heading in text, heading
    assert text in r.stdout  # also printed
    d = json.loads(js.read_text())
    n = d["n_images"]
    assert n == 40  # above pipeline.MIN_POOL_ITEMS: the import uses its worker pool
    for rec in d["limits"]:
        assert rec["images"] == n and rec["procs"] == 2
        assert math.isfinite(rec["images_per_s"]) and rec["images_per_s"] > 0
    for rec in d["e2e_cli"] + d["e2e_traced"]:
        assert rec["exit_code"] in (0, 3)
        assert rec["enrolled"] + rec["n_failed"] + rec["duplicates"] == n
        assert rec["enrolled"] >= 1 and rec["wall_s"] > 0
        assert rec["main_cpu_s"] > 0 and rec["cpu_s"] >= rec["main_cpu_s"]
    bd = d["breakdown"]
    for stage in ("read", "sha256", "decode", "detect", "align_embed", "model_total"):
        assert bd[stage]["mean_ms"] >= 0
    assert bd["model_total"]["mean_ms"] > 0 and bd["faces_per_image"] > 0
    spans = d["e2e_traced"][0]["spans"]  # the main process's span totals
    for name in ("facedb.open", "ingest.total", "ingest.write_batch", "chroma.add", "file.read", "sql.store_batch"):
        assert spans[name]["n"] >= 1 and spans[name]["s"] > 0, name
    assert spans["file.read"]["n"] == n and spans["ingest.write_batch"]["images"] == n
    assert "analysis.image" not in spans  # analysed in the pool, not in the main process
    worker = d["e2e_traced"][0]["worker_spans"]
    assert worker["analysis.image"]["n"] == n and worker["engine.load"]["n"] == 2
    tr = d["e2e_traced"][0]["trace"]
    assert tr["workers"] >= 1 and tr["tasks"] == n and 0 < tr["utilisation"] <= 1
