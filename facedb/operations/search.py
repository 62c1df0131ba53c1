"""Search (1:N): every face of every probe, its nearest enrolled subjects or faces, exactly;
verification (1:1); and the scikit-learn reference cross-check."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .. import trace
from ..analysis import files
from ..analysis.engines import Face, PackInfo
from ..analysis.files import Upload
from ..analysis.packs import ActivePack
from ..analysis.pipeline import Analysis, Analyzer
from ..analysis.tracks import Track, follow
from ..analysis.video import DEFAULT_SAMPLE_FPS, VideoReader, head_of, is_video, video_file
from ..catalog.database import Catalog, FaceHit
from ..contract.models import Appearance, FaceResult, ImageResult, Match, SearchReport, VerifyResult, VideoSummary
from ..errors import FacedbError, ImageError, IndexCorruptError, ModelError, NotFoundError, UnavailableError
from ..index.chroma_index import ChromaIndex, Neighbour, preload
from ..index.templates import TemplateCache
from ..store.stores import Store

ImageInput = str | os.PathLike[str] | bytes | Upload
By = Literal["subject", "face"]
#: How subjects are scored: "template" (distance to the normalised mean of all their faces: the
#: default, measured to miss fewer enrolled people) or "best" (distance to their closest face).
Scoring = Literal["template", "best"]
SCORINGS: tuple[Scoring, ...] = ("template", "best")
#: The largest photo ``Searcher.search_async`` sends to a worker from the event loop.
LOOP_MAX_BYTES = 4 << 20
QueryFn = Callable[[np.ndarray, int], list[list[Neighbour]]]
#: Called with 1 as each input (photo or video) is answered, and with 0 after each analysed frame
#: of a video: a caller may stop a long search by raising from it.
ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class VideoTracks:
    """What a video holds: its summary, the faces followed through it, and the time between
    two analysed frames."""

    summary: VideoSummary
    tracks: list[Track]
    step_s: float


def video_input(image: ImageInput) -> bool:
    """Whether an input is a video (by its first bytes, never its name)."""
    if isinstance(image, Upload):
        return is_video(image.data[:376])
    if isinstance(image, bytes):
        return is_video(image[:376])
    return is_video(head_of(image))


def label_of(image: ImageInput) -> str:
    """How an input is named in results: its path, an upload's name, or ``<stdin>``."""
    if isinstance(image, Upload):
        return image.name
    if isinstance(image, bytes):
        return "<stdin>"
    return str(image)


