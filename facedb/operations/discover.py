"""Discovery (``facedb discover``): who are the people in these photos, enrolled or not?

Every face of every photo is detected and embedded (``Searcher.analyse``, the search path).
Faces that match an enrolled subject are named exactly as ``search`` names them (the nearest
template under the collection's threshold) and form that subject's cluster; every other face is
clustered by ``analysis.clustering`` (average linkage over a kNN graph, chosen by BCubed on LFW:
docs/benchmarks/discover.md). Nothing is stored: a discovery is read-only, like a search.

Cluster ids start at 1: the named clusters first (largest first, then by name), then the unnamed
ones (largest first, then by their first face in input order), so the same photos give the same
ids.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import trace
from ..analysis import clustering, files
from ..analysis.engines import Face
from ..analysis.files import Upload
from ..analysis.video import DEFAULT_SAMPLE_FPS
from ..contract.discover import DEFAULT_CLUSTER_THRESHOLD, DiscoveredCluster, DiscoveredFace, DiscoverReport
from ..contract.models import FailedItem, Match
from ..errors import ImageError
from .search import ImageInput, ProgressFn, Searcher, label_of, video_input


def expand_inputs(paths: Sequence[str | os.PathLike[str] | bytes | Upload]) -> list[ImageInput]:
    """Folders walked as ``import`` walks them (sorted, hidden entries skipped); files, bytes and
    uploads as given."""
    out: list[ImageInput] = []
    for p in paths:
        if isinstance(p, (bytes, Upload)):
            out.append(p)
        else:
            out.extend(files.iter_image_files([p]))
    return out


def source_of(image: ImageInput) -> str | None:
    """The file an input came from, when facedb may reopen it: a path it read itself, or an
    upload's path set by the owner's own client (never a path a remote client names)."""
    if isinstance(image, Upload):
        return image.path
    if isinstance(image, bytes):
        return None
    return str(Path(image).absolute())


def saved_rows(faces: list[FoundFace], cluster_of: list[int]) -> list[dict[str, object]]:
    """The rows ``Catalog.save_discover_run`` stores for a run's faces."""
    return [{"cluster": c, "image": f.label, "source_path": f.source_path, "face_index": f.face_index,
             "bbox": [round(float(v), 1) for v in f.face.bbox],
             "embedding": np.asarray(f.vector, dtype=np.float32).tobytes()} for f, c in zip(faces, cluster_of)]


def cluster_inputs(faces: list[dict[str, object]]) -> tuple[list[str], list[FailedItem]]:
    """The files ``enroll-cluster`` sends through enrollment, and the faces it cannot.

    Enrollment takes the largest face of a photo, so only photos where the cluster's face is
    the largest are sent (the same person, never a neighbour in a group photo: precision first);
    photos sent as bytes have no file facedb may reopen."""
    paths: list[str] = []
    failed: list[FailedItem] = []
    for f in faces:
        image, source = str(f["image"]), f["source_path"]
        if not isinstance(source, str):
            failed.append(FailedItem(path=image, reason="not_on_disk",
                                     message=f"{image}: sent as bytes (or a face of a video), and facedb keeps no "
                                             "copy of photos: enroll a photo file of this person"))
        elif f["face_index"] != 0:
            failed.append(FailedItem(path=image, reason="not_largest_face",
                                     message=f"{image}: the cluster's face is not the largest in the photo and "
                                             "enrollment takes the largest: enroll a crop of that face"))
        elif source not in paths:
            paths.append(source)
    return paths, failed


@dataclass
class FoundFace:
    """A face of the run, with its vector (kept for ``--save``)."""

    image: int  # position of its image in the inputs
    label: str
    face: Face
    vector: np.ndarray
    #: its place among its image's faces, largest first (0 = the largest)
    face_index: int = 0
    #: the file facedb may reopen (``enroll-cluster``): a path it read, or an upload's trusted path
    source_path: str | None = None
    #: a face of a video (the best-weighted frame of its track): seconds into the video
    frame_s: float | None = None


@dataclass
class Discovery:
    """What one ``discover`` found."""

    report: DiscoverReport
    faces: list[FoundFace]
    #: the cluster id of each face
    cluster_of: list[int]
    #: images after walking the folders
    images: int


