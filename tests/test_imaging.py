"""facedb.analysis.imaging against a hostile corpus: every bad input gets its stable reason code, every
odd-but-valid photo still gives a face to the sface engine, and nothing hangs or blows up memory."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hostile import ALL_CASES, BOMB_SIZE, HUGE_SIZE, expected_walk, make_hostile_corpus, png_header_bomb
from PIL import Image, ImageFile

from facedb.analysis import imaging
from facedb.analysis.engines import load_engine
from facedb.errors import ImageError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine():
    return load_engine("sface")


def run_with_timeout(fn, *args, timeout: float = 20.0):
    """Run fn(*args) in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not return within {timeout}s (blocked?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def reason_of(path: Path) -> str:
    with pytest.raises(ImageError) as info:
        run_with_timeout(imaging.load, path)
    return info.value.reason


def landmarks(face) -> np.ndarray:
    return np.asarray(face.landmarks, dtype=np.float64)


def same_geometry(a, b, tol: float) -> bool:
    """Same five landmarks (eyes, nose, mouth corners) within tol pixels."""
    return float(np.abs(landmarks(a) - landmarks(b)).max()) <= tol


@pytest.fixture(scope="module")
def reference(hostile_corpus, engine):
    """The face in the upright JPEG every face case was derived from."""
    img = imaging.load(hostile_corpus["upright_jpeg"][0])
    faces = engine.analyze(img.pixels)
    assert len(faces) == 1, f"the source photo {hostile_corpus.face_photo} must hold exactly one face"
    face = faces[0]
    (lx, ly), (rx, ry), _, (mlx, mly), (mrx, mry) = face.landmarks
    assert abs(ry - ly) < 0.25 * abs(rx - lx), "reference face is not upright: eyes are not level"
    assert max(ly, ry) < min(mly, mry), "reference face is not upright: eyes are not above the mouth"
    return img, face


def tolerance(face) -> float:
    x1, _, x2, _ = face.bbox
    return 0.08 * (x2 - x1)


# -- the corpus, case by case ------------------------------------------------------------

@pytest.mark.parametrize("case", ALL_CASES)
def test_hostile_case(case, hostile_corpus, engine, reference):
    if case not in hostile_corpus:
        pytest.skip(hostile_corpus.skipped.get(case, "case not produced here"))
    path, expected = hostile_corpus[case]
    if expected is not None:
        with pytest.raises(ImageError) as info:
            run_with_timeout(imaging.load, path)
        assert info.value.reason == expected, str(info.value)
        message = str(info.value)
        assert "\n" not in message and message.strip(), "messages are one printable line"
        assert imaging.display_name(path) in message, "the message names the file"
        return
    img = run_with_timeout(imaging.load, path)
    assert img.pixels.dtype == np.uint8 and img.pixels.ndim == 3 and img.pixels.shape[2] == 3
    assert img.pixels.flags.c_contiguous and img.pixels.flags.writeable
    assert img.size_bytes == path.stat().st_size and len(img.sha256) == 64
    faces = engine.analyze(img.pixels)
    assert faces, f"{case}: no face found in {path.name!r}"
    ref_img, ref = reference
    if case == "huge_photo":
        assert (img.width, img.height) == HUGE_SIZE
        x1, y1, x2, y2 = faces[0].bbox
        assert 4700 <= x1 < x2 <= 4700 + 1600 * ref_img.width / ref_img.height + 1 and 2900 <= y1 < y2 <= 4500
    else:
        assert (img.width, img.height) == (ref_img.width, ref_img.height)
        assert same_geometry(faces[0], ref, tolerance(ref)), (
            f"{case}: face found at {faces[0].landmarks}, expected near {ref.landmarks}")


def test_corpus_covers_the_brief(hostile_corpus):
    made = set(hostile_corpus) | set(hostile_corpus.skipped)
    assert made == set(ALL_CASES)
    expected = {case: reason for case, (_, reason) in hostile_corpus.items()}
    for case, reason in {"zero_byte": "empty_file", "random_bytes": "not_an_image", "truncated_jpeg": "corrupt_image",
                         "png_header_bomb": "too_many_pixels", "one_pixel": "too_small", "directory": "is_directory",
                         "text_file": "not_an_image", "parent_not_directory": "unreadable"}.items():
        assert expected[case] == reason


def test_unreadable_chmod(hostile_corpus):
    """chmod 000 really stops reading: an unprivileged user (root reads anyway; the corpus then
    leaves the case out, with that reason, and parent_not_directory covers 'unreadable')."""
    if "unreadable_chmod" not in hostile_corpus:
        pytest.skip(hostile_corpus.skipped["unreadable_chmod"])
    path = hostile_corpus["unreadable_chmod"][0]
    assert reason_of(path) == "unreadable"
    assert path in imaging.iter_image_files([path.parent]), "unreadable files are listed, then reported"


def test_corpus_is_generated_as_described(hostile_corpus):
    with Image.open(hostile_corpus["png16_gray"][0]) as im:
        assert im.mode == "I;16"
    with Image.open(hostile_corpus["cmyk_jpeg"][0]) as im:
        assert im.mode == "CMYK"
    with Image.open(hostile_corpus["palette_png"][0]) as im:
        assert im.mode == "P"
    with Image.open(hostile_corpus["grayscale_png"][0]) as im:
        assert im.mode == "L"
    with Image.open(hostile_corpus["rgba_png"][0]) as im:
        assert im.mode == "RGBA" and im.getextrema()[3] == (0, 255)
    with Image.open(hostile_corpus["animated_gif"][0]) as im:
        assert im.n_frames == 2
    with Image.open(hostile_corpus["exif_rotated"][0]) as im:
        assert im.getexif().get(0x0112) == 6
    bomb = hostile_corpus["png_header_bomb"][0]
    assert bomb.stat().st_size < 10_000
    with Image.open(hostile_corpus["huge_photo"][0]) as im:
        assert im.size == HUGE_SIZE


# -- EXIF orientation: the test means something -------------------------------------------

def test_exif_orientation_is_applied_and_matters(hostile_corpus, engine, reference):
    ref_img, ref = reference
    path = hostile_corpus["exif_rotated"][0]
    img = imaging.load(path)
    faces = engine.analyze(img.pixels)
    assert faces and same_geometry(faces[0], ref, tolerance(ref))
    assert float(np.dot(faces[0].embedding, ref.embedding)) > 0.8, "the upright face is the same person"
    # The same file with its orientation ignored: the stored pixels are turned 90 degrees.
    with Image.open(path) as im:
        raw = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
    assert raw.shape == (ref_img.width, ref_img.height, 3)
    assert not np.array_equal(raw, img.pixels)
    raw_faces = engine.analyze(raw)
    assert not raw_faces or not same_geometry(raw_faces[0], ref, tolerance(ref)), (
        "ignoring EXIF orientation gives the same face: this case would not test anything")


def test_exif_transpose_matches_pillow(hostile_corpus):
    from PIL import ImageOps

    path = hostile_corpus["exif_rotated"][0]
    ours = imaging.load(path).pixels
    with Image.open(path) as im:
        theirs = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation(orientation):
    base = np.zeros((40, 60, 3), dtype=np.uint8)
    base[:10, :10] = (255, 0, 0)  # a red top-left corner, as the viewer must show it
    upright = Image.fromarray(base)
    inverse = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
               4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = upright.transpose(inverse) if inverse is not None else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "PNG", exif=exif.tobytes())
    out = imaging.decode(buf.getvalue(), "o.png").pixels
    assert out.shape == (40, 60, 3)
    assert tuple(out[1, 1]) == (0, 0, 255) and tuple(out[-2, -2]) == (0, 0, 0)  # BGR red at top-left


