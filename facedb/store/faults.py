"""Fault injection for the crash-consistency tests (like SQLite's test hooks).

When the environment variable ``FACEDB_CRASH_AT`` is ``NAME`` or ``NAME:N``, the process
kills itself with SIGKILL the N-th time (default 1st) execution reaches ``crash_point(NAME)``.
Unset (always, outside tests), a crash point is one dictionary lookup.
"""
from __future__ import annotations

import os
import signal

_ENV = "FACEDB_CRASH_AT"
_hits: dict[str, int] = {}

#: Every crash point in the code, in write order (the tests iterate over these).
POINTS = (
    "enroll.before_sql",       # analysed, nothing written yet
    "enroll.after_sql",        # faces committed to SQL (not indexed), nothing in Chroma
    "index.between_batches",   # some Chroma batches of a write are in, others not
    "enroll.after_chroma",     # vectors in Chroma, SQL not yet marked indexed
    "enroll.after_mark",       # batch complete
    "delete.after_sql",        # subject gone from SQL, ids journaled, vectors still in Chroma
    "delete.after_chroma",     # vectors deleted, journal not yet cleared
    "journal.after_deletes",   # replay: journaled deletes applied
    "vacuum.after_drop",       # vacuum: collection dropped, not yet rebuilt
)

#: The crash points inside an erasure (``ChromaIndex.erase`` / ``drop(erase=True)``), killed by
#: ``tests/test_erasure.py`` (each leaves the face ids journaled, like ``delete.after_sql``).
ERASE_POINTS = (
    "erase.after_overwrite",   # victims overwritten, the padding not (all) written
    "erase.before_delete",     # overwritten and persisted, not yet deleted
    "erase.before_compact",    # deleted (or collection dropped), Chroma's SQLite file not compacted
)


def crash_point(name: str) -> None:
    spec = os.environ.get(_ENV)
    if not spec:
        return
    target, _, nth = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
