"""Subject names: what is accepted, and how ``import --name-from prefix`` derives them.

Names are NFC-normalised at the edge (every front end and the Python API go through here): "Zoë"
typed with a precomposed ë (U+00EB) or as e + U+0308 is one person, not two subjects that look
alike. The catalog only ever stores NFC names (migration 0005 normalised older ones).
"""
from __future__ import annotations

import unicodedata

from ..errors import FacedbError

MAX_NAME_LENGTH = 256


def normalize_subject_name(name: str) -> str:
    """The NFC form of a name (other values are returned as they are, for the validator to refuse)."""
    return unicodedata.normalize("NFC", name) if isinstance(name, str) else name


def validate_subject_name(name: str) -> str:
    """Subject names: 1-256 printable characters, no leading/trailing blanks, not only dots
    (``.`` and ``..`` name folders, not people: ``import`` and paths would misread them).
    Returns the NFC form, which is the name to store and look up."""
    if not isinstance(name, str) or not name.strip():
        raise FacedbError("subject name is empty")
    name = normalize_subject_name(name)
    if name != name.strip():
        raise FacedbError(f"subject name {name!r} has leading or trailing blanks")
    if len(name) > MAX_NAME_LENGTH:
        raise FacedbError(f"subject name is {len(name)} characters long; the limit is {MAX_NAME_LENGTH}")
    if any(not ch.isprintable() for ch in name):
        raise FacedbError(f"subject name {name!r} contains control characters")
    if set(name) == {"."}:
        raise FacedbError(f"subject name {name!r} is made only of dots; '.' and '..' name folders, "
                          "not people: choose another name")
    return name


def subject_from_filename(name: str) -> str:
    """``subject01.happy`` -> ``subject01``; ``Ann_Lee_0001.jpg`` -> ``Ann_Lee``."""
    stem = name.split(".", 1)[0]
    head, sep, tail = stem.rpartition("_")
    if sep and tail.isdigit() and head:
        return head
    return stem
