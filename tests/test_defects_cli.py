"""Defects a new user met, each pinned by a test that failed before its fix (local CLI and
Python API, real faces from the photos insightface ships; tests/test_defects_server.py has the
ones that need a real `facedb serve`)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dbtools import run_cli, run_json
from facephotos import insightface_photos, save_crops
from PIL import Image

from facedb import FaceDB
from facedb.config import DEFAULT_PACK

#: A name no test data holds by chance, so its bytes can be looked for in the database file.
SECRET = "Quenby Zarathustra-Vølund"


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, tuple[float, float, float, float]]]:
    """person1..person6 of t1.jpg (left to right): one JPEG crop each and its box in t1.jpg."""
    return save_crops(tmp_path_factory.mktemp("crops"))


def _variant(src: Path, dst: Path) -> Path:
    """Another file of the same face (other bytes, so not a duplicate)."""
    with Image.open(src) as im:
        im.convert("RGB").resize((int(im.width * 1.1), int(im.height * 1.1))).save(dst, quality=90)
    return dst


# -- 1. --pack help -----------------------------------------------------------------------------

def test_pack_help_names_the_real_default() -> None:
    code, out, _ = run_cli(Path("/nonexistent-home-not-created"), "--help")
    assert code == 0
    text = " ".join(out.split())  # click wraps the help text
    assert f"{DEFAULT_PACK} (default" in text
    assert "sface (default" not in text


# -- 4. import -q -------------------------------------------------------------------------------

def test_import_quiet_prints_nothing_on_success(tmp_path: Path, crops: dict) -> None:
    root = tmp_path / "people"
    for name in ("person1", "person2"):
        (root / name).mkdir(parents=True)
        (root / name / "a.jpg").write_bytes(crops[name][0].read_bytes())
    code, out, err = run_cli(tmp_path / "home", "import", str(root), "-q")
    assert (code, out, err) == (0, "", "")
    assert sorted(s["name"] for s in run_json(tmp_path / "home", "subjects")) == ["person1", "person2"]
    assert run_cli(tmp_path / "home", "enroll", "person4", str(crops["person4"][0]), "-q") == (0, "", "")
    # A failure is still listed (and the exit code says so): quiet is not silent about losses.
    (root / "person3").mkdir()
    (root / "person3" / "bad.jpg").write_bytes(b"not an image")
    code, out, err = run_cli(tmp_path / "home", "import", str(root), "-q")
    assert code == 3 and out.splitlines() == [f"  failed [not_an_image] {out.split('] ', 1)[1].rstrip()}"]
    assert "bad.jpg" in out and "person1" not in out and "total" not in out


# -- 5. symlinked subject folders ---------------------------------------------------------------

def _linked_tree(tmp_path: Path, crops: dict) -> Path:
    """people/ann -> elsewhere/ann (a.jpg, b.jpg -> a file elsewhere), people/bob (real),
    people/bob-again -> people/bob, people/loop -> people (a loop), people/up -> tmp_path."""
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "ann").mkdir(parents=True)
    (elsewhere / "ann" / "a.jpg").write_bytes(crops["person1"][0].read_bytes())
    loose = _variant(crops["person1"][0], elsewhere / "ann-extra.jpg")
    (elsewhere / "ann" / "b.jpg").symlink_to(loose)
    root = tmp_path / "people"
    (root / "bob").mkdir(parents=True)
    (root / "bob" / "a.jpg").write_bytes(crops["person2"][0].read_bytes())
    (root / "ann").symlink_to(elsewhere / "ann", target_is_directory=True)
    (root / "bob-again").symlink_to(root / "bob", target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "up").symlink_to(tmp_path, target_is_directory=True)
    return root


def test_group_subject_files_follows_links_once(tmp_path: Path, crops: dict) -> None:
    from facedb.analysis.files import group_subject_files

    root = _linked_tree(tmp_path, crops)
    groups, skipped = group_subject_files(root)
    assert {k: sorted(p.name for p in v) for k, v in groups.items()} == {"ann": ["a.jpg", "b.jpg"], "bob": ["a.jpg"]}
    assert all(str(p).startswith(str(root)) for v in groups.values() for p in v), "paths as the user gave them"
    why = {Path(s.path).name: s for s in skipped}
    assert {k: s.reason for k, s in why.items()} == {"bob-again": "duplicate_folder", "loop": "symlink_loop",
                                                     "up": "symlink_loop"}
    assert "bob" in why["bob-again"].message and "loop" in why["loop"].message


def test_import_follows_symlinked_subject_folders(tmp_path: Path, crops: dict) -> None:
    root = _linked_tree(tmp_path, crops)
    code, out, err = run_cli(tmp_path / "home", "import", str(root), "--json")
    data = json.loads(out)
    assert code == 3, err
    assert {s["subject"]: s["enrolled"] for s in data["subjects"]} == {"ann": 2, "bob": 1}
    assert sorted((Path(f["path"]).name, f["reason"]) for f in data["failed"]) == [
        ("bob-again", "duplicate_folder"), ("loop", "symlink_loop"), ("up", "symlink_loop")]


def test_client_and_local_import_share_one_grouping() -> None:
    import inspect

    import facedb.client
    import facedb.operations.enroll

    for module in (facedb.client, facedb.operations.enroll):
        src = inspect.getsource(module)
        assert "group_subject_files" in src and "iterdir" not in src, module.__name__


# -- 6. verify on the best face -----------------------------------------------------------------

def test_verify_answers_for_the_face_that_matches(tmp_path: Path, crops: dict) -> None:
    """Enroll the smallest face of t1.jpg; `verify t1.jpg` must find that person in the group."""
    areas = {n: (b[2] - b[0]) * (b[3] - b[1]) for n, (_, b) in crops.items()}
    who = min(areas, key=lambda n: areas[n])
    home = tmp_path / "home"
    run_json(home, "enroll", who, str(crops[who][0]))
    photo = insightface_photos() / "t1.jpg"
    res = run_json(home, "verify", str(photo), who)
    assert res["match"] is True and res["faces_in_image"] == 6
    x1, y1, x2, y2 = res["face_bbox"]
    bx1, by1, bx2, by2 = crops[who][1]
    assert abs((x1 + x2) / 2 - (bx1 + bx2) / 2) < 10 and abs((y1 + y2) / 2 - (by1 + by2) / 2) < 10
    assert res["face_index"] == 5, "the smallest of six faces, largest first"
    code, out, _ = run_cli(home, "verify", str(photo), who)
    assert code == 0 and out.startswith("MATCH") and "face 6 of 6" in out
    # A stranger is still no match (Tom Hanks is not in the database).
    code, out, _ = run_cli(home, "verify", str(insightface_photos() / "Tom_Hanks_54745.png"), who)
    assert code == 3 and out.startswith("NO MATCH")


# -- 3. the audit trail -------------------------------------------------------------------------

def test_deleted_name_leaves_every_audit_row_and_the_file(tmp_path: Path, crops: dict) -> None:
    home = tmp_path / "home"
    photo = str(crops["person1"][0])
    # Someone else was called SECRET once, then renamed: that row's text holds the name.
    run_json(home, "enroll", SECRET, str(crops["person2"][0]))
    run_json(home, "rename", SECRET, "Keeper")
    run_json(home, "enroll", SECRET, photo)
    run_json(home, "verify", photo, SECRET)
    run_json(home, "delete", SECRET, "--yes")
    # Requests about the name after it is gone: each fails, each is audited.
    assert run_cli(home, "verify", photo, SECRET)[0] == 4
    assert run_cli(home, "rename", SECRET, "Someone")[0] == 4
    assert run_cli(home, "delete", SECRET, "--yes")[0] == 4
    rows = run_json(home, "audit")
    assert [r["outcome"] for r in rows].count("error") == 3
    assert SECRET not in json.dumps(rows, ensure_ascii=False)
    assert {r["subject"] for r in rows if r["outcome"] == "error"} == {None}
    # The only subject named in the trail today is one that exists.
    assert {r["subject"] for r in rows if r["subject"] and not r["subject"].startswith("deleted")} == {"Keeper"}
    run_json(home, "vacuum")
    needle = SECRET.encode()
    for f in home.glob("facedb.sqlite3*"):
        assert needle not in f.read_bytes(), f.name


def test_audit_rows_come_back_in_time_order(tmp_path: Path, crops: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Searches are written in batches, after later writes: the trail is still in time order."""
    from facedb.operations import gatekeeper

    monkeypatch.setattr(gatekeeper, "FLUSH_EVERY_S", 3600.0)
    with FaceDB(home=tmp_path / "home", workers=1) as db:
        db.enroll("person1", [crops["person1"][0]])
        db.search([crops["person1"][0]])
        db.enroll("person2", [crops["person2"][0]])
        rows = db.audit()
    assert [r.action for r in rows] == ["enroll", "search", "enroll"]
    assert [r.at for r in rows] == sorted(r.at for r in rows)


