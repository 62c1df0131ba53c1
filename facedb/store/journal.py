"""The write order across the two stores, and recovery from a write that did not finish.

- enroll: (1) one SQL transaction stores images + faces with ``indexed = false``
  (``Catalog.store_batch``); (2) the vectors go into Chroma; (3) SQL marks them indexed.
- delete (a subject, or faces): (1) one SQL transaction removes the rows and journals their
  face ids in ``pending_deletes``; (2) Chroma *erases* them (``ChromaIndex.erase``: overwritten,
  persisted, deleted, Chroma's SQLite file compacted); (3) the journal rows are cleared. A
  process killed at any point before (3) leaves the ids journaled, and the replay erases again.
- rebuild (vacuum, repair): journaled as the flag ``rebuilding:<pack>`` (``@<space>`` for a
  collection other than ``default``).
- delete a collection: (1) one SQL transaction removes its rows and journals every face id;
  (2) its Chroma collections are dropped with their segment folders, and Chroma's SQLite file
  is compacted (``ChromaIndex.drop(erase=True)``); (3) the journal rows are cleared.

A ``Journal`` works on one collection (its catalog is bound with ``Catalog.scoped``), except
``replay``, which finishes what was left in every collection.

Every search hit is re-read from SQL, so a vector that is in Chroma but not (or no longer)
indexed in SQL is never returned; ``replay`` finishes or undoes what a killed process left.
Callers hold the store's write access (``Store.writing``) around every method here.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .. import trace
from ..analysis.engines.base import PackInfo
from ..catalog.core import REBUILDING, REINDEXING, index_space
from ..catalog.database import Catalog
from ..catalog.faces import NewFace
from ..index.chroma_index import ChromaIndex
from .faults import crash_point

#: Vectors per Chroma call when rebuilding (Chroma's own limit is 5,461).
ADD_CHUNK = 5000


class Journal:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- the write order ---------------------------------------------------------------
    def index_new_faces(self, index: ChromaIndex, info: PackInfo, faces: Sequence[NewFace]) -> None:
        """Steps 2 and 3 of an enrollment: the faces ``store_batch`` stored go into Chroma."""
        if not faces:
            return
        ids = [f.face_id for f in faces]
        index.add(info, ids, np.stack([f.embedding for f in faces]), [f.subject_id for f in faces])
        crash_point("enroll.after_chroma")
        gone = self.catalog.mark_indexed(ids)
        self.catalog.refresh_statistics()  # a home that grows from nothing gets them on the way
        if gone:  # a delete of the subject (another process) ran between steps 1 and 3
            index.erase(info, sorted(gone))
        crash_point("enroll.after_mark")

    def delete_subject(self, index: ChromaIndex, name: str) -> tuple[int, int, int]:
        """Remove a subject from SQL (journaled) and then from the index; (subject id, images, faces)."""
        sid, n_images, by_model = self.catalog.delete_subject(name)
        crash_point("delete.after_sql")
        self.erase_faces(index, by_model)
        return sid, n_images, sum(len(v) for v in by_model.values())

    def erase_faces(self, index: ChromaIndex, by_model: dict[str, list[int]]) -> None:
        """Steps 2 and 3 of any delete of faces (a subject's, or single faces): the face ids,
        per pack, that one SQL transaction removed and journaled in ``pending_deletes`` leave
        the index with no byte of their vectors left in Chroma's files (``ChromaIndex.erase``),
        then the journal rows are cleared. Call it right after that transaction commits."""
        for model, ids in by_model.items():
            self._delete_vectors(index, model, ids)
            crash_point("delete.after_chroma")
            self.catalog.clear_pending_deletes(ids)

    def rename_subject(self, index: ChromaIndex, old: str, new: str) -> None:
        subject_id, by_model = self.catalog.rename_subject(old, new)
        for model, ids in by_model.items():
            rec = self.catalog.index_pack(model)
            if rec is not None:
                index.relabel(rec, ids, subject_id)

    def delete_collection(self, index: ChromaIndex, name: str) -> tuple[int, int]:
        """Remove a collection from SQL (journaled), then its index collections; (subjects, faces)."""
        cid, by_model, n_subjects = self.catalog.delete_collection_rows(name)
        crash_point("delete_collection.after_sql")
        space = index_space(cid, name)
        for model in set(by_model) | set(self.catalog.recorded_packs()):
            index.drop(model, space, erase=True)
            self.catalog.clear_pending_deletes(by_model.get(model, []))
        return n_subjects, sum(len(v) for v in by_model.values())

    def _delete_vectors(self, index: ChromaIndex, model: str, ids: Sequence[int]) -> None:
        rec = self.catalog.index_pack(model)
        if rec is not None:
            index.erase(rec, ids)

    # -- recovery --------------------------------------------------------------------------
    @trace.traced("journal.replay")
    def replay(self, index: ChromaIndex) -> None:
        """In every collection: finish interrupted rebuilds, apply journaled deletes (a deleted
        collection's too), index faces stored but not indexed."""
        spaces = self.catalog.collection_spaces()
        for cid, name, _space in spaces:
            Journal(self.catalog.scoped(cid, name))._replay_collection(index)
        live = {cid for cid, _, _ in spaces}
        for (cid, model), ids in self.catalog.all_pending_deletes().items():
            if cid not in live:  # a collection deleted by a process killed before its index drop
                index.drop(model, index_space(cid, None), erase=True)
                self.catalog.clear_pending_deletes(ids)

    def _replay_collection(self, index: ChromaIndex) -> None:
        for model in self.catalog.recorded_packs():
            if self.catalog.flag(REBUILDING, model):
                rec = self.catalog.index_pack(model)
                if rec is not None:
                    self.rebuild(index, rec)
        for model, ids in self.catalog.pending_deletes().items():
            self._delete_vectors(index, model, ids)
            crash_point("journal.after_deletes")
            self.catalog.clear_pending_deletes(ids)
        for model in self.catalog.models_in_use():
            rec = self.catalog.index_pack(model)
            if rec is None or self.catalog.flag(REINDEXING, model):
                continue
            self.index_pending(index, rec)

    def index_pending(self, index: ChromaIndex, info: PackInfo) -> int:
        """Index the pack's faces stored but not marked indexed (their add may have happened:
        ``may_exist`` writes only the vectors Chroma lacks)."""
        faces = self.catalog.unindexed_faces(info.name)
        if not faces:
            return 0
        ids = [f.face_id for f in faces]
        index.add(info, ids, np.stack([f.embedding for f in faces]), [f.subject_id for f in faces],
                  may_exist=True)
        gone = self.catalog.mark_indexed(ids)
        if gone:
            index.erase(info, sorted(gone))
        return len(ids)

    def add_from_catalog(self, index: ChromaIndex, info: PackInfo, face_ids: Sequence[int] | None = None) -> None:
        """Put the pack's faces (all, or these ids) into the index from SQL's copy, and mark them."""
        faces = self.catalog.faces_for_index(info.name, face_ids)
        for i in range(0, len(faces), ADD_CHUNK):
            part = faces[i:i + ADD_CHUNK]
            index.add(info, [f.face_id for f in part], np.stack([f.embedding for f in part]),
                      [f.subject_id for f in part])
        self.catalog.mark_indexed([f.face_id for f in faces])

    def rebuild(self, index: ChromaIndex, info: PackInfo) -> None:
        """Drop the pack's collection and rebuild it from the catalog's embeddings.

        Journaled as ``rebuilding:<pack>``: a process killed half-way is finished by the next
        one to open the index."""
        self.catalog.set_flag(REBUILDING, info.name, True)  # searches of other processes wait
        try:
            index.drop(info.name, getattr(info, "space", ""))
        except Exception:  # an unloadable collection is dropped by the reset that follows
            pass
        crash_point("vacuum.after_drop")
        self.forget_pending_deletes()
        self.add_from_catalog(index, info)
        self.catalog.bump_generation()  # before the flag goes: no search can miss the rebuild
        self.catalog.set_flag(REBUILDING, info.name, False)

    def forget_pending_deletes(self) -> None:
        """Clear the delete journal without touching the index (it is being rebuilt from SQL)."""
        for ids in self.catalog.pending_deletes().values():
            self.catalog.clear_pending_deletes(ids)
