"""The two-store write order of single-face edits (see ``facedb.store.journal`` for the others).

- remove faces: (1) one SQL transaction deletes the faces (and photos left without one),
  journals their ids in ``pending_deletes`` and recomputes the templates; (2) Chroma deletes
  them; (3) the journal rows are cleared. The same journal as a subject delete: a process killed
  after (1) leaves journaled ids that the next replay deletes from the index.
- move faces / merge subjects: (1) one SQL transaction gives the faces to the target subject,
  marks them not indexed and recomputes both templates (so no search names the old subject from
  then on: hits and templates are read from SQL); (2) Chroma's metadata of those vectors names the
  target; (3) SQL marks them indexed. A process killed after (1) leaves faces "stored, not
  indexed": the replay's ``index_pending`` re-adds them with ``may_exist``, which rewrites the
  metadata of vectors Chroma already holds.

Callers hold the store's write access (``Store.writing``).
"""
from __future__ import annotations

from collections.abc import Sequence

from ..catalog.face_edits import Moved
from ..index.chroma_index import ChromaIndex
from .faults import crash_point
from .journal import Journal


def remove_faces(journal: Journal, index: ChromaIndex, face_ids: Sequence[int]
                 ) -> tuple[list[int], int, dict[str, int]]:
    """Remove faces from SQL (journaled), then from the index; (face ids, images, per subject)."""
    by_model, n_images, per_subject = journal.catalog.remove_faces(face_ids)
    crash_point("faces_remove.after_sql")
    for model, ids in by_model.items():
        journal._delete_vectors(index, model, ids)  # the delete's own step 2: what erases a subject erases these
        journal.catalog.clear_pending_deletes(ids)
    return sorted(f for ids in by_model.values() for f in ids), n_images, per_subject


def relabel(journal: Journal, index: ChromaIndex, moved: Moved) -> None:
    """Steps 2 and 3 of a move or a merge: the index metadata names the target, then SQL marks
    the faces indexed again."""
    crash_point("faces_move.after_sql")
    for model, ids in moved.relabel.items():
        rec = journal.catalog.index_pack(model)
        if rec is not None:
            index.relabel(rec, ids, moved.target_id)
        gone = journal.catalog.mark_indexed(ids)
        if gone and rec is not None:  # removed by another process meanwhile
            index.delete(rec, sorted(gone))
