"""HEIC/HEIF photos (the iPhone's default format) open everywhere an image is accepted.

The HEIC files are made here from real face photos (the crops of insightface's t1.jpg that
``facephotos`` cuts), with pillow-heif's own encoder through its standalone API, which never
registers the Pillow plugin: so every decode below proves that ``facedb.analysis.imaging``
registered it. One test encodes with Debian's ``heif-enc`` instead (an encoder that shares no
code path with pillow-heif's Python side), 10-bit, and skips when it is absent.
"""
from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pillow_heif
import pytest
from facephotos import make_face_variants
from PIL import Image

from facedb import FaceDB
from facedb.analysis import imaging
from facedb.analysis.files import Upload, iter_image_files
from facedb.errors import ImageError
from facedb.evaluation.servers import FacedbServer, bearer, clean_env, image_files

ENROLLED = ("person1", "person2", "person3", "person4")
HEIF_ENC = shutil.which("heif-enc")
HEIF_ENC_SKIP = "heif-enc not found (Debian package libheif-examples; .ci/run installs it)"
#: HEIC re-encoding at quality 90 moves the embedding a little, never across people.
CLOSE = 0.08


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """person1..person6 -> two JPEG files of that face (the crop, and the crop mirrored)."""
    return make_face_variants(tmp_path_factory.mktemp("people"), n_variants=2)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, people: dict[str, list[Path]]) -> Path:
    """A home with person1..person4 enrolled from their first JPEG."""
    home = tmp_path_factory.mktemp("heic") / "home"
    with FaceDB(home=home, workers=1) as db:
        for name in ENROLLED:
            assert db.enroll(name, [people[name][0]]).enrolled == 1
    return home


def rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def heic_bytes(*images: Image.Image, primary: int = 0, exif: bytes | None = None, quality: int = 90) -> bytes:
    """``images`` as one HEIC file (pillow-heif's encoder, standalone: no Pillow plugin)."""
    heif = pillow_heif.HeifFile()
    for im in images:
        added = heif.add_from_pillow(im)
        if exif is not None:
            added.info["exif"] = exif
    heif.primary_index = primary
    buf = io.BytesIO()
    heif.save(buf, quality=quality, primary_index=primary)
    return buf.getvalue()


def to_heic(src: Path, dst: Path) -> Path:
    dst.write_bytes(heic_bytes(rgb(src)))
    return dst


def with_declared_size(data: bytes, width: int, height: int) -> bytes:
    """``data`` with the size its ``ispe`` box declares replaced (the coded pixels unchanged)."""
    at = data.find(b"ispe")
    assert at > 0 and data.count(b"ispe") == 1
    return data[:at + 8] + struct.pack(">II", width, height) + data[at + 16:]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def best(db: FaceDB, path: Path) -> tuple[str | None, float]:
    """(identity, distance to the best subject) of the one face in ``path``."""
    result = db.search([str(path)], k=1).results[0]
    assert result.error is None, result.error
    assert len(result.faces) == 1, path
    face = result.faces[0]
    return face.identity, face.matches[0].distance


# -- decoding ---------------------------------------------------------------------------------

def test_heic_decodes_to_the_same_pixels_as_its_source(people: dict[str, list[Path]]) -> None:
    src = people["person1"][1]
    data = heic_bytes(rgb(src))
    assert data[4:12] == b"ftypheic"
    heic = imaging.decode(data, "photo.heic")
    jpeg = imaging.load(src)
    assert heic.pixels.dtype == np.uint8 and heic.pixels.shape == jpeg.pixels.shape
    assert mean_abs_diff(heic.pixels, jpeg.pixels) < 4  # BGR, upright: lossy, not garbage
    assert heic.size_bytes == len(data)


