"""facedb.analysis.clustering (the kNN graph and its linkage rules) and the BCubed scorer."""
from __future__ import annotations

import numpy as np
import pytest

from facedb.analysis import clustering as C
from facedb.errors import FacedbError
from facedb.evaluation import discovery as D


def test_bcubed_known_values() -> None:
    truth = ["a", "a", "b", "b"]
    assert D.bcubed(truth, [0, 0, 1, 1]) == {"precision": 1.0, "recall": 1.0, "f": 1.0, "n": 4}
    one = D.bcubed(truth, [0, 0, 0, 0])  # everything merged: precision 1/2, recall 1
    assert one["precision"] == pytest.approx(0.5) and one["recall"] == pytest.approx(1.0)
    split = D.bcubed(truth, [0, 1, 2, 3])  # everything apart: precision 1, recall 1/2
    assert split["precision"] == pytest.approx(1.0) and split["recall"] == pytest.approx(0.5)


def test_average_linkage_separates_planted_people_and_is_deterministic() -> None:
    X, person = D.synthetic_faces(3000, seed=3)
    labels = C.cluster(X)
    b = D.bcubed(person, labels)
    assert b["precision"] == 1.0 and b["recall"] > 0.99, b
    assert np.array_equal(labels, C.cluster(X.copy()))
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True)  # id 0 is the largest cluster
    firsts = [int(np.flatnonzero(labels == c)[0]) for c in range(len(sizes))]
    for c in range(1, len(sizes)):  # equal sizes: by first face
        if sizes[c] == sizes[c - 1]:
            assert firsts[c] > firsts[c - 1]


def test_average_linkage_does_not_chain_two_people_single_linkage_does() -> None:
    """Two tight groups and a bridge of faces between them: single linkage chains everything
    into one cluster, average linkage keeps the two people apart (precision first)."""
    rng = np.random.default_rng(0)
    a, b = np.eye(64, dtype=np.float32)[0], np.eye(64, dtype=np.float32)[1]
    group_a = a + 0.01 * rng.standard_normal((20, 64)).astype(np.float32)
    group_b = b + 0.01 * rng.standard_normal((20, 64)).astype(np.float32)
    bridge = np.stack([np.cos(t) * a + np.sin(t) * b for t in np.linspace(0.2, np.pi / 2 - 0.2, 9)])
    X = np.vstack([group_a, bridge, group_b])
    single = C.cluster(X, C.ClusterSettings(threshold=0.1, linkage="single"))
    assert len(set(single.tolist())) == 1
    avg = C.cluster(X, C.ClusterSettings(threshold=0.1))
    assert avg[0] != avg[-1]
    assert len(set(avg[:20].tolist())) == 1 and len(set(avg[-20:].tolist())) == 1


def test_approximate_graph_finds_the_exact_neighbours() -> None:
    X, person = D.synthetic_faces(4000, seed=1)
    Xn = C.normalise(X)
    r1, c1, _ = C.knn_graph(Xn, 10, 0.6, exact=True)
    r2, c2, _ = C.knn_graph(Xn, 10, 0.6, exact=False)
    exact = set(zip(r1.tolist(), c1.tolist()))
    approx = set(zip(r2.tolist(), c2.tolist()))
    assert len(exact & approx) / len(exact) > 0.95
    labels = C.cluster(X, exact=False)
    assert D.bcubed(person, labels)["precision"] == 1.0


def test_small_inputs_and_bad_settings() -> None:
    assert C.cluster(np.zeros((0, 8), np.float32)).tolist() == []
    assert C.cluster(np.ones((1, 8), np.float32)).tolist() == [0]
    same = np.ones((3, 8), np.float32)
    assert C.cluster(same).tolist() == [0, 0, 0]
    for bad in (C.ClusterSettings(linkage="complete"), C.ClusterSettings(threshold=0), C.ClusterSettings(k=0)):
        with pytest.raises(FacedbError):
            C.cluster(same, bad)