class Searcher:
    def __init__(self, store: Store, pack: ActivePack, analyzer: Analyzer) -> None:
        self.store = store
        self.pack = pack
        self.analyzer = analyzer
        self._template_caches: dict[str, TemplateCache] = {}
        self._templates_lock = threading.Lock()
        #: (collection id, pack) -> (template seq, faces the index holds), as ``_require_consistent``
        #: last found the index and the catalog agreeing
        self._indexed: dict[tuple[int, str], tuple[int, int]] = {}

    # -- analysis ---------------------------------------------------------------------
    def analyse(self, images: Sequence[ImageInput], max_faces: int | None = None,
                aligned: bool = False, meanwhile: Callable[[], None] | None = None) -> Iterator[Analysis]:
        """Detect and embed every face of every image (in any order; ``key`` = position);
        ``aligned``: each image is an aligned face crop, embedded whole (``analysis.aligned``);
        ``meanwhile``: see ``Analyzer.stream``.

        Files are read lazily; many files go through the worker pool (always, once it runs)."""
        unread: list[Analysis] = []
        n_files = sum(not isinstance(im, (bytes, Upload)) for im in images)

        def inputs() -> Iterator[tuple[int, bytes, str]]:
            for i, im in enumerate(images):
                if isinstance(im, Upload):
                    yield i, im.data, im.name
                elif isinstance(im, bytes):
                    yield i, im, "<stdin>"
                else:
                    try:
                        yield i, files.read_bytes(im), str(im)
                    except ImageError as exc:
                        unread.append(Analysis(i, [], reason=exc.reason, message=str(exc)))

        yield from self.analyzer.stream(inputs(), n_files, max_faces, aligned, meanwhile=meanwhile)
        yield from unread

    def detect(self, image: ImageInput, max_faces: int | None = None, aligned: bool = False) -> list[Face]:
        """All faces in one image, largest first, the first ``max_faces`` embedded (raises
        ``ImageError`` when it cannot be read)."""
        a = next(iter(self.analyse([image], max_faces, aligned)))
        if a.reason:
            raise ImageError(a.reason, a.message or a.reason)
        return a.faces

    # -- 1:N ----------------------------------------------------------------------------
    @trace.traced("search.total")
    def search(self, images: Sequence[ImageInput], *, k: int, threshold: float | None, by: By,
               reference: bool, scoring: Scoring = "template", sample_fps: float = DEFAULT_SAMPLE_FPS,
               progress: ProgressFn | None = None, aligned: bool = False) -> SearchReport:
        scoring = checked_options(k, by, scoring)
        if scoring == "best":
            preload()
        thr = self.pack.threshold if threshold is None else float(threshold)
        images = list(images)
        results = [ImageResult(image=label_of(im)) for im in images]
        videos = {i for i, im in enumerate(images) if video_input(im)}
        for i in sorted(videos):
            self._video(images[i], results[i], thr, sample_fps, progress)
            if progress:
                progress(1)
        photos = [i for i in range(len(images)) if i not in videos]
        found: dict[int, list[Face]] = {}
        # The templates' catalog reads, made while the workers run the model (none if they fail:
        # the search then makes them after, and raises what they raise, as it always did).
        ready: list[TemplateCache] = []
        meanwhile = (lambda: self._fresh_templates(ready)) if scoring == "template" and not reference else None
        for a in self.analyse([images[i] for i in photos], aligned=aligned, meanwhile=meanwhile):
            a.key = photos[a.key]
            if progress:
                progress(1)
            found[a.key] = _faces_of(a, results[a.key])
        return self._answer(results, found, k, thr, by, reference, scoring, ready[0] if ready else None)

    async def search_async(self, image: Upload, *, k: int, threshold: float | None, by: By, reference: bool,
                           scoring: Scoring = "template", aligned: bool = False) -> SearchReport | None:
        """``search`` of one uploaded photo with the default scoring (subjects by template, no
        reference), run on the event loop: the worker is awaited there (``Analyzer.analyse_async``)
        and the templates are scored there, with no thread (``facedb serve``'s search route; this
        saves the server two thread hand-offs a search). None when the search must go the usual
        way, in a thread: a video, another scoring (those query the face index), the reference
        mode, or no worker idle. The loop is held only for work that is quick: a photo of at most
        ``LOOP_MAX_BYTES`` (the worker reads it from its pipe while the loop writes it), and the
        catalog reads of a search by template (``TemplateCache``) on a SQLite file, which are
        answered from memory while nothing commits; with PostgreSQL each search reads it over the
        network, so the search goes the usual way."""
        scoring = checked_options(k, by, scoring)
        if (scoring != "template" or reference or len(image.data) > LOOP_MAX_BYTES
                or self.store.catalog.memo is None or video_input(image)):
            return None
        t0 = time.perf_counter()
        thr = self.pack.threshold if threshold is None else float(threshold)
        ready: list[TemplateCache] = []
        a = await self.analyzer.analyse_async((0, image.data, image.name), aligned=aligned,
                                              meanwhile=lambda: self._fresh_templates(ready))
        if a is None:
            return None
        results = [ImageResult(image=label_of(image))]
        report = self._answer(results, {0: _faces_of(a, results[0])}, k, thr, by, False, scoring,
                              ready[0] if ready else None)
        trace.record("search.total", t0)
        return report

    def _answer(self, results: list[ImageResult], found: dict[int, list[Face]], k: int, thr: float, by: By,
                reference: bool, scoring: Scoring, ready: TemplateCache | None) -> SearchReport:
        """The report: each found face (by image position) with its matches."""
        probes = [(results[i], f) for i in sorted(found) for f in found[i] if f.embedding is not None]
        report = SearchReport(pack=self.pack.info.name, threshold=thr, by=by, k=k, results=results,
                              reference=reference, scoring=scoring)
        if not probes:
            return report
        vectors = np.stack([f.embedding for _, f in probes if f.embedding is not None])
        if reference:
            from ..index.reference import ReferenceIndex  # imports scikit-learn: not under the lock

            ReferenceIndex.preload()
        with trace.span("search.match", scoring=scoring, by=by, probes=len(probes)):
            if scoring == "template":
                matches, agree = self._by_template(vectors, k, thr, reference, ready)
            else:
                matches, agree = self._by_index(vectors, k, by, thr, reference)
        for (res, face), out, ok in zip(probes, matches, agree):
            identity = out[0].subject if out and out[0].match else None
            res.faces.append(FaceResult(bbox=[round(v, 1) for v in face.bbox], score=round(face.score, 4),
                                        identity=identity, matches=out, reference_agrees=ok,
                                        quality=_rounded(face.quality)))
        return report

    # -- videos ---------------------------------------------------------------------------
    @trace.traced("search.video_tracks")
    def video_tracks(self, image: ImageInput, sample_fps: float, progress: ProgressFn | None = None
                     ) -> VideoTracks:
        """The faces of a video followed across its sampled frames as tracks
        (``facedb.analysis.tracks``); ``ImageError`` when it cannot be read."""
        label = label_of(image)
        data = image.data if isinstance(image, Upload) else image if isinstance(image, bytes) else None
        path = None if isinstance(image, (Upload, bytes)) else image
        with video_file(path, data, label) as file, VideoReader(file, label, sample_fps) as reader:
            # Frames are analysed as photos are (the worker pool), read as the pool asks.
            frames: dict[int, float] = {}
            faces: dict[int, list[Face]] = {}
            jpegs = ((i, fr.jpeg, f"{label}@{fr.t:.2f}s") for i, fr in enumerate(_recorded(reader.frames(), frames)))
            for a in self.analyzer.stream(jpegs, 64):
                faces[a.key] = a.faces
                if progress:
                    progress(0)
            info = reader.info()
        tracks = follow([(frames[i], faces.get(i, [])) for i in sorted(frames)])
        summary = VideoSummary(duration_s=info.duration_s, fps=info.fps, frames_read=info.frames_read,
                               sample_fps=round(float(sample_fps), 3))
        return VideoTracks(summary, tracks, reader.step_s)

    def _video(self, image: ImageInput, res: ImageResult, thr: float, sample_fps: float,
               progress: ProgressFn | None = None) -> None:
        """Fill ``res`` with the video's appearances: its tracks, each named by a vote of its
        frames (see ``_name_tracks``); unknown tracks are listed too."""
        try:
            found = self.video_tracks(image, sample_fps, progress)
        except ImageError as exc:
            res.error, res.reason = str(exc), exc.reason
            return
        res.video = found.summary
        res.appearances = self._name_tracks(found.tracks, thr, found.step_s, found.summary.duration_s)

    def _name_tracks(self, tracks: list[Track], thr: float, step_s: float, duration_s: float) -> list[Appearance]:
        """Who each track is: the subject whose template is nearest to most of the track's
        quality weight (each sighting votes for its nearest subject when within the threshold),
        when that subject has at least half the track's weight, at least two sightings, and the
        track's weighted mean face is within the threshold of its template. Anything less is
        unknown: a single frame, however sharp, never names anyone."""
        if not tracks:
            return []
        info = self.pack.contract()
        cache = self._templates(info.name)
        cache.refresh()
        vectors = np.stack([s.embedding for tr in tracks for s in tr.sightings] + [tr.template() for tr in tracks])
        ranked = cache.query(vectors, 1)
        n_sightings = sum(len(tr.sightings) for tr in tracks)
        per_sighting, per_track = ranked[:n_sightings], ranked[n_sightings:]
        names = self.store.catalog.subject_names(sorted({sid for row in ranked for sid, _ in row}))
        out: list[Appearance] = []
        pos = 0
        for tr, mean in zip(tracks, per_track):
            votes: dict[int, float] = {}
            counts: dict[int, int] = {}
            total = 0.0
            for s in tr.sightings:
                row = per_sighting[pos]
                pos += 1
                total += s.weight
                if row and row[0][1] <= thr and s.weight > 0:
                    sid = row[0][0]
                    votes[sid] = votes.get(sid, 0.0) + s.weight
                    counts[sid] = counts.get(sid, 0) + 1
            subject: str | None = None
            distance = round(float(mean[0][1]), 6) if mean else None
            if votes:
                sid = max(votes, key=lambda x: votes[x])
                if (votes[sid] >= 0.5 * total and counts[sid] >= 2 and mean and mean[0][0] == sid
                        and mean[0][1] <= thr and sid in names):
                    subject = names[sid]
            out.append(Appearance(subject=subject, track=tr.id, segments=tr.segments(step_s, duration_s),
                                  distance=distance, frames=len(tr.sightings)))
        return out

    def _by_index(self, vectors: np.ndarray, k: int, by: By, thr: float, reference: bool
                  ) -> tuple[list[list[Match]], list[bool | None]]:
        """Nearest faces (or subjects by their closest face) from the face index (Chroma), exactly
        ranked; the reference mode asks scikit-learn the same over the catalog's embeddings."""
        with self.store.reading() as index:
            info = self.pack.contract()
            total = self._require_consistent(index, info)
            catalog = self.store.catalog
            ranked = ranked_hits(lambda v, n: index.query(info, v, n), vectors, k, by, total, catalog)
            agree: list[bool | None] = [None] * len(vectors)
            if reference:
                from ..index.reference import ReferenceIndex

                ids, mat = catalog.embeddings(info.name)
                ref = ReferenceIndex(ids, mat)
                ref_ranked = ranked_hits(ref.query, vectors, k, by, len(ids), catalog)
                agree = [same_answer(a, b) for a, b in zip(ranked, ref_ranked)]
        matches = [[Match(subject=h.subject, distance=round(d, 6), match=d <= thr, face_id=h.face_id,
                          image=h.image_path, face_distance=round(d, 6)) for h, d in row]
                   for row in ranked]
        return matches, agree

    def _fresh_templates(self, out: list[TemplateCache]) -> None:
        """The pack's contract checked and its template cache refreshed, into ``out``; nothing
        when either fails (``_by_template`` does both again and raises)."""
        try:
            cache = self._templates(self.pack.contract().name)
            cache.refresh()
        except Exception:
            return
        out.append(cache)

    def _by_template(self, vectors: np.ndarray, k: int, thr: float, reference: bool,
                     fresh: TemplateCache | None = None) -> tuple[list[list[Match]], list[bool | None]]:
        """The k subjects whose templates are nearest, exactly (every template is scored); each
        with its closest face. Only the catalog is read: no index, no home lock. ``fresh``: the
        cache, checked and refreshed already during this search (``_fresh_templates``)."""
        info = self.pack.contract() if fresh is None else self.pack.info
        cache = fresh
        if cache is None:
            cache = self._templates(info.name)
            cache.refresh()
        ranked = cache.query(vectors, k)
        faces: SubjectFaces = cache.subject_faces(sorted({sid for row in ranked for sid, _ in row}))
        matches = [subject_matches(v, row, faces, thr) for v, row in zip(vectors, ranked)]
        agree: list[bool | None] = [None] * len(vectors)
        if reference:
            agree = self._reference_templates(info.name, vectors, k, ranked)
        return matches, agree

    def _reference_templates(self, pack: str, vectors: np.ndarray, k: int,
                             ranked: list[list[tuple[int, float]]]) -> list[bool | None]:
        """scikit-learn's exact neighbours among templates computed afresh from the faces."""
        from ..index.reference import ReferenceIndex
        from ..index.templates import templates_from_faces

        sids, emb = self.store.catalog.face_embeddings_by_subject(pack)
        uniq, tmpl = templates_from_faces(sids, emb)
        ref = ReferenceIndex(uniq, tmpl).query(vectors, k)
        return [_same_subjects(a, b) for a, b in zip(ranked, ref)]

    def name_faces(self, vectors: np.ndarray, threshold: float | None = None) -> list[Match | None]:
        """The subject each face vector matches, as ``search`` names a face (the nearest template
        under the threshold, with its closest face), or None (``facedb discover``)."""
        thr = self.pack.threshold if threshold is None else float(threshold)
        if len(vectors) == 0:
            return []
        matches, _ = self._by_template(vectors, 1, thr, False)
        return [row[0] if row and row[0].match else None for row in matches]

    def _templates(self, pack: str) -> TemplateCache:
        with self._templates_lock:
            cache = self._template_caches.get(pack)
            if cache is None:
                cache = self._template_caches[pack] = TemplateCache(self.store.catalog, pack)
            return cache

    def _require_consistent(self, index: ChromaIndex, info: PackInfo) -> int:
        """Cheap invariant before a search: the index holds the indexed SQL faces. Returns how
        many faces the index holds.

        With an index of its own (the home lock), the two counts are equal. On shared stores other
        processes write meanwhile, and both write orders keep Chroma's count at least the
        catalog's (a face enters Chroma before SQL marks it, and leaves SQL before Chroma) when
        the catalog is counted first; a delete finishing between the two counts can break that for
        a moment, so a shortfall is counted again before it is reported.

        Both counts are taken again only when the template sequence moved since they last agreed
        (one primary-key read): it moves in every transaction that changes which faces are
        indexed, and the counts cost a walk of an index of every face (9 ms at 100k faces) and,
        on a Chroma server, a request. The sequence is read first, so a write between the reads
        only costs a recount at the next search."""
        catalog = self.store.catalog
        key = (catalog.cid, info.name)
        for attempt in range(3 if index.shared else 1):
            seq = catalog.template_seq()
            hit = self._indexed.get(key)
            if hit is not None and hit[0] == seq:
                return hit[1]
            n_sql = catalog.count_indexed(info.name)
            try:
                n_index = index.count(info)
            except (ModelError, IndexCorruptError, UnavailableError):
                raise
            except Exception as exc:
                raise IndexCorruptError(
                    f"the search index cannot be read ({exc}); run `facedb check --repair` to rebuild it"
                ) from None
            if n_index == n_sql or (index.shared and n_index > n_sql):
                self._indexed[key] = (seq, n_index)
                return n_index
            if attempt < 2 and index.shared:
                time.sleep(0.05)
        raise IndexCorruptError(
            f"the search index holds {n_index} faces but the catalog has {n_sql} for pack "
            f"{info.name!r}; run `facedb check --repair` to rebuild the index from the catalog"
        )

    # -- 1:1 ----------------------------------------------------------------------------
    def verify(self, image: ImageInput, subject: str, *, threshold: float | None, aligned: bool = False) -> VerifyResult:
        thr = self.pack.threshold if threshold is None else float(threshold)
        info = self.pack.info
        catalog = self.store.catalog
        sub_id = catalog.subject_id(subject)
        label = label_of(image)
        # Every face is embedded and compared: "is Ada in this group photo?" is about the face
        # that looks most like Ada, not about whoever is largest.
        faces = self.detect(image, aligned=aligned)
        embedded = [(i, f) for i, f in enumerate(faces) if f.embedding is not None]
        if not embedded:
            raise ImageError("no_face", f"{label}: no face found")
        ids, mat = catalog.embeddings(info.name, subject_id=sub_id)
        if not len(ids):
            raise NotFoundError(f"subject {subject!r} has no faces enrolled with pack {info.name!r}")
        self.pack.contract()
        probes = np.stack([f.embedding for _, f in embedded if f.embedding is not None])
        dists = 1.0 - probes @ mat.T  # (faces in the image, the subject's faces)
        p, j = np.unravel_index(int(np.argmin(dists)), dists.shape)
        index, face = embedded[int(p)]
        d = max(0.0, float(dists[p, j]))
        hit = catalog.hits([int(ids[j])])[int(ids[j])]
        return VerifyResult(image=label, subject=subject, pack=info.name, threshold=thr, distance=round(d, 6),
                            match=d <= thr, face_id=int(ids[j]), matched_image=hit.image_path,
                            faces_in_image=len(faces), face_bbox=[round(v, 1) for v in face.bbox],
                            face_index=index)


