"""facedb.evaluation.lfw: the datasets root, the LFW listing and the strict pairs.txt parser;
runner.embed's face pickers and embedding cache (a fake engine: no model, no dataset)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from facedb.evaluation import lfw, runner


def pairs_text(folds: int = 2, per: int = 2) -> str:
    """A valid pairs file: ``folds`` folds of ``per`` same then ``per`` different lines."""
    lines = [f"{folds}\t{per}"]
    for f in range(folds):
        lines += [f"P{f}_{k}\t1\t2" for k in range(per)]
        lines += [f"P{f}_{k}\t1\tQ{f}_{k}\t3" for k in range(per)]
    return "\n".join(lines) + "\n"


# -- pairs: what a valid file gives --------------------------------------------------------------

def test_parse_pairs_valid_file() -> None:
    p = lfw.parse_pairs(pairs_text(2, 2), "t.txt")
    assert (p.folds, p.per_fold, len(p)) == (2, 2, 8)
    assert p.pairs[0] == lfw.Pair("P0_0/P0_0_0001.jpg", "P0_0/P0_0_0002.jpg", True, 0, 2)
    assert p.pairs[2] == lfw.Pair("P0_0/P0_0_0001.jpg", "Q0_0/Q0_0_0003.jpg", False, 0, 4)
    assert p.same.tolist() == [True, True, False, False] * 2
    assert p.fold_ids.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert p.images()[0] == "P0_0/P0_0_0001.jpg" and len(p.images()) == len(set(p.images()))
    assert p.missing(["P0_0/P0_0_0001.jpg"]) == [x for x in p.images() if x != "P0_0/P0_0_0001.jpg"]


def test_parse_pairs_accepts_spaces_blank_lines_and_no_final_newline() -> None:
    text = pairs_text(1, 1).replace("\t", " ").rstrip("\n")
    p = lfw.parse_pairs("\n" + text.replace("\n", "\n\n"))
    assert len(p) == 2 and p.pairs[1].b == "Q0_0/Q0_0_0003.jpg"
    assert p.pairs[1].line == 6  # line numbers count the blank lines too


# -- pairs: every malformation is an error naming the line ---------------------------------------

@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("10\n", "the header must be"),
    ("10 300 extra\n", "the header must be"),
    ("ten 300\n", "the number of folds must be an integer"),
    ("0 300\n", "the number of folds must be at least 1"),
    ("1 -2\n", "the pairs per fold half must be at least 1"),
    ("1 1\nA\t1\t2\n", "the header announces 1 folds x 2 x 1 = 2 pairs, the file holds 1"),
    ("1 1\nA\t1\t2\nB\t1\tC\t1\nD\t1\t2\n", "the file holds 3"),
    ("1 1\nA\t1\tB\t2\nA\t1\t2\n", "t.txt:2: a different-person line (4 fields) where fold 1 expects same"),
    ("1 1\nA\t1\t2\nB\t1\t3\n", "t.txt:3: a same-person line (3 fields) where fold 1 expects different"),
    ("1 1\nA\t1\nB\t1\tC\t1\n", "t.txt:2: expected 3 fields (same person) or 4 (different people), found 2"),
    ("1 1\nA\t1\t2\nB\t1\tC\t1\textra\n", "t.txt:3: expected 3 fields"),
    ("1 1\nA\tone\t2\nB\t1\tC\t1\n", "t.txt:2: an image number must be an integer, not 'one'"),
    ("1 1\nA\t0\t2\nB\t1\tC\t1\n", "t.txt:2: an image number must be at least 1"),
    ("1 1\nA\t2\t2\nB\t1\tC\t1\n", "t.txt:2: a same-person pair of one image (A 2)"),
    ("1 1\nA\t1\t2\nB\t1\tB\t2\n", "t.txt:3: a different-person pair names one person twice (B)"),
    ("1 1\n\t1\t2\nB\t1\tC\t1\n", "t.txt:2: empty person name"),
])
def test_parse_pairs_rejects(text: str, message: str) -> None:
    with pytest.raises(lfw.PairsError) as exc:
        lfw.parse_pairs(text, "t.txt")
    assert message in str(exc.value)


def test_pairs_errors_are_facedb_errors_and_unreadable_files_too(tmp_path: Path) -> None:
    from facedb.errors import FacedbError

    assert issubclass(lfw.PairsError, FacedbError)
    with pytest.raises(lfw.PairsError, match="cannot be read"):
        lfw.read_pairs(tmp_path / "absent.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(lfw.PairsError, match="not a text file"):
        lfw.read_pairs(tmp_path / "bin.txt")
    (tmp_path / "pairs.txt").write_text(pairs_text(1, 1))
    assert len(lfw.read_pairs(tmp_path / "pairs.txt")) == 2


def test_eval_lfw_pairs_uses_the_strict_parser(tmp_path: Path) -> None:
    """``facedb eval --lfw-pairs`` reads pairs through lfw.read_pairs: a bad file is an error, not a
    silently different protocol."""
    e = runner.Embedded([tmp_path / "A" / "A_0001.jpg"], ["A"], np.ones((1, 2), np.float32))
    bad = tmp_path / "pairs.txt"
    bad.write_text("1 1\nA\t1\t2\n")
    with pytest.raises(lfw.PairsError, match="the file holds 1"):
        runner.lfw_pairs(e, tmp_path, bad)


# -- listing ---------------------------------------------------------------------------------------

def make_tree(root: Path) -> None:
    for rel in ("Bob/Bob_0002.jpg", "Bob/Bob_0001.jpg", "Al/Al_0001.JPG", "Al_B/Al_B_0001.jpg",
                "Al/notes.txt", ".hidden/x_0001.jpg", "Al/.x.jpg"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "pairs.txt").write_text("1 1\n")
    (root / "Empty").mkdir()


def test_list_images_people_and_order(tmp_path: Path) -> None:
    make_tree(tmp_path)
    assert lfw.list_images(tmp_path) == ["Al/Al_0001.JPG", "Al_B/Al_B_0001.jpg", "Bob/Bob_0001.jpg",
                                         "Bob/Bob_0002.jpg"]
    assert lfw.list_people(tmp_path) == {"Al": ["Al/Al_0001.JPG"], "Al_B": ["Al_B/Al_B_0001.jpg"],
                                         "Bob": ["Bob/Bob_0001.jpg", "Bob/Bob_0002.jpg"]}
    assert lfw.image_paths(tmp_path)[0] == tmp_path / "Al" / "Al_0001.JPG"
    assert lfw.person_of("Bob/Bob_0001.jpg") == "Bob"
    assert lfw.image_name("Bob", 12) == "Bob/Bob_0012.jpg"
    ds = runner.lfw_dataset(tmp_path)
    assert ds.labels == ["Al", "Al_B", "Bob", "Bob"] and ds.paths[2] == tmp_path / "Bob" / "Bob_0001.jpg"
    assert runner.lfw_dataset(tmp_path, limit=1).labels == ["Al"]


def test_list_images_of_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    from facedb.errors import FacedbError

    with pytest.raises(FacedbError, match="not a directory"):
        lfw.list_images(tmp_path / "nope")
    with pytest.raises(FacedbError, match="LFW not found"):
        lfw.require_lfw(tmp_path / "nope")


def test_datasets_root_env_then_beside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(lfw.DATASETS_ENV, str(tmp_path))
    assert lfw.datasets_root() == tmp_path and lfw.find_datasets() == tmp_path
    assert lfw.find_lfw() is None and lfw.find_yale() is None
    (tmp_path / "lfw").mkdir()
    (tmp_path / "yalefaces").mkdir()
    assert lfw.find_lfw() == tmp_path / "lfw" and lfw.find_yale() == tmp_path / "yalefaces"
    assert lfw.require_lfw() == tmp_path / "lfw"
    monkeypatch.setenv(lfw.DATASETS_ENV, str(tmp_path / "absent"))
    assert lfw.find_datasets() is None and lfw.find_lfw() is None
    monkeypatch.delenv(lfw.DATASETS_ENV)
    # Run from inside a checkout (CI's layout): <checkout>/../shared/datasets, found from any
    # folder of the checkout, before the datasets beside the package's own source tree.
    shared = tmp_path / "work" / "shared" / "datasets"
    (tmp_path / "work" / "main" / "tests").mkdir(parents=True)
    shared.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "work" / "main" / "tests")
    assert lfw.datasets_root() == shared and lfw.find_datasets() == shared


def test_datasets_beside_a_regular_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A regular (non-editable) install lives in ``<checkout>/.venv/.../site-packages``: the
    datasets beside that checkout are found even when the working directory is elsewhere."""
    monkeypatch.delenv(lfw.DATASETS_ENV, raising=False)
    site = tmp_path / "work" / "main" / ".venv" / "lib" / "python3.11" / "site-packages" / "facedb" / "evaluation"
    site.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(lfw, "__file__", str(site / "lfw.py"))
    if Path("/shared/datasets").is_dir():
        pytest.skip("/shared/datasets exists on this machine: it would be found first")
    absent = Path.cwd().parent / "shared" / "datasets"
    assert lfw.find_datasets() is None and lfw.datasets_root() == absent
    shared = tmp_path / "work" / "shared" / "datasets"
    shared.mkdir(parents=True)
    assert lfw.datasets_root() == shared and lfw.find_datasets() == shared


