"""Counts in messages: "1 image", "2 images" (every count facedb prints goes through ``plural``)."""
from __future__ import annotations

#: Words whose plural is not the word + "s".
_IRREGULAR = {"entry": "entries", "index": "indexes", "match": "matches", "person": "people", "process": "processes"}


def plural(n: int, word: str, many: str | None = None, width: int = 0) -> str:
    """``n`` and ``word``, in the plural unless ``n`` is 1 (``many``: the plural when irregular
    and not in the table); ``width`` right-aligns the number, for columns."""
    if n == 1:
        return f"{n:>{width}} {word}"
    return f"{n:>{width}} {many or _IRREGULAR.get(word) or word + 's'}"
