"""Enrollment never stores a stranger under a name (issue 16): photos with several faces are
resolved against the subject's other faces, or refused as ``ambiguous_faces``; and aligned
112x112 crops are embedded as they are (``aligned``).

Real faces: LFW photos (skipped without ../shared/datasets). A group photo is built by pasting
the faces of four different people side by side, the subject's not the largest.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from dbtools import run_cli
from fastapi.testclient import TestClient
from PIL import Image

from facedb.analysis import imaging
from facedb.analysis.engines import load_engine
from facedb.analysis.files import Upload
from facedb.api import FaceDB
from facedb.contract.models import ImportReport
from facedb.server.app import create_app

SUBJECT = "Tony_Blair"
STRANGERS = ("Colin_Powell", "Gerhard_Schroeder", "George_W_Bush")
OTHERS = ("Donald_Rumsfeld", "Jacques_Chirac", "Vladimir_Putin")


def _face_of(path: Path, side: int) -> Image.Image:
    """The centre of an LFW photo (the face, without the background people some have), resized."""
    with Image.open(path) as im:
        return im.convert("RGB").crop((50, 40, 200, 190)).resize((side, side))


def _paste(paths: list[Path], sides: list[int], out: Path) -> list[float]:
    """A group photo of ``paths`` side by side; the left x of each pasted face."""
    canvas = Image.new("RGB", (sum(sides) + 10 * (len(sides) + 1), max(sides) + 20), (120, 120, 120))
    x, lefts = 10, []
    for p, side in zip(paths, sides):
        canvas.paste(_face_of(p, side), (x, 10))
        lefts.append(float(x))
        x += side + 10
    canvas.save(out, quality=95)
    return lefts


@dataclass(frozen=True)
class Photos:
    gallery: list[Path]      # the subject's own photos, one face each
    group: Path              # the subject (not the largest) and three strangers
    subject_x: tuple[float, float]  # where the subject's face is in ``group`` (x range)
    strangers: Path          # four strangers, none of them the subject
    stranger_probe: Path     # another photo of the group's largest stranger


@pytest.fixture(scope="module")
def photos(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Photos:
    out = tmp_path_factory.mktemp("groups")
    mine = sorted((lfw_dir / SUBJECT).iterdir())
    firsts = {p: sorted((lfw_dir / p).iterdir()) for p in STRANGERS + OTHERS}
    # The subject second, 140 px; the strangers around it, the last one the largest (200 px).
    sides = [150, 140, 150, 200]
    lefts = _paste([firsts[STRANGERS[0]][0], mine[0], firsts[STRANGERS[1]][0], firsts[STRANGERS[2]][0]], sides,
                   out / "group.jpg")
    _paste([firsts[p][0] for p in OTHERS] + [firsts[STRANGERS[2]][0]], [150, 150, 150, 200], out / "strangers.jpg")
    return Photos(gallery=mine[1:9], group=out / "group.jpg", subject_x=(lefts[1], lefts[1] + sides[1]),
                  strangers=out / "strangers.jpg", stranger_probe=firsts[STRANGERS[2]][1])


@pytest.fixture()
def db(tmp_path: Path) -> Iterator[FaceDB]:
    d = FaceDB(home=tmp_path / "home", workers=1, write_batch=1)  # one write per photo: order shows
    try:
        yield d
    finally:
        d.close()


def _faces_in(path: Path) -> list[tuple[float, float, float, float]]:
    return [f.bbox for f in load_engine("sface-flip").analyze(imaging.load(path).pixels, max_faces=0)]


def _stored_boxes(db: FaceDB, subject: str) -> list[list[float]]:
    """The boxes of the faces stored from the group photo (the files whose name has "group")."""
    return [f["bbox"] for im in db.show(subject).images if "group" in Path(im["path"]).name for f in im["faces"]]


def _is_subjects_face(box: tuple[float, float, float, float] | list[float], photos: Photos) -> bool:
    x1, _, x2, _ = box
    return photos.subject_x[0] - 5 <= (x1 + x2) / 2 <= photos.subject_x[1] + 5


def test_the_group_photo_has_four_faces_and_the_subject_is_not_the_largest(photos: Photos) -> None:
    boxes = _faces_in(photos.group)
    assert len(boxes) == 4
    assert not _is_subjects_face(boxes[0], photos)
    assert sum(_is_subjects_face(b, photos) for b in boxes) == 1


def test_group_photo_with_the_subjects_photos_takes_their_face(db: FaceDB, photos: Photos) -> None:
    rep = db.enroll("Tony", [*photos.gallery, photos.group])
    assert rep.enrolled == len(photos.gallery) + 1 and not rep.failed
    (group,) = [im for im in rep.images if im.image == str(photos.group)]
    assert group.faces == 4 and group.taken is not None and group.taken > 0
    assert _is_subjects_face(_faces_in(photos.group)[group.taken], photos)
    assert {im.faces for im in rep.images if im is not group} == {1}
    assert all(im.taken == 0 for im in rep.images if im is not group)
    (box,) = _stored_boxes(db, "Tony")
    assert _is_subjects_face(box, photos)
    # The largest stranger was not stored under the name: another photo of him is not "Tony".
    face = db.search([photos.stranger_probe]).results[0].faces[0]
    assert face.identity is None


def test_group_photo_alone_is_refused_until_a_face_is_chosen(db: FaceDB, photos: Photos) -> None:
    rep = db.enroll("Tony", [photos.group])
    assert rep.enrolled == 0
    (fail,) = rep.failed
    assert fail.reason == "ambiguous_faces" and "4 faces" in fail.message and "--face" in fail.message
    assert [(im.faces, im.taken) for im in rep.images] == [(4, None)]
    assert [f.reason for f in db.failures("Tony")] == ["ambiguous_faces"]
    # Chosen by the caller: face N, largest first.
    subject_index = next(i for i, b in enumerate(_faces_in(photos.group)) if _is_subjects_face(b, photos))
    chosen = db.enroll("Tony", [Upload("group-again.jpg", photos.group.read_bytes() + b"\0")], face=subject_index)
    assert chosen.enrolled == 1 and chosen.images[0].taken == subject_index
    (box,) = _stored_boxes(db, "Tony")
    assert _is_subjects_face(box, photos)
    no_such = db.enroll("Tony", [Upload("g3.jpg", photos.group.read_bytes() + b"\0\0")], face=4)
    assert no_such.failed[0].reason == "no_such_face"
    # The old behaviour, asked for: the largest face, whoever it is.
    largest = db.enroll("Other", [photos.group], multi_face="largest")
    assert largest.enrolled == 1 and largest.images[0].taken == 0


def test_resolution_does_not_depend_on_the_order_files_arrive_in(tmp_path: Path, photos: Photos) -> None:
    inputs = [Upload(p.name, p.read_bytes()) for p in [*photos.gallery, photos.group]]
    outcomes = []
    for name, order in (("last", inputs), ("first", [inputs[-1], *inputs[:-1]])):
        with FaceDB(home=tmp_path / name, workers=1, write_batch=1) as d:
            rep = d.enroll("Tony", order)
            group = next(im for im in rep.images if im.image == "group.jpg")
            outcomes.append((rep.enrolled, len(rep.failed), group.taken))
            (box,) = _stored_boxes(d, "Tony")
            assert _is_subjects_face(box, photos)
    assert outcomes[0] == outcomes[1] and outcomes[0][2] is not None


def test_import_stores_no_face_of_a_strangers_group_photo(tmp_path: Path, photos: Photos) -> None:
    root = tmp_path / "people"
    (root / "Tony").mkdir(parents=True)
    for p in photos.gallery:
        (root / "Tony" / p.name).write_bytes(p.read_bytes())
    # "0-" sorts first: the group photo is read before the subject's own photos.
    (root / "Tony" / "0-strangers.jpg").write_bytes(photos.strangers.read_bytes())
    (root / "Tony" / "0-group.jpg").write_bytes(photos.group.read_bytes())
    with FaceDB(home=tmp_path / "home", workers=1, write_batch=1) as d:
        rep = d.import_dir(root)
        (tony,) = rep.subjects
        assert [(f.path.rsplit("/", 1)[-1], f.reason) for f in tony.failed] == [("0-strangers.jpg", "ambiguous_faces")]
        assert "4 faces" in tony.failed[0].message
        assert tony.enrolled == len(photos.gallery) + 1
        assert d.search([photos.stranger_probe]).results[0].faces[0].identity is None
        again = ImportReport.from_dict(json.loads(json.dumps(rep.to_dict())))
        assert again.subjects[0].images == tony.images  # the new field round-trips


def test_cli_exit_codes_and_the_per_image_lines(tmp_path: Path, photos: Photos) -> None:
    home = tmp_path / "home"
    code, out, _ = run_cli(home, "enroll", "Tony", str(photos.group), "--json")
    body = json.loads(out)
    assert code == 3 and body["subjects"][0]["failed"][0]["reason"] == "ambiguous_faces"
    assert body["subjects"][0]["images"] == [{"image": str(photos.group), "faces": 4, "taken": None}]
    subject_number = 1 + next(i for i, b in enumerate(_faces_in(photos.group)) if _is_subjects_face(b, photos))
    code, out, err = run_cli(home, "enroll", "Tony", str(photos.group), "--face", str(subject_number))
    assert code == 0, err
    assert f"4 faces, face {subject_number} taken" in out
    code, _, err = run_cli(home, "enroll", "Tony", str(photos.group), str(photos.strangers), "--face", "1")
    assert code == 2 and "exactly one photo" in err
    code, out, _ = run_cli(home, "enroll", "Tony", *map(str, photos.gallery[:2]))
    assert code == 0 and "faces," not in out  # no per-image line for single-face photos


# -- aligned crops ------------------------------------------------------------------------------

def _aligned_crop(path: Path, out: Path) -> Path:
    """The 112x112 crop our own pipeline aligns (YuNet landmarks -> the ArcFace template)."""
    engine = load_engine("sface")
    bgr = imaging.load(path).pixels
    rows = engine.detect(bgr)  # type: ignore[attr-defined]
    row = max(rows, key=lambda r: float(r[2] * r[3]))
    crop = engine.align(bgr, row)  # type: ignore[attr-defined]
    Image.fromarray(np.ascontiguousarray(crop[:, :, ::-1])).save(out)
    return out


@pytest.fixture(scope="module")
def aligned(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaceDB, dict[str, Path]]]:
    """A database of three people (their full photos) and an aligned crop of another photo of each."""
    tmp = tmp_path_factory.mktemp("aligned")
    people = (SUBJECT, *STRANGERS[:2])
    crops = {}
    d = FaceDB(home=tmp / "home", workers=1)
    try:
        for p in people:
            photos = sorted((lfw_dir / p).iterdir())
            d.enroll(p, photos[1:5])
            crops[p] = _aligned_crop(photos[0], tmp / f"{p}.png")
        yield d, crops
    finally:
        d.close()


def test_aligned_crops_are_embedded_whole_and_named(aligned: tuple[FaceDB, dict[str, Path]], tmp_path: Path) -> None:
    d, crops = aligned
    people = list(crops)
    rep = d.search([crops[p] for p in people], aligned=True)
    assert [r.faces[0].identity for r in rep.results] == people
    assert all(r.faces[0].bbox == [0.0, 0.0, 112.0, 112.0] for r in rep.results)
    # The same crop detected again gives another (worse-aligned) vector: --aligned is not a no-op.
    plain = d.search([crops[people[0]]])
    if plain.results[0].faces:
        assert plain.results[0].faces[0].matches[0].distance != rep.results[0].faces[0].matches[0].distance
    ver = d.verify(crops[people[0]], people[0], aligned=True)
    assert ver.match and ver.faces_in_image == 1
    # Another square size is resized; any other shape is refused with a reason, never a 500.
    with Image.open(crops[people[0]]) as im:
        im.resize((224, 224)).save(tmp_path / "big.png")
        im.resize((112, 150)).save(tmp_path / "tall.png")
    rep = d.search([tmp_path / "big.png", tmp_path / "tall.png"], aligned=True)
    assert rep.results[0].faces[0].identity == people[0]
    assert rep.results[1].reason == "not_aligned" and not rep.results[1].faces
    assert "112x150" in (rep.results[1].error or "") and "--aligned" in (rep.results[1].error or "")


def test_aligned_enroll_and_import(aligned: tuple[FaceDB, dict[str, Path]], tmp_path: Path) -> None:
    _, crops = aligned
    root = tmp_path / "crops"
    for p, c in crops.items():
        (root / p).mkdir(parents=True)
        (root / p / c.name).write_bytes(c.read_bytes())
    with FaceDB(home=tmp_path / "home", workers=1) as d:
        rep = d.import_dir(root, aligned=True)
        assert rep.enrolled == len(crops) and all(s.images[0].faces == 1 for s in rep.subjects)
        one = d.enroll("again", [Upload("x.png", next(iter(crops.values())).read_bytes() + b"\0")], aligned=True)
        assert one.enrolled == 1


def test_http_form_fields(aligned: tuple[FaceDB, dict[str, Path]], photos: Photos) -> None:
    d, crops = aligned
    key = d.create_key("enroll-test", "write").key or ""
    auth = {"Authorization": f"Bearer {key}"}
    crop = crops[SUBJECT]
    with TestClient(create_app(d)) as client:
        files = [("images", (crop.name, crop.read_bytes(), "image/png"))]
        body = client.post("/v1/search", files=files, data={"aligned": "true"}, headers=auth).json()
        assert body["results"][0]["faces"][0]["identity"] == SUBJECT
        ver = client.post("/v1/verify", files=[("image", (crop.name, crop.read_bytes(), "image/png"))],
                          data={"subject": SUBJECT, "aligned": "true"}, headers=auth)
        assert ver.status_code == 200 and ver.json()["match"]
        group = [("images", ("group.jpg", photos.group.read_bytes(), "image/jpeg"))]
        r = client.post("/v1/subjects/Tony_http/images", files=group, headers=auth)
        assert r.status_code == 200
        sub = r.json()["subjects"][0]
        assert sub["failed"][0]["reason"] == "ambiguous_faces" and sub["images"][0]["faces"] == 4
        r = client.post(f"/v1/subjects/{SUBJECT}/images", files=group, headers=auth)
        sub = r.json()["subjects"][0]  # Tony is enrolled here: his face is found in the group
        assert sub["enrolled"] == 1 and _is_subjects_face(_faces_in(photos.group)[sub["images"][0]["taken"]], photos)
        r = client.post("/v1/subjects/x/images", files=group, data={"face": "-1"}, headers=auth)
        assert r.status_code == 422 and "face" in r.json()["error"]
        r = client.post("/v1/search", files=files, data={"aligned": "maybe"}, headers=auth)
        assert r.status_code == 422 and "aligned" in r.json()["error"]


def test_cli_aligned(aligned: tuple[FaceDB, dict[str, Path]], tmp_path: Path) -> None:
    _, crops = aligned
    home = tmp_path / "home"
    person, crop = next(iter(crops.items()))
    code, out, err = run_cli(home, "enroll", person, str(crop), "--aligned", "--json")
    assert code == 0, err
    assert json.loads(out)["subjects"][0]["images"] == [{"image": str(crop), "faces": 1, "taken": 0}]
    code, out, err = run_cli(home, "search", str(crop), "--aligned", "--json")
    assert code == 0, err
    assert json.loads(out)["results"][0]["faces"][0]["identity"] == person
    code, out, _ = run_cli(home, "verify", str(crop), person, "--aligned", "--json")
    assert code == 0 and json.loads(out)["match"]
    with Image.open(crop) as im:
        im.resize((200, 112)).save(tmp_path / "wide.png")
    code, out, _ = run_cli(home, "search", str(tmp_path / "wide.png"), "--aligned", "--json")
    assert code == 3 and json.loads(out)["results"][0]["reason"] == "not_aligned"
    code, out, _ = run_cli(home, "enroll", person, str(tmp_path / "wide.png"), "--aligned", "--json")
    assert code == 3 and json.loads(out)["subjects"][0]["failed"][0]["reason"] == "not_aligned"