@pytest.mark.dataset
def test_the_real_pairs_file_and_listing(lfw_dir: Path) -> None:
    p = lfw.read_pairs(lfw_dir / "pairs.txt")
    assert (p.folds, p.per_fold, len(p)) == (10, 300, 6000) and int(p.same.sum()) == 3000
    images = lfw.list_images(lfw_dir)
    assert len(images) == 7701 and len(lfw.list_people(lfw_dir)) == 4281
    assert p.missing(images) == []


# -- runner.embed: face pickers and the cache (a fake engine) --------------------------------------

@dataclass
class _FakeEngine:
    """Two faces per image: a large one off-centre, a small one in the middle."""

    info: object
    calls: int = 0

    def analyze(self, bgr: np.ndarray, max_faces: int | None = None) -> list:
        from facedb.analysis.engines import Face

        self.calls += 1
        h, w = bgr.shape[:2]
        seed = int(bgr[0, 0, 0])
        big = Face((0.0, 0.0, w * 0.6, h * 0.6), 0.9, [(0.0, 0.0)] * 5, None)
        small = Face((w * 0.4, h * 0.4, w * 0.6, h * 0.6), 0.8, [(0.0, 0.0)] * 5, None)
        faces = [big, small]
        for i, f in enumerate(faces):
            if max_faces is None or i < max_faces:
                v = np.zeros(4, np.float32)
                v[i] = 1.0
                v[2 + seed % 2] = 0.5
                f.embedding = v / np.linalg.norm(v)
                f.quality = {"det_score": f.score, "eye_px": 20.0 + i, "blur": 50.0, "raw_norm": 9.0}
        return faces


