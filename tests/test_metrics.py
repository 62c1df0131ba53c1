"""Hand-checked synthetic cases for facedb.evaluation.metrics (no dataset, no model)."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from facedb.evaluation import metrics as M


def unit(deg: float) -> list[float]:
    """A 2-d unit vector at ``deg`` degrees: cosine distance between two is 1 - cos(angle)."""
    r = math.radians(deg)
    return [math.cos(r), math.sin(r)]


# -- cosine helpers -------------------------------------------------------------------------


def test_cosine_distance_basic_values() -> None:
    assert M.cosine_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert M.cosine_distance([1, 0], [-1, 0]) == pytest.approx(2.0)
    assert M.cosine_distance([3, 4], [6, 8]) == pytest.approx(0.0, abs=1e-7)  # scale does not matter
    assert M.cosine_distance(unit(0), unit(60)) == pytest.approx(0.5)


def test_pairwise_cosine_distances_matrix() -> None:
    d = M.pairwise_cosine_distances([unit(0), unit(90)], [unit(0), unit(180), unit(60)])
    assert d.shape == (2, 3)
    np.testing.assert_allclose(d, [[0, 2, 0.5], [1, 1, 1 - math.cos(math.radians(30))]], atol=1e-6)


def test_l2_normalize_keeps_zero_rows() -> None:
    x = M.l2_normalize([[3, 4], [0, 0]])
    np.testing.assert_allclose(x, [[0.6, 0.8], [0, 0]], atol=1e-7)


# -- verification ---------------------------------------------------------------------------


def test_roc_points_by_hand() -> None:
    roc = M.roc_points([0.1, 0.3], [0.2, 0.4])
    np.testing.assert_array_equal(roc.thresholds, [-np.inf, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(roc.tar, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(roc.far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc.frr, [1, 0.5, 0.5, 0, 0])


GEN = [0.1, 0.2, 0.3, 0.5]
IMP = [0.25, 0.6, 0.7, 0.8]


def test_tar_at_far_by_hand() -> None:
    # accepting up to 0.2 lets no impostor in; 0.25 would let one in (FAR 0.25)
    assert M.tar_at_far(GEN, IMP, 0.0) == (pytest.approx(0.5), pytest.approx(0.2))
    # one impostor of four allowed: every distance below 0.6 is accepted
    assert M.tar_at_far(GEN, IMP, 0.25) == (pytest.approx(1.0), pytest.approx(0.5))
    assert M.tar_at_far(GEN, IMP, 0.3) == (pytest.approx(1.0), pytest.approx(0.5))


def test_tar_at_far_unreachable_budget_accepts_nothing() -> None:
    tar, thr = M.tar_at_far([0.5, 0.6], [0.1, 0.9], 0.0)
    assert tar == 0.0 and thr == -np.inf


def test_eer_by_hand() -> None:
    # at threshold 0.3: FRR = 1/4 (0.5 rejected), FAR = 1/4 (0.25 accepted)
    e, thr = M.eer(GEN, IMP)
    assert e == pytest.approx(0.25)
    assert thr == pytest.approx(0.3)


def test_eer_perfect_separation_is_zero() -> None:
    e, thr = M.eer([0.1, 0.2], [0.6, 0.7])
    assert e == 0.0 and 0.2 <= thr < 0.6


def test_best_accuracy_threshold_separable() -> None:
    thr, acc = M.best_accuracy_threshold([0.1, 0.2, 0.4, 0.5], [True, True, False, False])
    assert acc == 1.0
    assert thr == pytest.approx(0.3)


# three folds of 2 same + 2 different pairs; fold 2 holds a hard same pair (0.6) and a hard
# different pair (0.4).
D3 = [0.2, 0.3, 0.7, 0.8, 0.25, 0.35, 0.75, 0.9, 0.6, 0.1, 0.4, 0.85]
S3 = [True, True, False, False] * 3
F3 = [0] * 4 + [1] * 4 + [2] * 4


def test_lfw_10fold_accuracy_by_hand() -> None:
    # fold 0 tested, trained on folds 1+2: sorted 0.1S .25S .35S .4D .6S .75D .85D .9D; accepting
    # 3 or 5 both give 7/8; the middle of the tie (5) -> midpoint(0.6, 0.75) = 0.675 -> fold 0 is 4/4.
    # fold 1 likewise -> midpoint(0.6, 0.7) = 0.65 -> 4/4.
    # fold 2, trained on folds 0+1 (separable) -> midpoint(0.35, 0.7) = 0.525 -> 0.6S and 0.4D wrong: 2/4.
    r = M.lfw_10fold_accuracy(D3, S3, F3)
    np.testing.assert_allclose(r.thresholds, [0.675, 0.65, 0.525])
    np.testing.assert_allclose(r.accuracies, [1.0, 1.0, 0.5])
    assert r.mean == pytest.approx(2.5 / 3)
    assert r.std == pytest.approx(math.sqrt(1 / 18))
    assert r.n_nan == 0


def test_lfw_10fold_accuracy_counts_nan_as_wrong() -> None:
    d = list(D3)
    d[3] = float("nan")  # fold 0's different pair 0.8 loses its face
    r = M.lfw_10fold_accuracy(d, S3, F3)
    # a NaN different pair compared with "<= t" would look correctly rejected; it must count wrong
    np.testing.assert_allclose(r.accuracies, [0.75, 1.0, 0.5])
    np.testing.assert_allclose(r.thresholds, [0.675, 0.65, 0.525])
    assert r.mean == pytest.approx(0.75)
    assert r.n_nan == 1


def test_lfw_10fold_accuracy_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        M.lfw_10fold_accuracy([0.1, 0.2], [True, False], [0, 0])
    with pytest.raises(ValueError):
        M.lfw_10fold_accuracy([0.1, 0.2], [True], [0, 1])


# -- open-set identification ----------------------------------------------------------------
#
# gallery: A at 0 and 10 degrees, B at 90, C at 180.
# probes (distance = 1 - cos(angle to nearest sample of each subject)):
#   p1 "A" at 20:  A 1-cos10 = 0.0152, B 1-cos70 = 0.658       -> gap 0.643
#   p2 "B" at 45:  A 1-cos35 = 0.181,  B 1-cos45 = 0.293       -> nearest is the WRONG subject
#   p3 "D" at 130: B 1-cos40 = 0.234,  C 1-cos50 = 0.357       -> stranger, gap 0.123
#   p4 "E" at 260: C 1-cos80 = 0.826,  A 1-cos100 = 1.174      -> stranger, gap 0.347

G_EMB = [unit(0), unit(10), unit(90), unit(180)]
G_LAB = ["A", "A", "B", "C"]
P_EMB = [unit(20), unit(45), unit(130), unit(260)]
P_LAB = ["A", "B", "D", "E"]


def test_subject_scores_use_best_sample_and_other_subject() -> None:
    s = M.subject_scores(G_EMB, G_LAB, P_EMB)
    assert list(s.best_label) == ["A", "A", "B", "C"]
    c = lambda deg: 1 - math.cos(math.radians(deg))  # noqa: E731
    np.testing.assert_allclose(s.best_d, [c(10), c(35), c(40), c(80)], atol=1e-6)
    # second best is the next *subject* (B for p1), not A's other sample at 20 degrees
    np.testing.assert_allclose(s.second_d, [c(70), c(45), c(50), c(100)], atol=1e-6)


def test_open_set_threshold_only() -> None:
    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=0.25)
    assert list(r.predicted) == ["A", "A", "B", None]
    assert (r.n_mated, r.n_nonmated) == (2, 2)
    assert r.fnir == 0.5 and r.n_mated_misnamed == 1 and r.n_mated_unknown == 0  # p2 named A
    assert r.fpir == 0.5 and r.n_nonmated_named == 1  # p3 named B

    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=0.1)
    assert list(r.predicted) == ["A", None, None, None]
    assert r.fnir == 0.5 and r.n_mated_unknown == 1 and r.n_mated_misnamed == 0
    assert r.fpir == 0.0

    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=1.0)
    assert list(r.predicted) == ["A", "A", "B", "C"]
    assert r.fnir == 0.5 and r.fpir == 1.0

    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=0.0)
    assert r.fnir == 1.0 and r.fpir == 0.0


def test_open_set_margin_rule() -> None:
    # margin 0.2: p2 (gap 0.112) and p3 (gap 0.123) become unknown, p1 (gap 0.643) stays named
    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=0.25, margin=0.2)
    assert list(r.predicted) == ["A", None, None, None]
    assert r.fnir == 0.5 and r.n_mated_unknown == 1
    assert r.fpir == 0.0
    # margin 0.1 would reject p1 if the second best were A's own other sample (gap 0.045)
    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=0.1, margin=0.1)
    assert r.predicted[0] == "A"


def test_open_set_single_subject_gallery() -> None:
    r = M.open_set_identification([unit(0)], ["A"], [unit(10), unit(90)], ["A", "Z"], threshold=0.5, margin=0.3)
    assert list(r.predicted) == ["A", None]
    assert r.fnir == 0.0 and r.fpir == 0.0


def test_threshold_for_fpir_by_hand() -> None:
    # strangers' best distances: 0.234 (p3) and 0.826 (p4)
    c = M.threshold_for_fpir(G_EMB, G_LAB, P_EMB, P_LAB, target_fpir=0.0)
    assert c.threshold < 0.234 and c.threshold == pytest.approx(1 - math.cos(math.radians(40)))
    assert c.fpir == 0.0 and c.fnir == 0.5  # p1 right, p2 misnamed (0.181 < threshold)

    c = M.threshold_for_fpir(G_EMB, G_LAB, P_EMB, P_LAB, target_fpir=0.5)
    assert c.threshold == pytest.approx(1 - math.cos(math.radians(80)))
    assert c.fpir == 0.5 and c.fnir == 0.5

    # with margin 0.2, p3 can never be accepted: only p4 bounds the threshold
    c = M.threshold_for_fpir(G_EMB, G_LAB, P_EMB, P_LAB, target_fpir=0.0, margin=0.2)
    assert c.threshold == pytest.approx(1 - math.cos(math.radians(80)))
    assert c.fpir == 0.0 and c.fnir == 0.5

    # the threshold returned really keeps FPIR at the target on this data
    r = M.open_set_identification(G_EMB, G_LAB, P_EMB, P_LAB, threshold=c.threshold, margin=0.2)
    assert r.fpir == 0.0


def test_threshold_for_fpir_without_strangers_fails() -> None:
    with pytest.raises(ValueError):
        M.threshold_for_fpir(G_EMB, G_LAB, P_EMB[:2], P_LAB[:2], target_fpir=0.01)


# -- precision@k ----------------------------------------------------------------------------
# A at 0, 5, 60; B at 90, 85, 150. Probes: A@0 and B@90.
# A@0 -> A5 (5), A60 (60), B85 (85), ...     B@90 -> B85 (5), A60 (30), B150 (60), A5 (85)

PK_EMB = [unit(0), unit(5), unit(60), unit(90), unit(85), unit(150)]
PK_LAB = ["A", "A", "A", "B", "B", "B"]


@pytest.mark.parametrize("k, expected", [(1, 1.0), (2, (1.0 + 0.5) / 2), (3, (2 / 3 + 2 / 3) / 2)])
def test_precision_at_k_by_hand(k: int, expected: float) -> None:
    assert M.precision_at_k(PK_EMB, PK_LAB, k=k, probe_indices=[0, 3]) == pytest.approx(expected)


def test_precision_at_k_random_probes_are_seeded() -> None:
    a = M.precision_at_k(PK_EMB, PK_LAB, k=2, seed=3)
    assert a == M.precision_at_k(PK_EMB, PK_LAB, k=2, seed=3)
    assert 0.0 <= a <= 1.0


def test_precision_at_k_single_sample_subject_is_not_a_probe() -> None:
    # C has one sample: enrolled only. Probes A@0 and B@90 now also see C at 80 degrees.
    emb = PK_EMB + [unit(80)]
    lab = PK_LAB + ["C"]
    # A@0 -> A5, A60 (2/2); B@90 -> B85, C80 (1/2)
    assert M.precision_at_k(emb, lab, k=2, probe_indices=[0, 3]) == pytest.approx(0.75)
    for seed in range(5):
        # whatever the draw, C is never a probe, so a perfect-separation set stays perfect
        sep = M.precision_at_k([unit(0), unit(1), unit(90), unit(91), unit(200)], ["A", "A", "B", "B", "C"],
                               k=1, seed=seed)
        assert sep == 1.0


def test_precision_at_k_rejects_two_probes_of_one_subject() -> None:
    with pytest.raises(ValueError):
        M.precision_at_k(PK_EMB, PK_LAB, k=1, probe_indices=[0, 1])


def test_import_is_light() -> None:
    code = ("import sys, facedb.evaluation; "
            "bad = [m for m in ('sklearn', 'matplotlib', 'cv2', 'scipy') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
