"""Videos: `facedb search clip.mp4` follows faces across sampled frames and names each track by
a vote of its frames. The clips are built here from LFW photos (a slideshow with motion, 25 fps,
enrolled people and strangers); no video file is kept in the repository."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from facedb.analysis.video import is_video
from facedb.evaluation.clips import Scene, slideshow

pytestmark = pytest.mark.dataset


@dataclass
class Gallery:
    db: Any
    enrolled: list[str]
    probe: dict[str, Path]
    stranger: Path
    clip: Path
    spans: list[tuple[float, float]]


def _people(lfw: Path, n: int) -> tuple[dict[str, list[Path]], list[Path]]:
    """``n`` people with at least 4 photos, and photos of people with one photo (strangers)."""
    many: dict[str, list[Path]] = {}
    ones: list[Path] = []
    for d in sorted(p for p in lfw.iterdir() if p.is_dir()):
        photos = sorted(d.glob("*.jpg"))
        if len(photos) >= 4 and len(many) < n:
            many[d.name] = photos
        elif len(photos) == 1 and len(ones) < 8:
            ones.append(photos[0])
        if len(many) == n and len(ones) == 8:
            break
    return many, ones


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[Gallery]:
    from facedb import FaceDB

    root = tmp_path_factory.mktemp("video")
    people, strangers = _people(lfw_dir, 2)
    db = FaceDB(home=root / "home", workers=1)
    for name, photos in people.items():
        db.enroll(name, photos[:3])
    a, b = people
    # a stranger whose photo holds one face only (LFW photos may show someone in the background)
    stranger = next(p for p in strangers if len(db.detect(p)) == 1)
    scenes = [Scene(people[a][3], 3.0, a), Scene(stranger, 2.0), Scene(None, 1.0), Scene(people[b][3], 3.0, b)]
    clip = root / "clip.mp4"
    spans = slideshow(clip, scenes)
    try:
        yield Gallery(db, [a, b], {a: people[a][3], b: people[b][3]}, stranger, clip, spans)
    finally:
        db.close()


def test_videos_are_recognised_by_their_first_bytes(gallery: Gallery, face_photo: Path, tmp_path: Path) -> None:
    assert is_video(gallery.clip.read_bytes()[:376])
    avi = tmp_path / "clip.avi"
    slideshow(avi, [Scene(face_photo, 0.2)], fourcc="MJPG")
    assert is_video(avi.read_bytes()[:376])
    assert not is_video(face_photo.read_bytes()[:376])
    heic_head = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
    assert not is_video(heic_head) and is_video(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")


def test_a_video_names_each_enrolled_person_over_their_time_and_no_stranger(gallery: Gallery) -> None:
    rep = gallery.db.search([gallery.clip])
    (res,) = rep.results
    assert res.error is None and res.faces == [] and res.video is not None
    assert res.video.duration_s == pytest.approx(9.0, abs=0.05) and res.video.fps == pytest.approx(25.0)
    assert res.video.frames_read == 36 and res.video.sample_fps == 4.0  # 9 s at 4 per second
    named = [ap for ap in res.appearances if ap.subject is not None]
    assert {ap.subject for ap in named} == set(gallery.enrolled)
    for who, (start, end) in zip(gallery.enrolled, (gallery.spans[0], gallery.spans[3])):
        covered = sum(max(0.0, min(e, end) - max(s, start)) for ap in named if ap.subject == who
                      for s, e in ap.segments)
        outside = sum(max(0.0, e - s) for ap in named if ap.subject == who for s, e in ap.segments) - covered
        assert covered >= 0.9 * (end - start), (who, res.appearances)
        assert outside <= 0.25, (who, res.appearances)
    # the stranger is followed too, and reported unknown
    s0, s1 = gallery.spans[1]
    unknown = [ap for ap in res.appearances if ap.subject is None]
    assert any(s0 - 0.01 <= ap.segments[0][0] < s1 for ap in unknown), res.appearances
    assert all(ap.distance is not None and ap.distance > rep.threshold for ap in unknown)
    d = res.to_dict()
    assert list(d) == ["image", "error", "reason", "faces", "video", "appearances"]
    assert set(d["appearances"][0]) == {"subject", "track", "segments", "distance", "frames"}
    assert json.loads(json.dumps(rep.to_dict())) == rep.to_dict()


def test_one_frame_never_names_anyone(gallery: Gallery, tmp_path: Path) -> None:
    """A face seen in a single sampled frame is reported, unknown, however close it is."""
    who = gallery.enrolled[0]
    clip = tmp_path / "flash.mp4"
    slideshow(clip, [Scene(gallery.probe[who], 0.12), Scene(None, 2.0)])  # 3 frames: sampled once at 4 fps
    (res,) = gallery.db.search([clip]).results
    assert [(ap.subject, ap.frames) for ap in res.appearances] == [(None, 1)], res.appearances
    assert res.appearances[0].distance is not None and res.appearances[0].distance < 0.5  # it did look like them
    # at a higher sampling rate the same face is seen in three frames, and named
    (res,) = gallery.db.search([clip], sample_fps=25).results
    assert [(ap.subject, ap.frames) for ap in res.appearances] == [(who, 3)], res.appearances


def test_photos_and_videos_in_one_search_and_the_sampling_rate(gallery: Gallery) -> None:
    who = gallery.enrolled[1]
    rep = gallery.db.search([gallery.probe[who], gallery.clip], sample_fps=2)
    photo, video = rep.results
    assert photo.video is None and "video" not in photo.to_dict() and photo.faces[0].identity == who
    assert video.video is not None and video.video.frames_read == 18 and video.video.sample_fps == 2.0
    assert {ap.subject for ap in video.appearances if ap.subject} == set(gallery.enrolled)


def test_a_damaged_video_fails_alone(gallery: Gallery, tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00garbage" * 500)
    rep = gallery.db.search([bad, gallery.probe[gallery.enrolled[0]]])
    assert rep.results[0].reason == "corrupt_video" and "cannot be opened" in (rep.results[0].error or "")
    assert rep.results[1].faces[0].identity == gallery.enrolled[0] and rep.n_failed == 1


def test_a_video_through_the_http_api_and_the_cli(gallery: Gallery, tmp_path: Path) -> None:
    """The same appearances over HTTP (an upload, written to a private temporary file) and from
    the CLI (a path, and stdin), as directly."""
    from click.testing import CliRunner
    from fastapi.testclient import TestClient

    from facedb.cli import cli
    from facedb.server.app import create_app

    direct = gallery.db.search([gallery.clip]).results[0].to_dict()["appearances"]
    with TestClient(create_app(gallery.db)) as c:
        res = c.post("/v1/search", files=[("images", ("clip.mp4", gallery.clip.read_bytes(), "video/mp4"))],
                     data={"sample_fps": "4"}, headers={"Authorization": f"Bearer {_key(gallery)}"})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["results"][0]["appearances"] == direct and body["results"][0]["image"] == "clip.mp4"
        bad = c.post("/v1/search", files=[("images", ("clip.mp4", gallery.clip.read_bytes(), "video/mp4"))],
                     data={"sample_fps": "0"}, headers={"Authorization": f"Bearer {_key(gallery)}"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "sample_fps"
    home = str(gallery.db.settings.home)
    gallery.db.close()
    try:
        out = CliRunner().invoke(cli, ["--home", home, "search", str(gallery.clip), "--json"])
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["results"][0]["appearances"] == direct
        piped = CliRunner().invoke(cli, ["--home", home, "search", "-", "--json"], input=gallery.clip.read_bytes())
        assert json.loads(piped.stdout)["results"][0]["appearances"] == direct
        text = CliRunner().invoke(cli, ["--home", home, "search", str(gallery.clip)])
        assert f"-> {gallery.enrolled[0]} (distance" in text.output and "-> unknown" in text.output
        assert "36 frames analysed (4 per second)" in text.output
    finally:
        from facedb import FaceDB

        gallery.db = FaceDB(home=home, workers=1)


_KEYS: dict[int, str] = {}


def _key(gallery: Gallery) -> str:
    if id(gallery.db) not in _KEYS:
        _KEYS[id(gallery.db)] = gallery.db.create_key(f"video-{len(_KEYS)}", "read").key
    return _KEYS[id(gallery.db)]


def test_the_video_benchmark_scores_time_found_strangers_and_wrong_names() -> None:
    """``facedb.evaluation.video.Score``, on appearances made up for the purpose."""
    from types import SimpleNamespace as NS

    from facedb.evaluation.video import Score

    photo = Path("x.jpg")
    scenes = [Scene(photo, 4.0, "ann"), Scene(photo, 2.0), Scene(None, 1.0), Scene(photo, 3.0, "bob")]
    spans = [(0.0, 4.0), (4.0, 6.0), (6.0, 7.0), (7.0, 10.0)]
    score = Score(video_s=10.0, wall_s=2.0)
    score.add("c", scenes, spans, [
        NS(subject="ann", segments=[[0.0, 2.0], [2.5, 4.1]]),  # 3.5 of ann's 4 s (0.1 s over: tolerated)
        NS(subject="ann", segments=[[4.0, 5.0]]),  # the stranger named as ann
        NS(subject="ann", segments=[[7.0, 8.0]]),  # bob's scene named as ann
        NS(subject="bob", segments=[[7.0, 10.0]]),
        NS(subject=None, segments=[[4.0, 6.0]]),
    ])
    s = score.summary()
    assert s["per_person"] == {"ann": 0.875, "bob": 1.0} and s["people_found_90"] == 1
    assert s["strangers_named"] == 1 and s["wrong_names"] == 1 and s["unknown_tracks"] == 1
    assert s["found_time_share"] == round(6.5 / 7.0, 4) and s["video_s_per_wall_s"] == 5.0


def test_discover_on_a_video_gives_one_face_per_track(gallery: Gallery) -> None:
    """``facedb discover clip.mp4``: each track is one face (its best frame, with ``frame_s``),
    the enrolled people are named clusters, the stranger an unnamed one."""
    rep = gallery.db.discover([gallery.clip, gallery.probe[gallery.enrolled[0]]])
    tracks = gallery.db.search([gallery.clip]).results[0].appearances or []
    video_faces = [f for c in rep.clusters for f in c.faces if f.frame_s is not None]
    assert len(video_faces) == len(tracks) and rep.faces == len(tracks) + 1
    named = {c.subject: c for c in rep.clusters if c.subject is not None}
    assert set(named) == set(gallery.enrolled)
    a, b = gallery.enrolled
    assert named[a].size == 2 and {f.frame_s is None for f in named[a].faces} == {True, False}  # the photo too
    (fa,) = [f for f in named[a].faces if f.frame_s is not None]
    assert gallery.spans[0][0] <= fa.frame_s < gallery.spans[0][1] and fa.image == str(gallery.clip)
    (fb,) = named[b].faces
    assert gallery.spans[3][0] <= (fb.frame_s or 0) < gallery.spans[3][1]
    s0, s1 = gallery.spans[1]
    assert any(c.subject is None and any(s0 <= (f.frame_s or -1) < s1 for f in c.faces) for c in rep.clusters)


def test_search_and_discover_report_progress(gallery: Gallery) -> None:
    """``progress(1)`` per input answered, ``progress(0)`` per analysed video frame: what the CLI's
    progress bars and the jobs' ``done`` count, and where a job's cancellation takes effect."""
    calls: list[int] = []
    photo = gallery.probe[gallery.enrolled[0]]
    gallery.db.search([photo, gallery.clip, photo], progress=calls.append)
    assert calls.count(1) == 3 and calls.count(0) == 36
    calls.clear()
    gallery.db.discover([gallery.clip, photo], progress=calls.append)
    assert calls.count(1) == 2 and calls.count(0) == 36