def _images(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    out = []
    for i in range(n):
        p = folder / f"s{i % 2}" / f"s{i % 2}_{i:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (120, 90), (i, i, i)).save(p)
        out.append(p)
    return out


def test_pick_face_largest_and_central() -> None:
    from facedb.analysis.engines import Face

    big = Face((0, 0, 60, 60), 0.9, [], None)
    mid = Face((40, 40, 60, 60), 0.9, [], None)
    assert runner.pick_face([big, mid], 100, 100, "largest") == 0
    assert runner.pick_face([big, mid], 100, 100, "central") == 1
    assert runner.pick_face([mid], 100, 100, "central") == 0
    from facedb.errors import FacedbError

    with pytest.raises(FacedbError, match="face picker"):
        runner.pick_face([big, mid], 100, 100, "smallest")


def test_embed_pickers_quality_and_cache(tmp_path: Path) -> None:
    from facedb.analysis.engines import PackInfo, using_engine

    paths = _images(tmp_path / "data", 4)
    (tmp_path / "data" / "s0" / "broken.png").write_bytes(b"not an image")
    ds = runner.Dataset(paths + [tmp_path / "data" / "s0" / "broken.png"], ["s0", "s1", "s0", "s1", "s0"])
    eng = _FakeEngine(PackInfo("fakepack", 4, 0.5, "f" * 64))
    cache = tmp_path / "cache"
    with using_engine(eng, "fakepack"):  # type: ignore[arg-type]
        e = runner.embed(ds, "fakepack", None, 1, pick="largest", also=("central",), cache=cache)
        assert eng.calls == 4 and not e.cached and e.cache_file and Path(e.cache_file).parent == cache
        assert e.labels == ["s0", "s1", "s0", "s1"]
        assert list(e.failures) == [str(ds.paths[4])] and e.failures[str(ds.paths[4])] != "no_face"
        assert e.vectors.shape == (4, 4) and np.all(e.vectors[:, 0] > 0.5)  # the large face
        c = e.with_pick("central")
        assert np.all(c.vectors[:, 1] > 0.5) and c.pick == "central" and "largest" in c.alternatives
        assert e.quality is not None and e.quality_of("eye_px").tolist() == [20.0] * 4
        assert np.isnan(e.quality_of("face_px")).all() and e.n_faces is not None and e.n_faces.tolist() == [2] * 4
        again = runner.embed(ds, "fakepack", None, 1, pick="largest", also=("central",), cache=cache)
        assert eng.calls == 4 and again.cached and again.cache_file == e.cache_file
        np.testing.assert_array_equal(again.vectors, e.vectors)
        np.testing.assert_array_equal(again.with_pick("central").vectors, c.vectors)
        np.testing.assert_array_equal(again.quality, e.quality)
        assert again.paths == e.paths and again.failures == e.failures
        # another file list, another picker set or another fingerprint: another key
        runner.embed(runner.Dataset(paths[:3], ds.labels[:3]), "fakepack", None, 1, cache=cache)
        assert eng.calls == 7
        only_largest = runner.embed(ds, "fakepack", None, 1, cache=cache)
        assert eng.calls == 11 and not only_largest.cached
        np.testing.assert_array_equal(only_largest.vectors, e.vectors)
        with pytest.raises(Exception, match="was not computed"):
            only_largest.with_pick("central")
    eng2 = _FakeEngine(PackInfo("fakepack", 4, 0.5, "e" * 64))
    with using_engine(eng2, "fakepack"):  # type: ignore[arg-type]
        assert not runner.embed(ds, "fakepack", None, 1, cache=cache).cached and eng2.calls == 4
    assert len(list(cache.glob("*.npz"))) == 4
    # a rewritten file, or another order of the files, is another key
    key = runner.cache_key("fakepack", "f" * 64, paths, ("largest",))
    assert runner.cache_key("fakepack", "f" * 64, paths[::-1], ("largest",)) != key
    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert runner.cache_key("fakepack", "f" * 64, paths, ("largest",)) != key


def test_load_cached_reads_only_what_embed_wrote(tmp_path: Path) -> None:
    from facedb.analysis.engines import PackInfo, using_engine

    paths = _images(tmp_path / "data", 3)
    ds = runner.Dataset(paths, ["s0", "s1", "s0"])
    eng = _FakeEngine(PackInfo("fakepack", 4, 0.5, "f" * 64))
    cache = tmp_path / "cache"
    with using_engine(eng, "fakepack"):  # type: ignore[arg-type]
        assert runner.load_cached(ds, "fakepack", cache=cache) is None
        e = runner.embed(ds, "fakepack", None, 1, cache=cache)
        calls = eng.calls
        hit = runner.load_cached(ds, "fakepack", cache=cache)
        assert hit is not None and hit.cached and eng.calls == calls
        np.testing.assert_array_equal(hit.vectors, e.vectors)
        assert runner.load_cached(ds, "fakepack", also=("central",), cache=cache) is None  # other pickers
        assert runner.load_cached(runner.Dataset(paths[:2], ds.labels[:2]), "fakepack", cache=cache) is None


def test_rows_below_floor() -> None:
    q = np.full((3, len(runner.QUALITY_SIGNALS)), 50.0)
    eye = runner.QUALITY_SIGNALS.index("eye_px")
    q[1, eye], q[2, eye] = 5.0, np.nan
    assert runner.rows_below_floor(q, {"eye_px": 12.0}).tolist() == [False, True, False]  # NaN: no signal
    assert runner.rows_below_floor(q, {"unknown": 1e9}).tolist() == [False] * 3
    assert runner.rows_below_floor(q, None).tolist() == [False] * 3
    assert runner.rows_below_floor(None, {"eye_px": 12.0}, 2).tolist() == [False, False]
