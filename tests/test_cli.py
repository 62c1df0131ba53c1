"""CLI behaviour on real faces that installed packages ship (runs without ../shared)."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from dbtools import run_cli, run_json, run_process
from facephotos import insightface_photos, save_crops
from PIL import Image

from facedb.cli import cli


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """t1.jpg (6 people) and one crop per person, named person1..person6 left to right."""
    photos = insightface_photos()
    return {"photo": photos / "t1.jpg", "crops": save_crops(tmp_path_factory.mktemp("crops")),
            "tom": photos / "Tom_Hanks_54745.png", "mask": photos / "mask_white.jpg"}


@pytest.fixture()
def enrolled(tmp_path: Path, group: dict) -> Path:
    home = tmp_path / "home"
    for name, (path, _) in group["crops"].items():
        code, out, err = run_cli(home, "enroll", name, str(path))
        assert code == 0, err
    return home


def test_every_command_has_help_with_example() -> None:
    """Every command (and every subcommand of a group) has an example and --json; `serve` runs
    in the foreground until stopped, so it has no output to give as JSON."""
    import click

    commands = [((name,), cmd) for name, cmd in cli.commands.items()]
    commands += [((name, sub), subcmd) for name, cmd in cli.commands.items() if isinstance(cmd, click.Group)
                 for sub, subcmd in cmd.commands.items()]
    for words, cmd in commands:
        code, out, _ = run_cli(Path("/nonexistent-home-not-created"), *words, "--help")
        assert code == 0, words
        assert "Example" in out, f"`facedb {' '.join(words)} --help` has no example"
        if not isinstance(cmd, click.Group) and words != ("serve",):
            assert "--json" in out, f"`facedb {' '.join(words)}` has no --json"
    assert not Path("/nonexistent-home-not-created").exists(), "--help must not create a database"


def test_group_photo_every_face_found_and_named(enrolled: Path, group: dict) -> None:
    data = run_json(enrolled, "search", str(group["photo"]), "-k", "2")
    faces = data["results"][0]["faces"]
    assert len(faces) == 6
    for face in faces:
        # The enrolled crop whose original box overlaps this face is the identity.
        cx = (face["bbox"][0] + face["bbox"][2]) / 2
        expected = next(n for n, (_, b) in group["crops"].items() if b[0] <= cx <= b[2])
        assert face["identity"] == expected
        assert face["matches"][0]["match"] is True
        assert face["matches"][0]["distance"] < data["threshold"]


def test_stranger_is_unknown_and_threshold_is_echoed(enrolled: Path, group: dict) -> None:
    data = run_json(enrolled, "search", str(group["tom"]))
    assert 0 < data["threshold"] < 1
    face = data["results"][0]["faces"][0]
    assert face["identity"] is None and not any(m["match"] for m in face["matches"])
    code, out, _ = run_cli(enrolled, "search", str(group["tom"]))
    assert code == 0 and "unknown" in out and f"threshold {data['threshold']:.3f}" in out
    # An explicit threshold above the distance turns the same face into a match.
    loose = run_json(enrolled, "search", str(group["tom"]), "--threshold", "1.5")
    assert loose["threshold"] == 1.5 and loose["results"][0]["faces"][0]["identity"] is not None


def test_bad_files_fail_alone_and_nothing_is_lost(enrolled: Path, group: dict, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "empty.jpg").write_bytes(b"")
    (mixed / "notes.txt").write_text("not an image")
    (mixed / "noise.jpg").write_bytes(os.urandom(4000))
    Image.open(group["mask"]).save(mixed / "mask.png")
    Image.open(group["tom"]).save(mixed / "tom.png")
    before = run_json(enrolled, "subjects")
    code, out, err = run_cli(enrolled, "enroll", "tom", str(mixed), str(tmp_path / "missing.jpg"), "--json")
    assert code == 3, err
    rep = json.loads(out)["subjects"][0]
    assert rep["enrolled"] == 1
    reasons = {Path(f["path"]).name: f["reason"] for f in rep["failed"]}
    assert reasons == {"empty.jpg": "empty_file", "notes.txt": "not_an_image", "noise.jpg": "not_an_image",
                       "mask.png": "no_face", "missing.jpg": "not_found"}
    after = {s["name"]: s for s in run_json(enrolled, "subjects")}
    for s in before:
        assert after[s["name"]]["faces"] == s["faces"], "stored faces must survive a bad batch"
    failures = run_json(enrolled, "failures", "--subject", "tom")
    assert {Path(f["path"]).name: f["reason"] for f in failures} == reasons
    code, out, _ = run_cli(enrolled, "enroll", "tom", str(mixed))
    assert code == 3 and "[no_face]" in out and "1 duplicate skipped" in out


def test_search_empty_database_and_bad_probe(tmp_path: Path, group: dict) -> None:
    home = tmp_path / "home"
    data = run_json(home, "search", str(group["tom"]))
    face = data["results"][0]["faces"][0]
    assert face["identity"] is None and face["matches"] == []
    code, out, err = run_cli(home, "search", str(group["tom"]), str(tmp_path / "nope.jpg"), "--json")
    assert code == 3
    res = json.loads(out)["results"]
    assert res[0]["error"] is None and res[1]["reason"] == "not_found"


def test_unknown_subject_exit_code(enrolled: Path, group: dict) -> None:
    for args in (["delete", "nobody", "--yes"], ["show", "nobody"], ["verify", str(group["tom"]), "nobody"],
                 ["rename", "nobody", "somebody"]):
        code, out, err = run_cli(enrolled, *args)
        assert code == 4, args
        assert err.strip().startswith("Error: no subject named 'nobody'")
        assert len(err.strip().splitlines()) == 1
    code, out, _ = run_cli(enrolled, "show", "nobody", "--json")
    assert json.loads(out)["exit_code"] == 4


def test_verify(enrolled: Path, group: dict) -> None:
    path, _ = group["crops"]["person2"]
    ok = run_json(enrolled, "verify", str(path), "person2")
    assert ok["match"] is True and ok["distance"] < ok["threshold"]
    code, out, _ = run_cli(enrolled, "verify", str(path), "person3", "--json")
    assert code == 3 and json.loads(out)["match"] is False


def test_search_from_stdin_and_path_list(enrolled: Path, group: dict, tmp_path: Path) -> None:
    path, _ = group["crops"]["person4"]
    code, out, err = run_cli(enrolled, "search", "-", "--json", input=path.read_bytes())
    assert code == 0, err
    data = json.loads(out)
    assert data["results"][0]["image"] == "<stdin>"
    assert data["results"][0]["faces"][0]["identity"] == "person4"
    listing = tmp_path / "list.txt"
    listing.write_text(f"{group['crops']['person1'][0]}\n{group['crops']['person5'][0]}\n")
    data = run_json(enrolled, "search", "--paths-from", str(listing))
    assert [r["faces"][0]["identity"] for r in data["results"]] == ["person1", "person5"]


def test_rename_and_metadata(enrolled: Path, group: dict) -> None:
    run_json(enrolled, "rename", "person3", "Carol")
    path, _ = group["crops"]["person3"]
    assert run_json(enrolled, "search", str(path))["results"][0]["faces"][0]["identity"] == "Carol"
    assert run_json(enrolled, "search", str(path), "--reference")["results"][0]["faces"][0]["reference_agrees"]
    run_json(enrolled, "enroll", "Carol", str(group["tom"]), "--metadata", '{"team": "blue"}')
    assert run_json(enrolled, "show", "Carol")["metadata"] == {"team": "blue"}
    code, _, err = run_cli(enrolled, "enroll", "x", str(path), "--metadata", "[1]")
    assert code == 2 and "JSON object" in err


def test_multi_face_policy(tmp_path: Path, group: dict) -> None:
    home = tmp_path / "home"
    code, out, _ = run_cli(home, "enroll", "crowd", str(group["photo"]), "--multi-face", "skip", "--json")
    assert code == 3 and json.loads(out)["subjects"][0]["failed"][0]["reason"] == "too_many_faces"
    code, out, _ = run_cli(home, "enroll", "crowd", str(group["photo"]), "--json")  # the default: resolve
    assert code == 3 and json.loads(out)["subjects"][0]["failed"][0]["reason"] == "ambiguous_faces"
    data = run_json(home, "enroll", "crowd", str(group["photo"]), "--multi-face", "largest")
    assert data["enrolled"] == 1 and data["subjects"][0]["images"][0] == {"image": str(group["photo"]),
                                                                          "faces": 6, "taken": 0}
    shown = run_json(home, "show", "crowd")
    (face,) = shown["images"][0]["faces"]
    x1, y1, x2, y2 = face["bbox"]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for _, b in group["crops"].values()]
    assert abs((x2 - x1) * (y2 - y1) - max(areas)) < 0.05 * max(areas), "the largest face is enrolled"


def test_import_layouts(tmp_path: Path, group: dict) -> None:
    root = tmp_path / "people"
    for name, (path, _) in group["crops"].items():
        (root / name).mkdir(parents=True)
        (root / name / "a.jpg").write_bytes(path.read_bytes())
    (root / "stray.jpg").write_bytes(group["tom"].read_bytes())
    home = tmp_path / "home"
    code, out, _ = run_cli(home, "import", str(root), "--json")
    data = json.loads(out)
    assert code == 3 and data["enrolled"] == 6 and data["failed"][0]["reason"] == "no_subject"
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "Tom_Hanks_0001.png").write_bytes(group["tom"].read_bytes())
    (flat / "person1.happy").write_bytes(group["crops"]["person1"][0].read_bytes())
    data = run_json(tmp_path / "h2", "import", str(flat), "--name-from", "prefix")
    assert sorted(s["subject"] for s in data["subjects"]) == ["Tom_Hanks", "person1"]


def test_bad_subject_names(tmp_path: Path, group: dict) -> None:
    home = tmp_path / "home"
    for name in ("", "   ", "x" * 300, "bad\nname"):
        code, out, err = run_cli(home, "enroll", name, str(group["tom"]))
        assert code == 1 and err.startswith("Error: subject name"), (name, code, err)
    odd = "Robert'); DROP TABLE subjects;-- $(rm -rf ~) `x` ünïcødé"
    assert run_json(home, "enroll", odd, str(group["tom"]))["enrolled"] == 1
    assert [s["name"] for s in run_json(home, "subjects")] == [odd]


def test_home_is_private(enrolled: Path) -> None:
    assert stat.S_IMODE(enrolled.stat().st_mode) == 0o700
    for p in enrolled.rglob("*"):
        mode = stat.S_IMODE(p.stat().st_mode)
        assert mode == (0o700 if p.is_dir() else 0o600), f"{p} is {oct(mode)}"


def test_other_sqlalchemy_url(tmp_path: Path, group: dict) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    home = tmp_path / "home"
    path, _ = group["crops"]["person1"]
    from click.testing import CliRunner

    res = CliRunner().invoke(cli, ["--home", str(home), "--db-url", url, "enroll", "p1", str(path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "catalog.db").exists() and not (home / "facedb.sqlite3").exists()
    res = CliRunner().invoke(cli, ["--home", str(home), "--db-url", url, "search", str(path), "--json"])
    assert json.loads(res.stdout)["results"][0]["faces"][0]["identity"] == "p1"


def test_check_detects_and_repairs_drift(enrolled: Path, group: dict) -> None:
    from facedb import FaceDB

    db = FaceDB(home=enrolled)
    victim = sorted(db.index_face_ids())[0]
    with db.store.writing() as index:
        index.delete(db.pack.info, [victim])  # simulate a lost vector behind facedb's back
    db.close()
    code, out, err = run_cli(enrolled, "search", str(group["tom"]), "--by", "face")
    assert code == 7 and "facedb check --repair" in err
    code, out, _ = run_cli(enrolled, "check", "--json")
    assert code == 7 and json.loads(out)["missing_from_index"] == [victim]
    assert run_json(enrolled, "check", "--repair")["repaired"] is True
    assert run_json(enrolled, "check")["clean"] is True
    assert run_json(enrolled, "search", str(group["tom"]))["results"][0]["faces"]


def test_check_finds_faces_the_index_cannot_reach(enrolled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A face Chroma holds (``get`` finds it) but no query returns: check reports it, --repair
    rebuilds the collection. The HNSW fault (chroma-core/chroma#7758) is injected by hiding one
    id from every real Chroma answer."""
    from facedb import FaceDB
    from facedb.index.chroma_index import ChromaIndex

    db = FaceDB(home=enrolled)
    victim = sorted(db.index_face_ids())[2]
    db.close()
    real = ChromaIndex._query

    def hiding(col: Any, vectors: Any, n: int) -> dict[str, Any]:
        res = real(col, vectors, n + 1)
        keep = [[j for j, i in enumerate(row) if i != str(victim)][:n] for row in res["ids"]]
        return {key: [[row[j] for j in ks] for row, ks in zip(res[key], keep)] for key in ("ids", "distances")}

    monkeypatch.setattr(ChromaIndex, "_query", staticmethod(hiding))
    data = run_json(enrolled, "check", ok=(7,))
    assert data["unreachable_in_index"] == [victim] and data["reach_checked"] == 6
    assert data["missing_from_index"] == [] and data["clean"] is False
    code, out, _ = run_cli(enrolled, "check")
    assert code == 7 and "1 of 6 checked unreachable by search" in out
    repaired = run_json(enrolled, "check", "--repair")
    assert repaired["repaired"] is True and "rebuilt the collection" in repaired["repairs"]
    monkeypatch.undo()
    clean = run_json(enrolled, "check")
    assert clean["clean"] is True and clean["unreachable_in_index"] == [] and clean["reach_checked"] == 6


