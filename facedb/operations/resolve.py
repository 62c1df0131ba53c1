"""Which face of a photo with several faces belongs to the subject it is enrolled under.

Enrolling the largest face of a group photo stores a stranger under the typed name whenever the
subject is not the largest face (issue 16: a 4-person photo stored someone else, and a search
for that person then named the wrong subject at distance 0.02). So the default,
``multi_face="resolve"``, takes a face of such a photo only when the photo itself says which one
it is: exactly one of its faces is consistent with the subject's other faces. Otherwise the photo
is refused as ``ambiguous_faces``, with its face count, and the user may choose a face
(``face=N``) or ask for the old behaviour (``multi_face="largest"``).

The rule, for a photo with faces f_0..f_n (largest first) and the subject's template t (the
normalised mean of the subject's stored faces, as search scores subjects; it holds the faces
stored before this run and the single-face photos of this run, which are stored first):

    d_i = cosine distance(f_i, t); best = argmin d_i, runner-up = the second smallest
    take best  iff  d_best <= the match threshold  and  d_runner_up - d_best >= RESOLVE_MARGIN

The threshold is the one a search uses to name someone, so a face is taken only if a search would
name the subject on it. The margin keeps a photo of two look-alikes (twins, a parent and child)
refused rather than guessed. Measured on LFW (``scripts/experiments/multi_face_resolve.py``,
``docs/benchmarks/multi-face-resolve.md``).

Photos with several faces are resolved against the template as it is after the run's single-face
photos, never against each other: the outcome does not depend on the order files arrive in.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..analysis.pipeline import Analysis
from ..catalog.database import Catalog
from ..errors import NotFoundError

#: The runner-up face must be at least this much farther from the subject's template than the
#: face taken (cosine distance; see the module docstring for where it comes from).
RESOLVE_MARGIN = 0.10
#: The reason code of a refused photo.
AMBIGUOUS = "ambiguous_faces"


@dataclass(frozen=True)
class Pick:
    """The face of one photo to store (``taken``, 0 = the largest), or why none is (``refusal``:
    reason code and the message after the file name)."""

    taken: int | None
    refusal: tuple[str, str] | None = None


def picked(label: str, res: Analysis, face: int) -> Pick:
    """The caller's choice: face ``face`` (0 = the largest) of the photo."""
    if res.reason or not res.faces:
        return Pick(None)  # refused for its own reason (no_face, unreadable...)
    if face >= len(res.faces):
        return Pick(None, ("no_such_face", f"the photo has only {_faces(len(res.faces))}: choose one of "
                                           f"--face 1..{len(res.faces)} (the face field over HTTP counts from 0)"))
    return Pick(face)


def subject_template(catalog: Catalog, model: str, subject: str) -> np.ndarray | None:
    """The unit mean of ``subject``'s stored faces of pack ``model``; None when it has none."""
    try:
        sid = catalog.subject_id(subject)
    except NotFoundError:
        return None
    _, mat = catalog.embeddings(model, subject_id=sid)
    if not len(mat):
        return None
    units = mat / np.linalg.norm(mat, axis=1, keepdims=True)
    mean = units.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def decide(res: Analysis, template: np.ndarray | None, threshold: float, subject: str,
           margin: float = RESOLVE_MARGIN) -> Pick:
    """Apply the rule of the module docstring to one photo with several faces."""
    n = len(res.faces)
    how = ("choose its face with --face N (1 = the largest), or enroll the largest face anyway with "
           "--multi-face largest")
    if template is None:
        return Pick(None, (AMBIGUOUS, f"{_faces(n)} found and {subject!r} has no photo of one face to tell "
                                      f"which is theirs; enroll photos where they are alone with it, or {how}"))
    embedded = [(i, f.embedding) for i, f in enumerate(res.faces) if f.embedding is not None]
    if not embedded:
        return Pick(None, ("analysis_error", "no face of the photo was embedded"))
    dists = 1.0 - np.stack([e for _, e in embedded]) @ template
    order = np.argsort(dists, kind="stable")
    best = float(dists[order[0]])
    runner_up = float(dists[order[1]]) if len(order) > 1 else 2.0
    if best <= threshold and runner_up - best >= margin:
        return Pick(embedded[int(order[0])][0])
    if best > threshold:
        why = f"none of them is within {threshold:g} of {subject!r}'s other faces (closest {best:.2f})"
    else:
        why = f"two of them are about as close to {subject!r}'s other faces ({best:.2f} and {runner_up:.2f})"
    return Pick(None, (AMBIGUOUS, f"{_faces(n)} found and {why}; {how}"))


def resolve_held(catalog: Catalog, model: str, threshold: float,
                 held: Sequence[tuple[str, str, Analysis]]) -> dict[int, Pick]:
    """``{analysis key: pick}`` for photos with several faces, ``(subject, label, analysis)``."""
    templates: dict[str, np.ndarray | None] = {}
    out: dict[int, Pick] = {}
    for subject, _label, res in held:
        if subject not in templates:
            templates[subject] = subject_template(catalog, model, subject)
        out[res.key] = decide(res, templates[subject], threshold, subject)
    return out


def _faces(n: int) -> str:
    return f"{n} face" if n == 1 else f"{n} faces"