SubjectFaces = dict[int, list[tuple[int, str, np.ndarray, str]]]


def subject_matches(v: np.ndarray, ranked: list[tuple[int, float]], faces: SubjectFaces, thr: float) -> list[Match]:
    """Subjects ranked by template distance as ``Match``es, each with its face closest to ``v``
    (``faces``: subject id -> (face id, name, embedding, image path)); a subject with no face
    there (deleted since the template cache was read) is left out."""
    out = []
    for sid, d in ranked:
        mine = faces.get(sid)
        if not mine:
            continue
        dists = 1.0 - np.stack([emb for _, _, emb, _ in mine]) @ v
        j = int(np.argmin(dists))
        fid, name, _, path = mine[j]
        out.append(Match(subject=name, distance=round(d, 6), match=d <= thr, face_id=fid, image=path,
                         face_distance=round(max(0.0, float(dists[j])), 6)))
    return out


def ranked_hits(query: QueryFn, vectors: np.ndarray, k: int, by: By, total: int, catalog: Catalog
                ) -> list[list[tuple[FaceHit, float]]]:
    """Top-k (hit, distance) per probe: nearest faces, or nearest subjects by their best face.

    For subjects, neighbours are fetched until k distinct subjects are seen (or all faces):
    any subject not seen then is farther than every face seen, so the answer is exact.
    Hits that SQL does not know as indexed are dropped (never a searchable orphan).
    """
    out: list[list[tuple[FaceHit, float]]] = [[] for _ in range(len(vectors))]
    todo = list(range(len(vectors)))
    n = k if by == "face" else max(4 * k, 32)
    while todo and total > 0:
        n = min(n, total)
        neigh = query(vectors[todo], n)
        hits = catalog.hits(list({nb.face_id for row in neigh for nb in row}))
        again = []
        for pos, row in zip(todo, neigh):
            chosen: list[tuple[FaceHit, float]] = []
            seen: set[int] = set()
            for nb in row:
                h = hits.get(nb.face_id)
                if h is None or not h.indexed:
                    continue
                if by == "subject":
                    if h.subject_id in seen:
                        continue
                    seen.add(h.subject_id)
                chosen.append((h, nb.distance))
                if len(chosen) == k:
                    break
            out[pos] = chosen
            if len(chosen) < k and n < total:
                again.append(pos)
        todo = again
        n *= 4
    return out


