"""The quality floor of enrolled faces (light: the CLI and the thin client parse it too)."""
from __future__ import annotations

from collections.abc import Mapping

from ..errors import FacedbError

#: The quality floor of an enrolled face: a face with a signal below its floor is refused
#: (reason ``low_quality``) so that it cannot pull its subject's template. Low on purpose: of
#: LFW's 7,701 photos, the largest face of 6 falls below it (4 by raw_norm, 2 by eye_px; the
#: 0.1st percentiles are eye_px 20.3, blur 16.6, raw_norm 7.85); it stops
#: faces too small to recognise (eyes under 12 px apart), badly
#: blurred ones and crops the network can barely read. Signals without a floor are kept as
#: they come. ``quality_floor=None`` turns it off.
DEFAULT_QUALITY_FLOOR: dict[str, float] = {"eye_px": 12.0, "blur": 10.0, "raw_norm": 7.0}
QualityFloor = Mapping[str, float] | None


def parse_quality_floor(spec: str) -> QualityFloor:
    """``"off"``, ``"default"``, or ``"eye_px=12,blur=10"`` (the signals of ``Face.quality``)."""
    text = spec.strip().lower()
    if text in ("off", "none", "no"):
        return None
    if text in ("", "default"):
        return dict(DEFAULT_QUALITY_FLOOR)
    out: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            out[key.strip()] = float(value) if sep else float("nan")
        except ValueError:
            out[key.strip()] = float("nan")
        if not sep or out[key.strip()] != out[key.strip()]:
            raise FacedbError(f"quality floor {spec!r}: give name=value pairs such as 'eye_px=12,blur=10', "
                              "or 'off'")
    return out


def format_quality_floor(floor: QualityFloor) -> str:
    """The spec ``parse_quality_floor`` reads back (what the thin client sends)."""
    return "off" if floor is None else ",".join(f"{k}={v:g}" for k, v in floor.items())