class Discoverer:
    def __init__(self, searcher: Searcher) -> None:
        self.searcher = searcher

    def analyse(self, images: Sequence[ImageInput], sample_fps: float = DEFAULT_SAMPLE_FPS,
                progress: ProgressFn | None = None) -> tuple[list[FoundFace], list[FailedItem]]:
        """Every embedded face in input order (image, then largest first), and the images without
        one. A video gives one face per track (a face followed across its sampled frames: the
        track's weighted mean embedding, shown by its best frame), not one per frame."""
        found: list[FoundFace] = []
        failed: list[tuple[int, FailedItem]] = []
        videos = [i for i, im in enumerate(images) if video_input(im)]
        photos = [i for i in range(len(images)) if i not in set(videos)]
        for i in videos:
            label = label_of(images[i])
            try:
                seen = self.searcher.video_tracks(images[i], sample_fps, progress)
            except ImageError as exc:
                failed.append((i, FailedItem(path=label, reason=exc.reason, message=str(exc))))
                continue
            finally:
                if progress:
                    progress(1)
            if not seen.tracks:
                failed.append((i, FailedItem(path=label, reason="no_face", message=f"{label}: no face found")))
            for tr in seen.tracks:
                best = max(tr.sightings, key=lambda s: (s.weight, s.face.area))
                found.append(FoundFace(i, label, best.face, tr.template(), 0, None, frame_s=best.t))
        for a in self.searcher.analyse([images[i] for i in photos]):
            a.key = photos[a.key]
            if progress:
                progress(1)
            label = label_of(images[a.key])
            if a.reason:
                failed.append((a.key, FailedItem(path=label, reason=a.reason, message=a.message or a.reason)))
            elif not a.faces:
                failed.append((a.key, FailedItem(path=label, reason="no_face", message=f"{label}: no face found")))
            for j, f in enumerate(a.faces):
                if f.embedding is not None:
                    found.append(FoundFace(a.key, label, f, np.asarray(f.embedding, dtype=np.float32), j,
                                           source_of(images[a.key])))
        found.sort(key=lambda x: x.image)  # stable: faces of one image stay largest first
        failed.sort(key=lambda x: x[0])
        return found, [f for _, f in failed]

    @trace.traced("discover.total")
    def discover(self, paths: Sequence[str | os.PathLike[str] | bytes | Upload], *, threshold: float | None = None,
                 cluster_threshold: float = DEFAULT_CLUSTER_THRESHOLD, sample_fps: float = DEFAULT_SAMPLE_FPS,
                 progress: ProgressFn | None = None) -> Discovery:
        """The report, with the faces and their cluster ids (what ``--save`` keeps)."""
        settings = clustering.ClusterSettings(threshold=cluster_threshold).check()
        thr = self.searcher.pack.threshold if threshold is None else float(threshold)
        images = expand_inputs(paths)
        faces, failed = self.analyse(images, sample_fps, progress)
        report = DiscoverReport(pack=self.searcher.pack.info.name, threshold=thr, cluster_threshold=cluster_threshold,
                                failed=failed)
        if not faces:
            return Discovery(report, faces, [], len(images))
        vectors = np.stack([f.vector for f in faces])
        with trace.span("discover.name", faces=len(faces)):
            named = self.searcher.name_faces(vectors, thr)
        groups: list[tuple[str | None, list[int]]] = []
        by_subject: dict[str, list[int]] = {}
        for i, m in enumerate(named):
            if m is not None:
                by_subject.setdefault(m.subject, []).append(i)
        groups += sorted(by_subject.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        unknown = np.array([i for i, m in enumerate(named) if m is None], dtype=np.int64)
        if len(unknown):
            with trace.span("discover.cluster", faces=len(unknown)):
                labels = clustering.cluster(vectors[unknown], settings)
            order = np.argsort(labels, kind="stable")  # labels are already ranked: size, then first face
            starts = np.searchsorted(labels[order], np.arange(int(labels.max()) + 2))
            groups += [(None, unknown[order[starts[c]:starts[c + 1]]].tolist()) for c in range(int(labels.max()) + 1)]
        cluster_of = [0] * len(faces)
        for cid, (subject, members) in enumerate(groups, 1):
            dfaces = [self._face(faces[i], named[i]) for i in members]
            centre = vectors[members].sum(axis=0)
            rep = int(np.argmax(vectors[members] @ centre))
            report.clusters.append(DiscoveredCluster(id=cid, subject=subject, size=len(members), faces=dfaces,
                                                     representative=dfaces[rep]))
            for i in members:
                cluster_of[i] = cid
        return Discovery(report, faces, cluster_of, len(images))

    @staticmethod
    def _face(f: FoundFace, match: Match | None) -> DiscoveredFace:
        q = f.face.quality
        return DiscoveredFace(image=f.label, bbox=[round(v, 1) for v in f.face.bbox],
                              quality=None if q is None else {k: round(float(v), 4) for k, v in q.items()},
                              frame_s=f.frame_s, score=round(f.face.score, 4),
                              distance=None if match is None else round(float(match.distance), 6))