def _recorded(frames: Iterator[Any], times: dict[int, float]) -> Iterator[Any]:
    """``frames`` as they come, noting each one's time in ``times`` (by position)."""
    for i, fr in enumerate(frames):
        times[i] = fr.t
        yield fr


def checked_options(k: int, by: By, scoring: Scoring) -> Scoring:
    """The scoring a search uses (faces are ranked by their own distance), after checking the
    options a caller of the Python API may get wrong."""
    if by not in ("subject", "face"):
        raise FacedbError(f"by must be 'subject' or 'face', not {by!r}")
    if scoring not in SCORINGS:
        raise FacedbError(f"scoring must be one of {', '.join(SCORINGS)}, not {scoring!r}")
    if k < 1:
        raise FacedbError("k must be at least 1")
    return scoring if by == "subject" else "best"


def _faces_of(a: Analysis, res: ImageResult) -> list[Face]:
    """An image's analysed faces; its error and reason go into ``res`` when it has none."""
    if a.reason:
        res.error, res.reason = a.message or a.reason, a.reason
    elif not a.faces:
        res.error, res.reason = f"{res.image}: no face found", "no_face"
    return a.faces


def _rounded(quality: dict[str, float] | None) -> dict[str, float] | None:
    return None if quality is None else {k: round(float(v), 4) for k, v in quality.items()}


def _same_subjects(a: list[tuple[int, float]], b: list[Neighbour], tol: float = 1e-4) -> bool:
    """Same ranked subjects (the reference's neighbours carry subject ids), reordered only
    between near-equal distances."""
    if len(a) != len(b) or not all(abs(da - nb.distance) <= tol for (_, da), nb in zip(a, b)):
        return False
    return {sid for sid, _ in a} == {nb.face_id for nb in b}


def same_answer(a: list[tuple[Any, float]], b: list[tuple[Any, float]], tol: float = 1e-4) -> bool:
    """Same ranked answer (ids), allowing reordering only between near-equal distances."""
    if len(a) != len(b):
        return False
    if [h.face_id for h, _ in a] == [h.face_id for h, _ in b]:
        return all(abs(da - db) <= tol for (_, da), (_, db) in zip(a, b))
    return all(abs(da - db) <= tol for (_, da), (_, db) in zip(a, b)) and (
        {h.subject_id for h, _ in a} == {h.subject_id for h, _ in b})