def test_heic_probe_names_the_same_person_as_its_jpeg(home: Path, people: dict[str, list[Path]],
                                                      tmp_path: Path) -> None:
    with FaceDB(home=home, workers=1) as db:
        for name in ENROLLED:
            jpeg = people[name][1]  # the mirrored crop: not the enrolled file
            who_jpeg, d_jpeg = best(db, jpeg)
            who_heic, d_heic = best(db, to_heic(jpeg, tmp_path / f"{name}.heic"))
            assert who_jpeg == who_heic == name
            assert abs(d_heic - d_jpeg) < CLOSE, (name, d_jpeg, d_heic)


def test_enroll_from_heic_is_found_by_its_jpeg(people: dict[str, list[Path]], tmp_path: Path) -> None:
    heic = to_heic(people["person5"][0], tmp_path / "IMG_0001.HEIC")
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        rep = db.enroll("person5", [heic])
        assert rep.enrolled == 1 and not rep.failed
        assert db.enroll("person6", [people["person6"][0]]).enrolled == 1
        assert best(db, people["person5"][1])[0] == "person5"
        assert best(db, people["person6"][1])[0] == "person6"


@pytest.mark.skipif(HEIF_ENC is None, reason=HEIF_ENC_SKIP)
def test_ten_bit_heic_from_heif_enc_is_found(home: Path, people: dict[str, list[Path]], tmp_path: Path) -> None:
    """heif-enc makes a 10-bit HEIC of a 16-bit PNG: decoded to 8 bits, same person as its JPEG."""
    src = people["person3"][1]
    sixteen = np.asarray(rgb(src)).astype(np.uint16) * 257
    png = tmp_path / "person3-16bit.png"
    assert cv2.imwrite(str(png), np.ascontiguousarray(sixteen[..., ::-1]))  # 16-bit BGR
    out = tmp_path / "person3.heic"
    run = subprocess.run([str(HEIF_ENC), "-b", "10", "-q", "90", str(png), "-o", str(out)],
                         capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert pillow_heif.open_heif(out).info["bit_depth"] == 10
    decoded = imaging.load(out)
    assert decoded.pixels.dtype == np.uint8
    assert mean_abs_diff(decoded.pixels, imaging.load(src).pixels) < 4  # 10 bits scaled, not truncated
    with FaceDB(home=home, workers=1) as db:
        who_jpeg, d_jpeg = best(db, src)
        who_heic, d_heic = best(db, out)
    assert who_jpeg == who_heic == "person3" and abs(d_heic - d_jpeg) < CLOSE


def test_multi_image_heic_gives_its_primary_image(home: Path, people: dict[str, list[Path]]) -> None:
    first, second = rgb(people["person1"][1]), rgb(people["person2"][1])
    data = heic_bytes(first, second, primary=1)
    heif = pillow_heif.open_heif(io.BytesIO(data))
    assert len(heif) == 2 and heif.primary_index == 1
    pixels = imaging.decode(data, "burst.heic").pixels
    want = np.ascontiguousarray(np.asarray(second)[..., ::-1])
    assert mean_abs_diff(pixels, want) < 4
    with FaceDB(home=home, workers=1) as db:
        faces = db.search([Upload("burst.heic", data)], k=1).results[0].faces
    assert [f.identity for f in faces] == ["person2"]


def test_rotated_heic_is_upright_and_found(home: Path, people: dict[str, list[Path]]) -> None:
    """What an iPhone writes for a portrait shot: the pixels in sensor order (sideways), an
    ``irot`` box, and EXIF Orientation 6 repeating it. Upright once, never rotated twice."""
    upright = rgb(people["person4"][1])
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # Orientation 6 turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    data = heic_bytes(sideways, exif=exif.tobytes())
    stored = Image.Exif()
    stored.load(pillow_heif.open_heif(io.BytesIO(data)).info["exif"])
    assert stored[0x0112] == 6  # the file really carries the tag
    pixels = imaging.decode(data, "portrait.heic").pixels
    want = np.ascontiguousarray(np.asarray(upright)[..., ::-1])
    assert pixels.shape == want.shape
    assert mean_abs_diff(pixels, want) < 4
    with FaceDB(home=home, workers=1) as db:
        faces = db.search([Upload("portrait.heic", data)], k=1).results[0].faces
    assert [f.identity for f in faces] == ["person4"]


def test_grid_heic_like_an_iphone_photo(home: Path, people: dict[str, list[Path]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """iPhones store a photo as a grid of 512x512 HEVC tiles: assembled whole, and the grid's
    declared size is the one checked against the pixel limit."""
    face = rgb(people["person2"][1])
    big = face.resize((face.width * 4, face.height * 4), Image.Resampling.LANCZOS)
    monkeypatch.setattr(pillow_heif.options, "GRID_TILE_SIZE", 512)
    data = heic_bytes(big)
    monkeypatch.setattr(pillow_heif.options, "GRID_TILE_SIZE", 0)
    assert b"grid" in data and data.count(b"ispe") == 2  # the grid's size, the tiles' size
    pixels = imaging.decode(data, "IMG_0001.HEIC").pixels
    assert mean_abs_diff(pixels, np.ascontiguousarray(np.asarray(big)[..., ::-1])) < 4
    with FaceDB(home=home, workers=1) as db:
        faces = db.search([Upload("IMG_0001.HEIC", data)], k=1).results[0].faces
    assert [f.identity for f in faces] == ["person2"]
    grid = struct.pack(">II", *big.size)
    assert data.count(b"ispe\0\0\0\0" + grid) == 1
    bomb = data.replace(b"ispe\0\0\0\0" + grid, b"ispe\0\0\0\0" + struct.pack(">II", 12000, 9000))
    with pytest.raises(ImageError) as err:
        imaging.decode(bomb, "bomb.heic")
    assert err.value.reason == "too_many_pixels"


# -- limits and damage ----------------------------------------------------------------------------

@pytest.mark.parametrize("side", [9000, 40000])  # 81 M pixels (our limit), 1.6 G (Pillow's bomb check too)
@pytest.mark.parametrize("width", [276, 275])  # even; odd: x265 codes 276 and a clap box crops it to 275
def test_heic_declaring_too_many_pixels_is_refused_without_decoding(people: dict[str, list[Path]], side: int,
                                                                    width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ispe box declares side x side: refused from the header. With a clap box the size Pillow
    sees stays small (the crop's), so only the coded size shows the bomb."""
    data = heic_bytes(rgb(people["person1"][0]).resize((width, 300)))
    assert (b"clap" in data) == (width % 2 == 1)
    imaging.decode(data, "ok.heic")  # registers the plugin; the untouched file decodes
    from pillow_heif.as_plugin import HeifImageFile

    def no_decoding(self: Any) -> Any:
        raise AssertionError("HEIC pixels decoded before the size check")

    monkeypatch.setattr(HeifImageFile, "load", no_decoding)
    with pytest.raises(ImageError) as err:
        imaging.decode(with_declared_size(data, side, side), "huge.heic")
    assert err.value.reason == "too_many_pixels"


@pytest.mark.parametrize("keep", [0.5, 0.9, 200, 30])
def test_truncated_heic_is_corrupt_image(people: dict[str, list[Path]], keep: float) -> None:
    data = heic_bytes(rgb(people["person1"][0]))
    cut = int(len(data) * keep) if keep < 1 else int(keep)
    with pytest.raises(ImageError) as err:
        imaging.decode(data[:cut], "cut.heic")
    assert err.value.reason == "corrupt_image", str(err.value)
    assert "cut.heic" in str(err.value)


def test_damaged_heic_in_a_batch_fails_alone_and_stores_nothing(people: dict[str, list[Path]],
                                                              tmp_path: Path) -> None:
    good = to_heic(people["person1"][0], tmp_path / "good.heic")
    bad = tmp_path / "bad.heic"
    bad.write_bytes(good.read_bytes()[:300])
    zero = tmp_path / "zero.heic"
    zero.write_bytes(with_declared_size(good.read_bytes(), 0, 0))
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        rep = db.enroll("person1", [bad, good, zero])
        assert rep.enrolled == 1
        assert sorted((Path(f.path).name, f.reason) for f in rep.failed) == [
            ("bad.heic", "corrupt_image"), ("zero.heic", "corrupt_image")]
        assert db.enroll("person1", [bad]).enrolled == 0
        assert best(db, people["person1"][1])[0] == "person1"


# -- the directory walk, laziness -------------------------------------------------------------------

def test_directory_walk_picks_heic_and_enrolls_it(people: dict[str, list[Path]], tmp_path: Path) -> None:
    photos = tmp_path / "iPhone"
    photos.mkdir()
    names = {"IMG_0001.HEIC": "person1", "IMG_0002.heic": "person2", "b.heif": "person3", "c.HEIF": "person4"}
    for fname, person in names.items():
        to_heic(people[person][0], photos / fname)
    found = iter_image_files([photos])
    assert sorted(p.name for p in found) == sorted(names)
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        rep = db.enroll("someone", [photos], multi_face="largest")
    assert rep.enrolled == len(names) and not rep.failed


def test_heif_plugin_is_loaded_lazily_and_never_by_the_client(people: dict[str, list[Path]], tmp_path: Path) -> None:
    heic = to_heic(people["person1"][0], tmp_path / "a.heic")
    script = f"""
import sys
import facedb.client
assert "pillow_heif" not in sys.modules, "the thin client imported pillow_heif"
from facedb.analysis import imaging
imaging.load({str(people["person1"][0])!r})
assert "pillow_heif" not in sys.modules, "decoding a JPEG imported pillow_heif"
print(imaging.load({str(heic)!r}).pixels.shape)
assert "pillow_heif" in sys.modules
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=clean_env())
    assert run.returncode == 0, run.stderr.decode(errors="replace")


def test_without_pillow_heif_heic_is_not_an_image_with_a_hint(people: dict[str, list[Path]], tmp_path: Path) -> None:
    heic = to_heic(people["person1"][0], tmp_path / "a.heic")
    script = f"""
import sys
sys.modules["pillow_heif"] = None  # as if it were not installed
from facedb.analysis import imaging
from facedb.errors import ImageError
try:
    imaging.load({str(heic)!r})
except ImageError as exc:
    print(exc.reason, exc)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, env=clean_env())
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    out = run.stdout.decode()
    assert out.startswith("not_an_image") and "pip install pillow-heif" in out


# -- over HTTP ----------------------------------------------------------------------------------------

def test_heic_upload_enrolls_over_http(people: dict[str, list[Path]], tmp_path: Path) -> None:
    home = tmp_path / "home"
    heic = to_heic(people["person2"][0], tmp_path / "IMG_0042.HEIC")
    bad = tmp_path / "IMG_0043.HEIC"
    bad.write_bytes(heic.read_bytes()[:300])
    with FaceDB(home=home, workers=1) as db:
        assert db.enroll("person3", [people["person3"][0]]).enrolled == 1
    with FacedbServer(home) as srv:
        key = srv.new_key("writer", "write")
        r = httpx.post(srv.url + "/v1/subjects/person2/images", files=image_files([heic, bad]),
                       headers=bearer(key), timeout=180)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["enrolled"] == 1 and body["n_failed"] == 1
        (sub,) = body["subjects"]
        assert [(f["path"], f["reason"]) for f in sub["failed"]] == [("IMG_0043.HEIC", "corrupt_image")]
        s = httpx.post(srv.url + "/v1/search", files=image_files([people["person2"][1]]),
                       headers=bearer(key), timeout=180)
        assert s.status_code == 200, s.text
        assert s.json()["results"][0]["faces"][0]["identity"] == "person2"
        junk = httpx.post(srv.url + "/v1/search", files=[("images", ("x.heic", b"\0\0\0\x18ftypheic" + b"\0" * 20))],
                          headers=bearer(key), timeout=60)
        assert junk.status_code == 200, junk.text
        assert json.loads(junk.text)["results"][0]["reason"] == "corrupt_image"
