"""Defects that show only with a real `facedb serve` (a separate process on a fresh home, reached
over TCP with httpx and through the home's socket with the `facedb` CLI): refusals in the audit
trail, the thin client's import of symlinked folders, a refused file named once, and a home
that stays private while the server writes to it."""
from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from facephotos import insightface_photos, save_crops
from PIL import Image

from facedb.evaluation.servers import FacedbServer, bearer
from facedb.server.uploads import Limits

SECRET = "Quenby Zarathustra-Vølund"
#: The server's per-file limit here: over t1.jpg (129 kB) and every crop.
MAX_FILE_MB = 0.2


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, tuple[float, float, float, float]]]:
    return save_crops(tmp_path_factory.mktemp("crops"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FacedbServer]:
    """A server on a home it creates itself (the case of the bug report)."""
    home = tmp_path_factory.mktemp("srv") / "home"
    with FacedbServer(home, "--max-file-mb", str(MAX_FILE_MB), workers=1) as srv:
        yield srv


def _modes(home: Path) -> dict[str, int]:
    return {str(p.relative_to(home)): stat.S_IMODE(p.lstat().st_mode) for p in [home, *home.rglob("*")]}


def _not_private(home: Path) -> dict[str, str]:
    return {p: oct(m) for p, m in _modes(home).items() if m != (0o700 if (home / p).is_dir() else 0o600)}


def test_refusals_are_audited_without_names_or_keys(server: FacedbServer) -> None:
    reader = server.new_key("reader", "read")
    wrong = "fdb_" + "Q" * 43
    with httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.get(f"/v1/subjects/{SECRET}").status_code == 401                           # no key
        assert http.get("/v1/subjects", headers=bearer(wrong)).status_code == 401              # unknown key
        assert http.delete(f"/v1/subjects/{SECRET}", headers=bearer(reader)).status_code == 403  # no scope
        assert http.get("/v1/subjects", headers=bearer(reader)).status_code == 200
    rows = server.cli_json("audit")
    refused = [r for r in rows if r["outcome"] in ("unauthorized", "forbidden")]
    assert [(r["outcome"], r["actor"], r["detail"]) for r in refused] == [
        ("unauthorized", "(no valid key)", "GET /v1/subjects/{name:path}"),
        ("unauthorized", "(no valid key)", "GET /v1/subjects"),
        ("forbidden", "reader", "DELETE /v1/subjects/{name:path}"),
    ]
    text = json.dumps(rows, ensure_ascii=False)
    assert SECRET not in text and "Zarathustra" not in text
    for key in (reader, wrong):  # no key, nor any 8 characters of one
        assert not any(key[i:i + 8] in text for i in range(len(key) - 7)), key
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    code = server.cli("audit")
    assert code.returncode == 0 and "unauthorized" in code.stdout.decode()


def test_client_import_follows_symlinked_subject_folders(server: FacedbServer, crops: dict, tmp_path: Path) -> None:
    """The CLI goes through the server's socket: `Client.import_dir` groups the folder."""
    elsewhere = tmp_path / "elsewhere" / "ann"
    elsewhere.mkdir(parents=True)
    (elsewhere / "a.jpg").write_bytes(crops["person3"][0].read_bytes())
    root = tmp_path / "people"
    (root / "bob").mkdir(parents=True)
    (root / "bob" / "a.jpg").symlink_to(crops["person4"][0])
    (root / "ann").symlink_to(elsewhere, target_is_directory=True)
    (root / "ann-again").symlink_to(elsewhere, target_is_directory=True)
    (root / "loop").symlink_to(tmp_path, target_is_directory=True)
    data = server.cli_json("import", str(root), ok=(3,))
    assert {s["subject"]: s["enrolled"] for s in data["subjects"]} == {"ann": 1, "bob": 1}
    assert sorted((Path(f["path"]).name, f["reason"]) for f in data["failed"]) == [
        ("ann-again", "duplicate_folder"), ("loop", "symlink_loop")]


def test_too_large_file_is_named_once(server: FacedbServer, tmp_path: Path) -> None:
    big = tmp_path / "group.jpg"
    with Image.open(insightface_photos() / "t1.jpg") as im:
        im.convert("RGB").resize((im.width * 2, im.height * 2)).save(big, quality=95)
    assert big.stat().st_size > Limits(max_file_bytes=int(MAX_FILE_MB * 1024 * 1024)).max_file_bytes
    # Over TCP: the owner's socket has no HTTP upload limit (the direct path's limits apply there).
    tcp = ("--server", server.url, "--api-key", server.new_key("too-large-writer", "write"))
    res = server.cli(*tcp, "enroll", "someone", str(big))
    out = res.stdout.decode()
    (line,) = [ln for ln in out.splitlines() if "[too_large]" in ln]
    assert res.returncode == 3 and line.count("group.jpg") == 1 and "MiB" in line, line
    res = server.cli(*tcp, "search", str(big))
    (line,) = [ln for ln in res.stdout.decode().splitlines() if "[too_large]" in ln]
    assert line.count("group.jpg") == 1, line


def test_verify_through_the_server_names_the_face(server: FacedbServer, crops: dict) -> None:
    who = "person6"
    server.cli_json("enroll", who, str(crops[who][0]))
    res = server.cli_json("verify", str(insightface_photos() / "t1.jpg"), who)
    assert res["match"] is True and res["faces_in_image"] == 6 and res["face_index"] > 0
    assert res["face_bbox"][0] > 1000, "person6 is the right-most face"


def test_home_is_private_while_the_server_runs_and_after(server: FacedbServer, crops: dict,
                                                         tmp_path: Path) -> None:
    """Runs last: it stops the module's server."""
    for name in ("person1", "person2"):
        server.cli_json("enroll", name, str(crops[name][0]))
    server.cli_json("search", str(crops["person1"][0]))
    server.cli_json("delete", "person2", "--yes")
    home = server.home
    assert "facedb.sock" in _modes(home) and any(p.startswith("chroma/") for p in _modes(home))
    assert _not_private(home) == {}, "while the server runs"
    assert server.stop() == 0
    assert "facedb.sqlite3" in _modes(home)
    assert _not_private(home) == {}, "after it stopped"
