"""Following faces across the sampled frames of a video, as tracks, and weighing each sighting.

A face joins the track it continues: the one whose recent faces it looks like (cosine distance of
the embeddings) and, unless it looks very much like them, whose last box it overlaps. Each face
joins at most one track and each track takes at most one face per frame, closest pairs first; a
face that continues none starts a new track, and a track not seen for ``max_gap_s`` ends.

The weight of a sighting is how much its face can be trusted to say who it is: the detector's
score, lowered for small or blurred faces, and zero below the quality floor that enrollment uses
(a blurred frame is seen, but it is no evidence). Who a track is gets decided elsewhere
(``facedb.operations.search``) by a vote over its sightings with these weights.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .engines import Face
from .quality import DEFAULT_QUALITY_FLOOR

#: A track continues when a face is within this cosine distance of its recent faces and overlaps
#: its last box...
LINK_DISTANCE = 0.45
MIN_IOU = 0.05
#: ...or, wherever it is in the frame, within this distance (a cut back to the same person).
REIDENTIFY_DISTANCE = 0.30
#: A track not seen for this long has ended.
MAX_GAP_S = 1.0
#: The recent faces of a track: the last ones, averaged.
RECENT = 5


def sighting_weight(face: Face, floor: Mapping[str, float] | None = DEFAULT_QUALITY_FLOOR) -> float:
    """0..1: the detector's score, times min(1, eye distance / 24 px), times min(1, blur / 100);
    0 for a face below the quality ``floor`` (or without an embedding)."""
    if face.embedding is None:
        return 0.0
    q = face.quality or {}
    if floor and any(name in q and q[name] < value for name, value in floor.items()):
        return 0.0
    w = float(min(max(face.score, 0.0), 1.0))
    if "eye_px" in q:
        w *= min(1.0, q["eye_px"] / 24.0)
    if "blur" in q:
        w *= min(1.0, q["blur"] / 100.0)
    return w


@dataclass
class Sighting:
    t: float
    face: Face
    weight: float

    @property
    def embedding(self) -> np.ndarray:
        assert self.face.embedding is not None
        return self.face.embedding


@dataclass
class Track:
    id: int
    sightings: list[Sighting] = field(default_factory=list)

    @property
    def last(self) -> Sighting:
        return self.sightings[-1]

    def recent(self) -> np.ndarray:
        """The unit mean of the last ``RECENT`` faces."""
        v = np.mean([s.embedding for s in self.sightings[-RECENT:]], axis=0)
        return np.asarray(v / (np.linalg.norm(v) or 1.0), dtype=np.float32)

    def template(self) -> np.ndarray:
        """The unit mean of every face, weighted (unweighted when no face has weight)."""
        emb = np.stack([s.embedding for s in self.sightings])
        w = np.array([s.weight for s in self.sightings], dtype=np.float64)
        v = (emb * w[:, None]).sum(axis=0) if w.sum() > 0 else emb.sum(axis=0)
        return np.asarray(v / (np.linalg.norm(v) or 1.0), dtype=np.float32)

    def segments(self, step_s: float, duration_s: float, max_gap_s: float = MAX_GAP_S) -> list[list[float]]:
        """[start, end] spans in seconds: a sighting at ``t`` stands for ``[t, t + step_s)``, and
        sightings less than ``max_gap_s`` apart are one span."""
        out: list[list[float]] = []
        for s in self.sightings:
            end = min(s.t + step_s, duration_s) if duration_s > 0 else s.t + step_s
            if out and s.t - out[-1][1] <= max_gap_s - step_s + 1e-6:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([s.t, end])
        return [[round(a, 3), round(b, 3)] for a, b in out]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def follow(frames: Sequence[tuple[float, Sequence[Face]]], *, max_gap_s: float = MAX_GAP_S,
           floor: Mapping[str, float] | None = DEFAULT_QUALITY_FLOOR) -> list[Track]:
    """Tracks over ``frames`` ((time, faces), in time order). Faces without an embedding are
    left out."""
    tracks: list[Track] = []
    for t, faces in frames:
        live = [tr for tr in tracks if t - tr.last.t <= max_gap_s + 1e-6]
        embedded = [f for f in faces if f.embedding is not None]
        pairs: list[tuple[float, int, int]] = []
        if live and embedded:
            recent = np.stack([tr.recent() for tr in live])
            dist = 1.0 - np.stack([f.embedding for f in embedded if f.embedding is not None]) @ recent.T
            for i, f in enumerate(embedded):
                for j, tr in enumerate(live):
                    d = float(dist[i, j])
                    if d <= REIDENTIFY_DISTANCE or (d <= LINK_DISTANCE and iou(f.bbox, tr.last.face.bbox) >= MIN_IOU):
                        pairs.append((d, i, j))
        pairs.sort()
        taken_faces: set[int] = set()
        taken_tracks: set[int] = set()
        for _, i, j in pairs:
            if i in taken_faces or j in taken_tracks:
                continue
            taken_faces.add(i)
            taken_tracks.add(j)
            live[j].sightings.append(Sighting(t, embedded[i], sighting_weight(embedded[i], floor)))
        for i, f in enumerate(embedded):
            if i not in taken_faces:
                tracks.append(Track(len(tracks), [Sighting(t, f, sighting_weight(f, floor))]))
    return tracks
