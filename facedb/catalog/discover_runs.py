"""Saved ``facedb discover`` runs of one collection: store, read a cluster's faces, list, forget."""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from ..errors import AlreadyExistsError, NotFoundError
from .core import CatalogCore
from .models import DiscoverFace, DiscoverRun, iso


class DiscoverRunQueries(CatalogCore):
    def save_discover_run(self, name: str, pack: str, threshold: float, cluster_threshold: float,
                          faces: list[dict[str, Any]]) -> None:
        """Store a run and its faces (``cluster``, ``image``, ``source_path``, ``face_index``,
        ``bbox``, ``embedding`` bytes) in one transaction; a taken name is ``AlreadyExistsError``."""
        taken = f"a discover run named {name!r} already exists in this collection: forget it first " \
                f"(`facedb discover --forget {name}`) or choose another name"
        try:
            with self.session() as s:
                if s.scalar(select(DiscoverRun.id).where(DiscoverRun.collection_id == self.cid,
                                                         DiscoverRun.name == name)) is not None:
                    raise AlreadyExistsError(taken)
                run = DiscoverRun(collection_id=self.cid, name=name, pack=pack, threshold=threshold,
                                  cluster_threshold=cluster_threshold)
                s.add(run)
                s.flush()
                s.add_all([DiscoverFace(run_id=run.id, **f) for f in faces])
        except IntegrityError:  # saved meanwhile by another process
            raise AlreadyExistsError(taken) from None

    def _run_id(self, s: Any, name: str) -> int:
        rid = s.scalar(select(DiscoverRun.id).where(DiscoverRun.collection_id == self.cid, DiscoverRun.name == name))
        if rid is None:
            raise NotFoundError(f"no saved discover run named {name!r} in collection {self.collection!r} "
                                "(save one with `facedb discover PATH... --save NAME`)")
        return int(rid)

    def discover_cluster_faces(self, name: str, cluster: int) -> list[dict[str, Any]]:
        """The faces of one cluster of a saved run (``image``, ``source_path``, ``face_index``,
        ``bbox``), in the order they were saved; ``NotFoundError`` for an unknown run or cluster."""
        with self.session() as s:
            rid = self._run_id(s, name)
            rows = s.execute(select(DiscoverFace.image, DiscoverFace.source_path, DiscoverFace.face_index,
                                    DiscoverFace.bbox)
                             .where(DiscoverFace.run_id == rid, DiscoverFace.cluster == cluster)
                             .order_by(DiscoverFace.id)).all()
        if not rows:
            raise NotFoundError(f"discover run {name!r} has no cluster {cluster}")
        return [{"image": i, "source_path": p, "face_index": int(k), "bbox": list(b)} for i, p, k, b in rows]

    def discover_runs(self) -> list[dict[str, Any]]:
        """Every saved run of the collection: ``{name, pack, created_at, faces, clusters}``, by name."""
        with self.session() as s:
            rows = s.execute(select(DiscoverRun.name, DiscoverRun.pack, DiscoverRun.created_at,
                                    func.count(DiscoverFace.id), func.count(func.distinct(DiscoverFace.cluster)))
                             .outerjoin(DiscoverFace, DiscoverFace.run_id == DiscoverRun.id)
                             .where(DiscoverRun.collection_id == self.cid)
                             .group_by(DiscoverRun.id).order_by(DiscoverRun.name)).all()
        return [{"name": n, "pack": p, "created_at": iso(c), "faces": int(f), "clusters": int(k)}
                for n, p, c, f, k in rows]

    def forget_discover_run(self, name: str) -> tuple[int, int]:
        """Delete a saved run, its faces and embeddings (SQLite overwrites the freed bytes:
        ``secure_delete``); returns (faces, clusters) erased."""
        with self.session() as s:
            rid = self._run_id(s, name)
            faces, clusters = s.execute(select(func.count(DiscoverFace.id), func.count(func.distinct(DiscoverFace.cluster)))
                                        .where(DiscoverFace.run_id == rid)).one()
            s.execute(delete(DiscoverFace).where(DiscoverFace.run_id == rid))
            s.execute(delete(DiscoverRun).where(DiscoverRun.id == rid))
        return int(faces), int(clusters)
