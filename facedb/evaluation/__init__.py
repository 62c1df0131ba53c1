"""How facedb is measured.

- ``metrics`` (numpy only, re-exported here): verification and open-set identification metrics;
- ``lfw``, ``runner``: the datasets and the embedding pass of ``facedb eval``;
- ``calibration``: the threshold calibration protocol on LFW (``scripts/calibrate_threshold.py``);
- ``bench``, ``scale``, ``loadgen``: the helpers of the benchmarks under ``scripts/bench``;
- ``servers``: throw-away PostgreSQL, ``chroma run`` and ``facedb serve`` processes, for the
  benchmarks and the tests alike.

Only ``metrics`` is imported with the package; ``facedb eval`` loads ``runner`` (and ``lfw``) when run;
nothing in facedb imports ``calibration``, ``bench``, ``scale``, ``loadgen`` or ``servers``.
"""
from __future__ import annotations

from .metrics import (
    FoldAccuracy,
    OpenSetResult,
    RocPoints,
    SubjectScores,
    ThresholdChoice,
    best_accuracy_threshold,
    cosine_distance,
    eer,
    l2_normalize,
    lfw_10fold_accuracy,
    open_set_from_scores,
    open_set_identification,
    pairwise_cosine_distances,
    precision_at_k,
    roc_points,
    subject_scores,
    tar_at_far,
    threshold_for_fpir,
    threshold_for_fpir_from_scores,
)

__all__ = [
    "FoldAccuracy",
    "OpenSetResult",
    "RocPoints",
    "SubjectScores",
    "ThresholdChoice",
    "best_accuracy_threshold",
    "cosine_distance",
    "eer",
    "l2_normalize",
    "lfw_10fold_accuracy",
    "open_set_from_scores",
    "open_set_identification",
    "pairwise_cosine_distances",
    "precision_at_k",
    "roc_points",
    "subject_scores",
    "tar_at_far",
    "threshold_for_fpir",
    "threshold_for_fpir_from_scores",
]
