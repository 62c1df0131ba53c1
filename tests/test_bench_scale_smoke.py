"""Smoke tests of scripts/bench/scale.py at tiny sizes: every step ran through a real ``facedb
serve`` (embedded Chroma at 128-d with the restore; a ``chroma run`` server at 512-d with the fake
pack, without it), the answers are right (recall, the deleted faces gone from every file, the
survivors found by the same scan), and a kept home can be measured again. No timing assertions."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import script_env

from facedb.evaluation.servers import chroma_unavailable

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "bench" / "scale.py"
FIELDS = ("faces", "dim", "index", "search_p50_ms", "search_p99_ms", "recall_at_10", "delete_erase_s",
          "bytes_found_after")


def _run(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"run-{len(list(tmp_path.glob('run-*.json')))}.json"
    r = subprocess.run([sys.executable, str(SCRIPT), *args, "--queries", "40", "--clients", "1,3", "--deletes", "2",
                        "--no-lock", "--no-append", "--json-out", str(out)],
                       capture_output=True, text=True, env=script_env(None), timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    run = json.loads(out.read_text())
    assert all(run.get(k) is not None for k in FIELDS), {k: run.get(k) for k in FIELDS}
    for c in (1, 3):
        assert run[f"search_{c}"]["statuses"] == {"200": 40}, run[f"search_{c}"]
    assert run["recall_at_10"] >= 0.95
    assert run["bytes_found_after"] == 0 and run["names_found_after"] == 0, run["scan_found"]
    assert run["scan_control_found"], "the positive control: the scan must find the survivors' vectors"
    assert len(run["deletes"]) == 2 and run["victim_face_lookup_status"] == 404
    return run


@pytest.mark.slow
def test_scale_benchmark_embedded_then_reused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    erased = tmp_path / "erased.npy"
    run = _run(tmp_path, "--faces", "1500", "--keep-home", str(home), "--erased-out", str(erased))
    assert (run["faces"], run["dim"], run["index"]) == (1500, 128, "embedded")
    assert run["restore"]["clean"] is True and run["restore"]["indexed_faces"] == 1500 - 2 * 5
    assert np.load(erased).shape == (10, 128) and np.load(erased).dtype == np.float32
    again = _run(tmp_path, "--reuse", str(home), "--no-restore")
    assert again["reused_home"] is True and "restore_s" not in again
    assert sorted(json.loads((tmp_path / "home-data" / "deleted.json").read_text())) and \
        len(json.loads((tmp_path / "home-data" / "deleted.json").read_text())) == 4


@pytest.mark.slow
def test_scale_benchmark_on_a_chroma_server_at_512d(tmp_path: Path) -> None:
    if why := chroma_unavailable():
        pytest.skip(why)
    run = _run(tmp_path, "--faces", "1000", "--dim", "512", "--index", "server", "--no-restore")
    assert (run["faces"], run["dim"], run["index"]) == (1000, 512, "server")
    assert any("chroma" in f for f in run["scan_control_found"]), run["scan_control_found"]
