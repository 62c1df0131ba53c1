"""Subject names: what is accepted, and how ``import --name-from prefix`` derives them."""
from __future__ import annotations

from ..errors import FacedbError

MAX_NAME_LENGTH = 256


def validate_subject_name(name: str) -> str:
    """Subject names: 1-256 printable characters, no leading/trailing blanks."""
    if not isinstance(name, str) or not name.strip():
        raise FacedbError("subject name is empty")
    if name != name.strip():
        raise FacedbError(f"subject name {name!r} has leading or trailing blanks")
    if len(name) > MAX_NAME_LENGTH:
        raise FacedbError(f"subject name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if any(not ch.isprintable() for ch in name):
        raise FacedbError(f"subject name {name!r} contains control characters")
    return name


def subject_from_filename(name: str) -> str:
    """``subject01.happy`` -> ``subject01``; ``Ann_Lee_0001.jpg`` -> ``Ann_Lee``."""
    stem = name.split(".", 1)[0]
    head, sep, tail = stem.rpartition("_")
    if sep and tail.isdigit() and head:
        return head
    return stem
