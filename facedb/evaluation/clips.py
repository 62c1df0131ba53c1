"""Test videos built from still photos: a slideshow with motion (a slow zoom and pan on each
photo, as a "Ken Burns" effect), written with OpenCV's ``VideoWriter``. The tests and the video
benchmark build their clips with it (no video file is kept in the repository)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Scene:
    """One photo on screen for ``seconds`` (``photo`` None: a blank, face-free frame)."""

    photo: Path | None
    seconds: float
    #: who is in the photo (for scoring: None for strangers and blanks)
    label: str | None = None


def _frame(photo: np.ndarray | None, size: tuple[int, int], progress: float, seed: int) -> np.ndarray:
    width, height = size
    canvas = np.full((height, width, 3), 40, dtype=np.uint8)
    if photo is None:
        return canvas
    import cv2

    h, w = photo.shape[:2]
    zoom = 1.0 + 0.15 * progress  # slow zoom in
    scale = min(width / w, height / h) * 0.9 * zoom
    sw, sh = int(w * scale), int(h * scale)
    scaled = cv2.resize(photo, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    # pan: a different direction per scene
    direction = (-1) ** seed
    x = (width - sw) // 2 + int(direction * 40 * (progress - 0.5))
    y = (height - sh) // 2 + int(20 * (progress - 0.5))
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + sw, width), min(y + sh, height)
    canvas[y0:y1, x0:x1] = scaled[y0 - y:y1 - y, x0 - x:x1 - x]
    return canvas


def slideshow(path: Path, scenes: Sequence[Scene], fps: float = 25.0, size: tuple[int, int] = (640, 480),
              fourcc: str = "mp4v") -> list[tuple[float, float]]:
    """Write the clip; returns each scene's [start, end) in seconds, as the frames place it."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {fourcc} video to {path}")
    spans: list[tuple[float, float]] = []
    n = 0
    try:
        for i, scene in enumerate(scenes):
            photo = None if scene.photo is None else cv2.imread(str(scene.photo), cv2.IMREAD_COLOR)
            if scene.photo is not None and photo is None:
                raise RuntimeError(f"cannot read {scene.photo}")
            frames = max(1, round(scene.seconds * fps))
            spans.append((n / fps, (n + frames) / fps))
            for f in range(frames):
                writer.write(_frame(photo, size, f / max(frames - 1, 1), i))
            n += frames
    finally:
        writer.release()
    return spans
