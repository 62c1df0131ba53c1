"""Videos: recognising one by its first bytes, and reading its frames at a sampling rate.

Frames are read with OpenCV's ``VideoCapture`` (the opencv wheels include FFmpeg: MP4/H.264,
MOV, AVI, MKV, WebM...), sequentially: every frame is grabbed (cheap) and only the sampled ones
are decoded into pixels. A sampled frame is encoded as a JPEG and goes through the same analysis
as a photo (same detector, alignment, embedding, quality and pixel limits).

``VideoCapture`` reads a file: a video given as bytes (stdin, an HTTP upload) is written to a
private temporary file first (0600, in a 0700 folder) and removed afterwards.
"""
from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError

#: Frames analysed per second of video by default: a face on screen for half a second is seen
#: at least twice (a track needs two frames to be named), and a 2-core machine reads several
#: seconds of video per second (docs/benchmarks/video.md).
DEFAULT_SAMPLE_FPS = 4.0
MAX_SAMPLE_FPS = 30.0
#: A video file given by path is read in place, never whole into memory: its own bound.
MAX_VIDEO_BYTES = 8 * 1024**3
#: Sampled frames per video at most (4 hours at the default rate).
MAX_SAMPLED_FRAMES = 57_600

# ISO base media (MP4, MOV, 3GP, M4V) brands that are video; HEIF/AVIF images share the box layout.
_IMAGE_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}


def is_video(head: bytes) -> bool:
    """Whether the first bytes of a file are a video container (MP4/MOV/3GP, AVI, Matroska/WebM,
    MPEG program or transport stream, ASF/WMV, FLV). HEIF and AVIF photos are not videos."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return head[8:12] not in _IMAGE_BRANDS
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return True
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: Matroska, WebM
        return True
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):  # MPEG program stream
        return True
    if head[:1] == b"\x47" and len(head) > 188 and head[188:189] == b"\x47":  # MPEG transport stream
        return True
    if head[:4] == b"\x30\x26\xb2\x75":  # ASF (WMV)
        return True
    return head[:3] == b"FLV"


def head_of(path: str | os.PathLike[str]) -> bytes:
    """The first bytes of a regular file (b"" when it cannot be read: the image path reports why)."""
    try:
        p = Path(path)
        if not p.is_file():
            return b""
        with open(p, "rb") as fh:
            return fh.read(376)
    except (OSError, ValueError):
        return b""


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    fps: float
    #: frames decoded and analysed (the sampled ones)
    frames_read: int


@dataclass(frozen=True)
class Frame:
    #: position in the video, seconds
    t: float
    jpeg: bytes


@contextmanager
def video_file(path: str | os.PathLike[str] | None, data: bytes | None, label: str) -> Iterator[str]:
    """A path OpenCV can open: ``path`` itself (checked like an image file, with the video
    bound), or ``data`` written to a private temporary file that is removed afterwards."""
    if data is None:
        assert path is not None
        p = Path(path)
        try:
            st = p.stat()
        except OSError:
            raise ImageError("not_found", f"{label}: no such file") from None
        if not p.is_file():
            raise ImageError("not_a_file", f"{label}: not a regular file")
        if st.st_size > MAX_VIDEO_BYTES:
            raise ImageError("too_large", f"{label}: video is {st.st_size / 1024**3:.3g} GiB, over the "
                                          f"{MAX_VIDEO_BYTES / 1024**3:.3g} GiB limit")
        yield str(p)
        return
    folder = tempfile.mkdtemp(prefix="facedb-video-")  # 0700
    tmp = os.path.join(folder, "clip")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        yield tmp
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.rmdir(folder)


class VideoReader:
    """Sampled frames of one video file, as JPEG bytes with their time."""

    def __init__(self, path: str, label: str, sample_fps: float = DEFAULT_SAMPLE_FPS) -> None:
        import cv2

        self.label = label
        self.sample_fps = float(sample_fps)
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            self._cap.release()
            raise ImageError("corrupt_video", f"{label}: the video cannot be opened (unknown codec or damaged file)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 25.0
        count = float(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
        self._declared_frames = int(count) if math.isfinite(count) and count > 0 else 0
        self.frames_decoded = 0
        self.frames_seen = 0

    @property
    def step_s(self) -> float:
        """The time between two sampled frames (never shorter than one frame)."""
        return max(1.0 / self.sample_fps, 1.0 / self.fps)

    def frames(self) -> Iterator[Frame]:
        """Every sampled frame in order: the first frame, then one per ``step_s``."""
        import cv2

        next_t = 0.0
        index = 0
        while self.frames_decoded < MAX_SAMPLED_FRAMES:
            if not self._cap.grab():
                break
            t = index / self.fps
            index += 1
            if t + 1e-6 < next_t:
                continue
            ok, image = self._cap.retrieve()
            if not ok or image is None:
                break
            next_t += self.step_s
            while next_t <= t:
                next_t += self.step_s
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                continue
            self.frames_decoded += 1
            yield Frame(round(t, 3), buf.tobytes())
        self.frames_seen = index

    def info(self) -> VideoInfo:
        frames = max(self.frames_seen, self._declared_frames if self.frames_seen == 0 else 0)
        return VideoInfo(duration_s=round(frames / self.fps, 3), fps=round(self.fps, 3),
                         frames_read=self.frames_decoded)

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
