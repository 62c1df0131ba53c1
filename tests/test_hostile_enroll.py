"""Hostile input through the CLI: each bad item gets one clear reason, the batch goes on,
memory stays bounded, and nothing already stored is lost."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dbtools import run_cli, run_json


def _cli_in_child(tmp_path: Path, home: Path, *args: str) -> tuple[int, str, str, float]:
    """Run ``facedb --home HOME ARGS`` in a new Python process; (exit code, stdout, stderr, its
    peak RSS in MB)."""
    report = tmp_path / "child-rss.json"
    code = ("import json, resource, sys\n"
            "from facedb.cli import cli\n"
            "try:\n"
            "    cli.main(sys.argv[2:], prog_name='facedb')\n"
            "    code = 0\n"
            "except SystemExit as exc:\n"
            "    code = exc.code if isinstance(exc.code, int) else 1\n"
            "open(sys.argv[1], 'w').write(json.dumps({'code': code, 'kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(report), "--home", str(home), *args],
                          capture_output=True, timeout=600)
    data = json.loads(report.read_text())
    return int(data["code"]), proc.stdout.decode(), proc.stderr.decode(), data["kib"] / 1024


def test_hostile_corpus_batch(tmp_path: Path, hostile_corpus, face_photo_paths: list[Path]) -> None:
    home = tmp_path / "home"
    keeper = face_photo_paths[1]
    assert run_json(home, "enroll", "keeper", str(keeper))["enrolled"] == 1
    before = run_json(home, "search", str(keeper))["results"][0]["faces"][0]

    # Directories given to `enroll` are walked (that is its job); `search` gets them below.
    dir_cases = {"directory", "dir_symlink_loop"}
    items = {c: v for c, v in hostile_corpus.items() if c not in dir_cases}
    paths = [str(p) for p, _ in items.values()]
    # In a fresh process: ru_maxrss is a high-water mark, which earlier work here would hide.
    code, out, err, peak_mb = _cli_in_child(tmp_path, home, "enroll", "hostile", *paths, "--json",
                                            "--multi-face", "largest")
    assert code == 3, err
    rep = json.loads(out)["subjects"][0]
    reasons = {f["path"]: f["reason"] for f in rep["failed"]}
    for case, (path, expected) in items.items():
        if expected is None:
            assert str(path) not in reasons, f"{case}: a face should have been enrolled ({reasons.get(str(path))})"
        else:
            assert reasons.get(str(path)) == expected, f"{case}: expected {expected}, got {reasons.get(str(path))}"
    face_cases = [c for c, (_, e) in items.items() if e is None]
    # Face cases share one source photo; variants with identical bytes count as duplicates.
    assert rep["enrolled"] + rep["duplicates"] == len(face_cases)
    assert rep["enrolled"] == len({items[c][0].read_bytes() for c in face_cases})
    for f in rep["failed"]:
        assert "\n" not in f["message"], "one line per item, even for a file name with a newline"
    # The 8000x6000 photo is decoded (~150 MB as BGR); the 50000x50000 bomb never is (7.5 GB).
    assert peak_mb < 2000, peak_mb

    after = run_json(home, "search", str(keeper))["results"][0]["faces"][0]
    assert after["identity"] == before["identity"] == "keeper"
    assert run_json(home, "check")["clean"] is True
    stored = {s["name"]: s["faces"] for s in run_json(home, "subjects")}
    assert stored == {"keeper": 1, "hostile": rep["enrolled"]}
    failures = run_json(home, "failures", "--subject", "hostile")
    assert {f["path"]: f["reason"] for f in failures} == reasons
    # Every case as a search probe, directories included: one result (and reason) per input.
    code, out, _ = run_cli(home, "search", *[str(p) for p, _ in hostile_corpus.values()], "--json")
    assert code == 3
    results = json.loads(out)["results"]
    assert len(results) == len(hostile_corpus)
    for (case, (_path, expected)), res in zip(hostile_corpus.items(), results):
        if expected is None:
            assert res["error"] is None and res["faces"], case
        else:
            assert res["reason"] == expected, (case, res["reason"])


def test_mixed_directory_walk_terminates(tmp_path: Path, hostile_corpus) -> None:
    """The corpus folder (with a symlink loop and a FIFO) as one directory argument."""
    home = tmp_path / "home"
    folder = next(iter(hostile_corpus.values()))[0].parent
    code, out, err = run_cli(home, "enroll", "walk", str(folder), "--json")
    assert code == 3, err
    rep = json.loads(out)["subjects"][0]
    assert rep["enrolled"] >= 1 and rep["failed"]
    assert all(f["reason"] for f in rep["failed"])


def test_hostile_subject_names(tmp_path: Path, face_photo: Path) -> None:
    home = tmp_path / "home"
    assert run_json(home, "enroll", "first", str(face_photo))["enrolled"] == 1
    for name in ("", " ", "a" * 257, "tab\there", "nul\x00", "bell\x07"):
        code, out, err = run_cli(home, "enroll", name, str(face_photo))
        assert code == 1, (name, code, err)
        assert err.startswith("Error: subject name") and len(err.strip().splitlines()) == 1
    names = ["Robert'); DROP TABLE subjects;--", "$(touch /tmp/pwned-facedb) `id` ; rm -rf /",
             "名前 with ünïcode", "x" * 256, "../../etc/passwd", "%s%n%x", "-rf"]
    for i, name in enumerate(names):
        src = tmp_path / f"v{i}.png"
        from PIL import Image

        with Image.open(face_photo) as im:
            im.convert("RGB").rotate(i + 1, expand=True, fillcolor=(128, 128, 128)).save(src)
        args = ["enroll", "--", name, str(src)] if name.startswith("-") else ["enroll", name, str(src)]
        code, out, err = run_cli(home, *args)
        assert code == 0, (name, err)
    assert not Path("/tmp/pwned-facedb").exists()
    assert sorted(s["name"] for s in run_json(home, "subjects")) == sorted(["first", *names])
    assert run_json(home, "show", names[0])["name"] == names[0]
