"""Smoke test of scripts/bench/chroma_load.py's sharded load (``facedb.evaluation.chroma_load``) at a
tiny size, embedded and on a real ``chroma run`` server: the faces are split by subject, every one
lands once, and the merged search finds what exact search finds.

No timing assertions: the timings are the benchmark's, on a quiet machine.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facedb.evaluation.chroma_load import face_like, load

REPO = Path(__file__).resolve().parents[1]


def test_face_like_vectors_have_the_scale_benchmarks_shape() -> None:
    v = face_like(3_000, 128, per_subject=5, seed=3)
    assert v.shape == (3_000, 128) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    mates = np.einsum("ij,ij->i", v[0::5], v[1::5])  # two faces of one subject: ~0.75^2
    strangers = np.einsum("ij,ij->i", v[0:-5:5], v[5::5])  # the first faces of two neighbouring subjects
    assert 0.45 < float(np.median(mates)) < 0.65 and abs(float(np.median(strangers))) < 0.05


def test_a_sharded_embedded_load_puts_every_face_in_one_shard_and_the_merged_search_is_exact(tmp_path: Path) -> None:
    row = load(kind="embedded", n=3_000, shards=3, per_subject=5, queries=40, scratch=tmp_path)
    assert (row["shards"], row["writers"], row["count"], row["count_ok"]) == (3, 3, 3_000, True)
    assert row["self_found"] == 1.0  # each probe is in exactly one shard, and found there
    assert row["queries"] == 40 and row["mates_found"] == 1.0 and row["recall_at_10"] >= 0.95
    assert row["search_p50_ms"] > 0


def test_the_script_loads_shards_into_a_chroma_server(tmp_path: Path) -> None:
    from facedb.evaluation.servers import chroma_unavailable

    reason = chroma_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "rows.jsonl"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench" / "chroma_load.py"), "--faces", "2000",
                           "--shards", "2", "--per-subject", "5", "--queries", "20", "--scratch", str(tmp_path),
                           "--out", str(out), "--label", "smoke"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())
    assert (row["kind"], row["shards"], row["count"], row["label"]) == ("server", 2, 2_000, "smoke")
    assert row["self_found"] == 1.0 and row["mates_found"] == 1.0 and row["server_cpu_s"] > 0
