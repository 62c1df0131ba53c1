"""The arithmetic of ``facedb review`` against brute force, on random unit vectors (fast, no
photos): the leave-one-out distance of every face, its nearest other subject, and the look-alike
pairs equal what a direct computation over every face and every template gives, whatever the
block size."""
from __future__ import annotations

import numpy as np
import pytest

from facedb.catalog.review import ReviewFaces
from facedb.operations import review


def _gallery(n: int, m: int, dim: int = 16, seed: int = 0) -> ReviewFaces:
    rng = np.random.default_rng(seed)
    sids = np.sort(rng.integers(0, m, n)) * 7 + 3  # subject ids are not row numbers
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return ReviewFaces(np.arange(100, 100 + n), sids, emb, {}, {})


@pytest.mark.parametrize("block", [7, 1024])
def test_evidence_equals_brute_force(monkeypatch: pytest.MonkeyPatch, block: int) -> None:
    monkeypatch.setattr(review, "BLOCK", block)
    faces = _gallery(150, 80)
    ev = review.evidence(faces)
    sids, emb = faces.subject_ids, faces.embeddings.astype(np.float64)
    uniq = np.unique(sids)
    templates = np.stack([emb[sids == s].sum(axis=0) for s in uniq])
    templates /= np.linalg.norm(templates, axis=1, keepdims=True)
    for i in range(len(sids)):
        own = sids[i]
        others = emb[(sids == own) & (np.arange(len(sids)) != i)]
        if len(others):
            rest = others.sum(axis=0)
            assert ev.own[i] == pytest.approx(1.0 - rest @ emb[i] / np.linalg.norm(rest), abs=1e-5)
        else:
            assert np.isnan(ev.own[i])
        dist = 1.0 - templates @ emb[i]
        dist[uniq == own] = np.inf
        j = int(np.argmin(dist))
        assert ev.other_subject[i] == uniq[j] and ev.other[i] == pytest.approx(dist[j], abs=1e-5)
    assert np.isnan(ev.own).any()  # some subjects have one face: the case is covered
    pairs = review.look_alike_pairs(ev, 0.9)
    d = 1.0 - templates @ templates.T
    expected = sorted((int(uniq[a]), int(uniq[b])) for a in range(len(uniq)) for b in range(a + 1, len(uniq))
                      if d[a, b] < 0.9)
    assert expected and sorted((a, b) for a, b, _ in pairs) == expected
    assert [p[2] for p in pairs] == sorted(p[2] for p in pairs)


def test_an_empty_or_one_subject_gallery_has_no_evidence_to_give() -> None:
    empty = review.evidence(ReviewFaces(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 0), np.float32),
                                        {}, {}))
    assert len(empty.own) == 0 and review.look_alike_pairs(empty, 1.0) == []
    one = review.evidence(_gallery(5, 1))
    assert np.isnan(one.other).all() and (one.other_subject == -1).all() and not np.isnan(one.own).any()
    assert [review.outlier_reason(float(o), float(x), 0.5) for o, x in zip(one.own, one.other)] == [
        "far_from_own" if o > review.OUTLIER_FACTOR * 0.5 else None for o in one.own]