# -- 7. wording ---------------------------------------------------------------------------------

def test_plural() -> None:
    from facedb.wording import plural

    assert [plural(n, "image") for n in (0, 1, 2)] == ["0 images", "1 image", "2 images"]
    assert plural(1, "entry") == "1 entry" and plural(3, "entry") == "3 entries"
    assert plural(7, "face", width=3) == "  7 faces"


def test_counts_are_singular_for_one(tmp_path: Path, crops: dict) -> None:
    home = tmp_path / "home"
    code, out, _ = run_cli(home, "enroll", "person1", str(crops["person1"][0]))
    assert code == 0 and "0 duplicates skipped" in out
    code, out, _ = run_cli(home, "subjects")
    assert code == 0 and "1 images" not in out and "1 faces" not in out and "1 subjects" not in out
    assert out.split() == ["person1", "1", "image", "1", "face", "1", "subject"]
    code, out, _ = run_cli(home, "audit")
    assert code == 0 and out.rstrip().endswith("1 entry") and "1 image 1 face" in out
    code, out, _ = run_cli(home, "delete", "person1", "--yes")
    assert code == 0 and out.strip() == "deleted person1: 1 image, 1 face"


def test_size_limits_say_mib() -> None:
    from facedb.server.uploads import _mb

    assert _mb(20 * 1024 * 1024) == "20 MiB"
    code, out, _ = run_cli(Path("/nonexistent-home-not-created"), "serve", "--help")
    text = " ".join(out.split())
    assert code == 0 and "Largest uploaded image, in MiB" in text and "Largest request body, in MiB" in text


def test_home_files_are_private_for_a_library_user(tmp_path: Path, crops: dict) -> None:
    """Files created while a FaceDB holds its home (as `facedb serve` does: no chmod after each
    call then) are 0600 and folders 0700 from the start, whatever the caller's umask."""
    import stat

    old = os.umask(0o022)
    try:
        with FaceDB(home=tmp_path / "home", workers=1, exclusive=True) as db:
            db.enroll("person1", [crops["person1"][0]])
            opened = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "home").rglob("*")}
    finally:
        os.umask(old)
    assert opened
    for p, mode in opened.items():
        assert mode == (0o700 if p.is_dir() else 0o600), (p, oct(mode))