def test_model_mismatch_is_refused_then_reindexed(enrolled: Path, group: dict) -> None:
    from facedb import FaceDB

    db = FaceDB(home=enrolled)
    key = f"pack:{db.pack_name}"
    rec = json.loads(db.catalog.get_setting(key))
    db.catalog.set_setting(key, json.dumps({**rec, "fingerprint": "0" * 64}))
    db.close()
    code, out, err = run_cli(enrolled, "search", str(group["tom"]))
    assert code == 6 and "facedb reindex" in err
    code, out, err = run_cli(enrolled, "enroll", "someone", str(group["tom"]))
    assert code == 6
    data = run_json(enrolled, "reindex")
    assert data["reindexed"] == 6 and data["failed"] == []
    path, _ = group["crops"]["person6"]
    assert run_json(enrolled, "search", str(path))["results"][0]["faces"][0]["identity"] == "person6"
    assert run_json(enrolled, "check")["clean"] is True


def test_opencv5_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    from facedb.analysis.engines.sface import require_opencv4
    from facedb.errors import DependencyError

    monkeypatch.setattr(cv2, "__version__", "5.0.0")
    with pytest.raises(DependencyError, match="OpenCV 4"):
        require_opencv4()


def test_console_script_runs_as_a_process(enrolled: Path, group: dict) -> None:
    proc = run_process(enrolled, "search", str(group["crops"]["person2"][0]), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["results"][0]["faces"][0]["identity"] == "person2"
    proc = run_process(enrolled, "delete", "person2")  # no terminal, no --yes: refuse
    assert proc.returncode == 2 and b"--yes" in proc.stderr


@pytest.mark.parametrize("damage", ["garbage_sqlite", "missing_dir"])
def test_corrupt_or_missing_index_is_reported_and_rebuilt(enrolled: Path, group: dict, damage: str) -> None:
    import shutil

    chroma = enrolled / "chroma"
    if damage == "garbage_sqlite":
        (chroma / "chroma.sqlite3").write_bytes(os.urandom(100_000))
    else:
        shutil.rmtree(chroma)
    probe = str(group["crops"]["person5"][0])
    # A search by template reads the catalog only: it still answers on a broken index...
    data = run_json(enrolled, "search", probe)
    assert data["scoring"] == "template" and data["results"][0]["faces"][0]["identity"] == "person5"
    # ...while a search by face needs the index, and says how to repair it, in one line.
    code, out, err = run_cli(enrolled, "search", probe, "--by", "face")
    assert code == 7 and "facedb check --repair" in err and len(err.strip().splitlines()) == 1
    code, out, _ = run_cli(enrolled, "check", "--json")
    assert code == 7 and json.loads(out)["clean"] is False
    assert run_json(enrolled, "check", "--repair")["repaired"] is True
    assert run_json(enrolled, "check")["clean"] is True
    data = run_json(enrolled, "search", probe, "--by", "face", "--reference")
    face = data["results"][0]["faces"][0]
    assert face["identity"] == "person5" and face["reference_agrees"] is True


def test_nothing_reaches_the_network(tmp_path: Path, group: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enroll, search (with the reference mode), check and delete with every socket connect refused."""
    import socket

    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: attempts.append(a) or (_ for _ in ()).throw(OSError("no DNS")))
    home = tmp_path / "home"
    path, _ = group["crops"]["person3"]
    assert run_json(home, "enroll", "p3", str(path))["enrolled"] == 1
    data = run_json(home, "search", str(group["photo"]), "--reference")
    assert sum(f["identity"] == "p3" for f in data["results"][0]["faces"]) == 1
    assert run_json(home, "check")["clean"] is True
    assert run_json(home, "delete", "p3", "--yes")["faces"] == 1
    assert attempts == [], f"facedb tried to reach the network: {attempts}"


def test_every_write_and_search_is_audited_and_a_delete_scrubs_the_name(tmp_path: Path, group: dict) -> None:
    home = tmp_path / "home"
    assert run_json(home, "enroll", "Ada Lovelace", str(group["tom"]))["enrolled"] == 1
    run_json(home, "verify", str(group["tom"]), "Ada Lovelace")
    run_json(home, "search", str(group["tom"]), str(group["photo"]))
    run_json(home, "rename", "Ada Lovelace", "Ada King")
    gone = run_json(home, "delete", "Ada King", "--yes")
    entries = run_json(home, "audit")
    assert [e["action"] for e in entries] == ["enroll", "verify", "search", "rename", "delete"]
    assert all(e["actor"] == "local" and e["outcome"] == "ok" for e in entries)
    search = entries[2]
    assert search["subject"] is None and search["images"] == 2 and search["faces"] == 1 + 6  # t1.jpg: 6 faces
    raw = json.dumps(entries)
    assert "Ada" not in raw, "a deleted subject's name is still in the audit trail"
    assert gone["faces"] == 1 and {e["subject"] for e in entries} == {None, "deleted subject #1"}
    code, out, _ = run_cli(home, "audit", "--since", "1h", "--json")
    assert code == 0 and len(json.loads(out)) == 5
    code, _, err = run_cli(home, "audit", "--since", "last tuesday")
    assert code == 2 and "ISO date/time" in err