# -- decompression bombs: refused from the header, memory stays bounded -------------------

def test_bomb_is_refused_without_decoding(monkeypatch, tmp_path):
    calls: list[object] = []
    real_load = ImageFile.ImageFile.load

    def spy(self):
        calls.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    # Pillow's own guard (MAX_IMAGE_PIXELS) is a process-wide setting that anyone may turn off:
    # our check must not depend on it.
    for pillow_limit in (Image.MAX_IMAGE_PIXELS, None):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
        for w, h in (BOMB_SIZE, (9000, 9000)):  # 9000x9000: over our limit, under Pillow's
            t0 = time.perf_counter()
            with pytest.raises(ImageError) as info:
                imaging.decode(png_header_bomb(w, h), "bomb.png")
            assert info.value.reason == "too_many_pixels"
            assert f"{w}x{h}" in str(info.value) or "too large" in str(info.value)
            assert time.perf_counter() - t0 < 2
    assert calls == [], "a refused bomb must never reach ImageFile.load"


_BOMB_CHILD = r"""
import json, resource, sys, time
from facedb.analysis import imaging
from facedb.errors import ImageError
try:  # a safety net, so that a regression fails fast instead of swapping the machine
    vm = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (vm + (2 << 30), resource.RLIM_INFINITY))
except (OSError, ValueError):
    pass
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    imaging.load(sys.argv[1])
    reason = None
except ImageError as exc:
    reason = exc.reason
except MemoryError:
    reason = "MemoryError"
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"reason": reason, "delta_kib": after - before, "seconds": time.perf_counter() - t0}))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB and RLIMIT_AS is reliable on Linux only")
def test_bomb_memory_stays_bounded(hostile_corpus):
    """In a fresh process (ru_maxrss is a high-water mark: earlier tests would hide a spike)."""
    bomb = hostile_corpus["png_header_bomb"][0]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _BOMB_CHILD, str(bomb)], capture_output=True, text=True,
                         timeout=120, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["reason"] == "too_many_pixels"
    assert result["delta_kib"] < 200 * 1024, f"decoding the bomb header grew memory by {result['delta_kib']} KiB"
    assert result["seconds"] < 5


# -- read_bytes / decode edge cases -------------------------------------------------------

def test_too_large_file_and_bytes(monkeypatch, tmp_path):
    p = tmp_path / "big.jpg"
    p.write_bytes(b"\xff\xd8" + b"\x00" * 200)
    from facedb.analysis import files

    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    monkeypatch.setattr(imaging, "MAX_FILE_BYTES", 100)
    assert reason_of(p) == "too_large"
    with pytest.raises(ImageError) as info:
        imaging.decode(p.read_bytes(), "<stdin>")
    assert info.value.reason == "too_large"


def test_decode_bytes_edge_cases():
    for data, reason in ((b"", "empty_file"), (b"hello, world" * 10, "not_an_image"),
                         (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt_image")):
        with pytest.raises(ImageError) as info:
            imaging.decode(data, "<stdin>")
        assert info.value.reason in ((reason, "not_an_image") if reason == "corrupt_image" else (reason,))


def test_unsafe_formats_are_not_opened(tmp_path):
    # EPS would be rendered by Ghostscript; TGA has no magic number and "recognises" junk.
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"
    with pytest.raises(ImageError) as info:
        imaging.decode(eps, "x.eps")
    assert info.value.reason == "not_an_image"
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, "TGA")
    with pytest.raises(ImageError) as info:
        imaging.decode(buf.getvalue(), "x.tga")
    assert info.value.reason == "not_an_image"


def test_paths_that_cannot_exist(tmp_path):
    assert reason_of(tmp_path / "nul\x00byte.jpg") == "not_found"
    with pytest.raises(ImageError) as info:
        imaging.load(tmp_path / "missing\nname.jpg")
    assert info.value.reason == "not_found"
    assert "\n" not in str(info.value) and "missing\\nname.jpg" in str(info.value)


def test_too_small_is_refused_from_the_header():
    for size in ((1, 1), (15, 400), (4000, 2)):
        buf = io.BytesIO()
        Image.new("L", size, 128).save(buf, "PNG")
        with pytest.raises(ImageError) as info:
            imaging.decode(buf.getvalue(), "thin.png")
        assert info.value.reason == "too_small"


@pytest.mark.parametrize("peak,expected_max", [(255, 255), (4095, 255), (65535, 255), (1000, 255)])
def test_16_bit_images_use_their_bit_depth(peak, expected_max):
    arr = np.linspace(0, peak, 64 * 64).astype(np.uint16).reshape(64, 64)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    out = imaging.decode(buf.getvalue(), "g16.png").pixels
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    assert 200 <= int(out.max()) <= expected_max, "a 12-bit (or 10-bit) image must not come out nearly black"
    if peak == 255:  # 8-bit values stored in 16 bits are kept as they are
        assert np.array_equal(out[:, :, 0], arr.astype(np.uint8))


def test_float_and_32_bit_images():
    for img in (Image.fromarray(np.linspace(-5, 5, 32 * 32, dtype=np.float32).reshape(32, 32), "F"),
                Image.fromarray(np.linspace(-70000, 70000, 32 * 32).astype(np.int32).reshape(32, 32), "I")):
        buf = io.BytesIO()
        img.save(buf, "TIFF")
        out = imaging.decode(buf.getvalue(), "x.tif").pixels
        assert out.dtype == np.uint8 and out.shape == (32, 32, 3) and out.min() == 0 and out.max() >= 250


def test_transparent_pixels_become_white():
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    out = imaging.decode(buf.getvalue(), "clear.png").pixels
    assert (out == 255).all()


def test_display_name():
    assert imaging.display_name("my photo é 顔.jpg") == "my photo é 顔.jpg"
    assert imaging.display_name("a\nb\tc.jpg") == "a\\nb\\tc.jpg"
    assert "\n" not in imaging.display_name(Path("/x/new\nline.jpg"))


# -- iter_image_files -----------------------------------------------------------------------

def _symlink(target: str, link: Path, *, directory: bool = False) -> None:
    try:
        os.symlink(target, link, target_is_directory=directory)
    except (OSError, NotImplementedError) as exc:
        pytest.skip(f"cannot create symlinks here: {exc}")


def test_iter_image_files_mixed_tree_with_symlink_loops(tmp_path):
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden_dir").mkdir()
    for rel in ("a.jpg", "b.txt", ".hidden.jpg", ".hidden_dir/x.jpg", "sub/c.png", "sub/deeper/d.jpg",
                "sub/with space é.jpg"):
        (root / rel).write_bytes(b"x")
    _symlink("..", root / "sub" / "loop_up", directory=True)  # sub/loop_up -> photos: a loop
    _symlink(".", root / "sub" / "deeper" / "self", directory=True)  # a loop onto itself
    _symlink("sub", root / "link_to_sub", directory=True)  # a plain directory symlink
    _symlink("a.jpg", root / "link_to_a.jpg")
    _symlink("nowhere.jpg", root / "dangling.jpg")
    _symlink("self_loop.jpg", root / "self_loop.jpg")

    got = run_with_timeout(imaging.iter_image_files, [root])
    expected = [root / "a.jpg", root / "b.txt", root / "dangling.jpg", root / "link_to_a.jpg",
                root / "self_loop.jpg", root / "sub" / "c.png", root / "sub" / "with space é.jpg",
                root / "sub" / "deeper" / "d.jpg"]
    assert got == expected
    # what load says about the odd ones
    assert reason_of(root / "dangling.jpg") == "not_found"
    assert reason_of(root / "self_loop.jpg") == "unreadable"
    assert reason_of(root / "b.txt") == "not_an_image"

    # explicit paths are kept as given (hidden or missing ones too), in order
    explicit = [root / "missing.jpg", root / ".hidden.jpg", root / "a.jpg"]
    assert imaging.iter_image_files(explicit) == explicit
    # a symlinked directory given explicitly is walked; the loops inside it are still not followed
    got = run_with_timeout(imaging.iter_image_files, [root / "link_to_sub"])
    assert got == [root / "link_to_sub" / "c.png", root / "link_to_sub" / "with space é.jpg",
                   root / "link_to_sub" / "deeper" / "d.jpg"]
    # a looping path given explicitly is returned (load reports it), not walked forever
    assert imaging.iter_image_files([root / "self_loop.jpg"]) == [root / "self_loop.jpg"]
    assert imaging.iter_image_files(["nul\x00byte"]) == [Path("nul\x00byte")]


def test_iter_image_files_on_the_hostile_corpus(hostile_corpus):
    root = hostile_corpus["upright_jpeg"][0].parent
    got = run_with_timeout(imaging.iter_image_files, [root])
    assert got == expected_walk(root, hostile_corpus)
    assert root / "loop" not in got and root / "folder.jpg" not in got
    assert all(p.parent == root for p in got), "the loop symlink must not be followed"


def test_make_hostile_corpus_in_a_fresh_dir(tmp_path, face_photo_paths):
    """The generator works from any real photo (here the last one of the fixture list)."""
    corpus = make_hostile_corpus(tmp_path / "c", face_photo_paths[-1])
    assert set(corpus) | set(corpus.skipped) == set(ALL_CASES)
    assert all(p.parent == tmp_path / "c" or case == "parent_not_directory" for case, (p, _) in corpus.items())


# -- the photo fixtures are what they claim ---------------------------------------------------

def test_face_photo_fixtures(face_photo_paths, group_photo, no_face_photo, engine):
    assert face_photo_paths
    for p in face_photo_paths:
        faces = engine.analyze(imaging.load(p).pixels)
        assert len(faces) == 1, f"{p}: {len(faces)} faces"
    assert len(engine.analyze(imaging.load(group_photo).pixels)) == 6
    assert engine.analyze(imaging.load(no_face_photo).pixels) == []


@pytest.mark.dataset
def test_yale_gifs_without_extension_decode(yale_dir):
    files = sorted(p for p in yale_dir.iterdir() if p.name.startswith("subject"))
    assert len(files) == 164
    for p in files[:11]:
        img = imaging.load(p)
        assert (img.width, img.height) == (320, 243)


def test_datasets_fixture_skips_cleanly(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setenv("FACEDB_DATASETS", str(tmp_path / "absent"))
    assert conftest.find_datasets_dir() is None
    monkeypatch.setenv("FACEDB_DATASETS", str(tmp_path))
    assert conftest.find_datasets_dir() == tmp_path
