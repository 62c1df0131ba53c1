"""Several facedb processes on one home: the home lock serialises every Chroma access.

Real ``facedb`` console-script subprocesses, started together: enrollers and searchers must all
succeed (a busy exit, code 5, is retried), searchers must never see a half-written state, and the
home must end exact and consistent. Also: a held lock makes a command fail fast with exit code 5,
and the lock dies with its holder (flock), even on SIGKILL.

Real face photos come from insightface's t1.jpg (six people), as in test_cli.py's ``group``
fixture; each person gets several distinct image files (different bytes, same face) so that
enrollment does not deduplicate them.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dbtools import facedb_executable, run_cli, run_json, run_process
from facephotos import make_face_variants

pytestmark = pytest.mark.slow  # several facedb processes at once

BUSY = 5
#: Generous per-command lock wait in the stress test (each holder keeps the lock < 1-2 s).
STRESS_LOCK_TIMEOUT = "30"
MAX_BUSY_RETRIES = 5


# -- real faces ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("faces"))


# -- running many processes ---------------------------------------------------------------------

class Log:
    """Thread-safe record of every command run: (who, args, exit code, stdout, stderr, seconds, tries)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: list[dict[str, Any]] = []

    def add(self, **row: Any) -> None:
        with self.lock:
            self.rows.append(row)


def run_retrying(home: Path, who: str, log: Log, *args: str, first_timeout: str = STRESS_LOCK_TIMEOUT
                 ) -> dict[str, Any]:
    """Run ``facedb --home HOME --lock-timeout T ARGS``; retry (with T = STRESS_LOCK_TIMEOUT)
    while it exits 5 (busy)."""
    tries = 0
    while True:
        tries += 1
        t0 = time.monotonic()
        timeout = first_timeout if tries == 1 else STRESS_LOCK_TIMEOUT
        proc = run_process(home, "--lock-timeout", timeout, *args, timeout=240)
        row = {"who": who, "args": list(args), "code": proc.returncode, "out": proc.stdout.decode(),
               "err": proc.stderr.decode(), "seconds": time.monotonic() - t0, "tries": tries,
               "t_start": t0, "t_end": time.monotonic()}
        log.add(**row)
        if proc.returncode == BUSY and tries < MAX_BUSY_RETRIES:
            continue  # busy: the lock was not free within the timeout; try again
        return row


def _guarded(target: Any, errors: list[BaseException]) -> Any:
    """Run a thread body, keeping any exception for the test to report."""
    def body(*args: Any) -> None:
        try:
            target(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the test
            errors.append(exc)
    return body


def _fmt(row: dict[str, Any]) -> str:
    return (f"{row['who']} facedb {' '.join(row['args'])} -> exit {row['code']} after {row['seconds']:.1f}s "
            f"(try {row['tries']})\nstderr: {row['err'][-800:]}\nstdout: {row['out'][:800]}")


def _enroller(home: Path, name: str, images: list[Path], log: Log, barrier: threading.Barrier) -> None:
    barrier.wait()
    # Two commands: two new images in one batch, then the third plus one already stored (a duplicate).
    run_retrying(home, name, log, "enroll", name, str(images[0]), str(images[1]),
                 "--workers", "1", "-q", "--json")
    run_retrying(home, name, log, "enroll", name, str(images[2]), str(images[0]),
                 "--workers", "1", "-q", "--json")


def _searcher(home: Path, idx: int, probes: list[tuple[str, Path]], log: Log, barrier: threading.Barrier,
              n_searches: int) -> None:
    barrier.wait()
    for j in range(n_searches):
        a = probes[(idx + j) % len(probes)]
        b = probes[(idx + j + 3) % len(probes)]
        args = ["search", str(a[1]), str(b[1]), "--json"]
        if (idx + j) % 2 == 0:
            args += ["--by", "face", "-k", "50"]  # more than all faces: a snapshot of the whole index
        else:
            args += ["-k", "3"]
        if idx < 2:
            args.append("--reference")
        # searcher3 first tries with a short lock wait: it may well exit busy (5), then retries.
        run_retrying(home, f"searcher{idx}", log, *args, first_timeout="0.3" if idx == 3 else STRESS_LOCK_TIMEOUT)


# -- tests --------------------------------------------------------------------------------------

def test_concurrent_enrollers_and_searchers(tmp_path: Path, people: dict[str, list[Path]]) -> None:
    home = tmp_path / "home"
    base = ["person5", "person6"]           # enrolled before the storm: always findable
    enrolling = ["person1", "person2", "person3", "person4"]  # one enroller process each
    for name in base:
        rep = run_json(home, "enroll", name, *map(str, people[name]), "--workers", "1", "-q")
        assert rep["enrolled"] == 3
    # Probe files: variant 0 of every person (the same photo as an enrolled/enrolling image).
    probes = [(name, people[name][0]) for name in sorted(people)]
    truth = {str(p): name for name, p in probes}

    log = Log()
    n_searches = int(os.environ.get("FACEDB_STRESS_SEARCHES", "2"))  # per searcher; raise for a longer run
    barrier = threading.Barrier(len(enrolling) + 4)
    errors: list[BaseException] = []
    threads = [threading.Thread(target=_guarded(_enroller, errors), args=(home, name, people[name], log, barrier),
                                name=name) for name in enrolling]
    threads += [threading.Thread(target=_guarded(_searcher, errors),
                                 args=(home, i, probes, log, barrier, n_searches), name=f"searcher{i}")
                for i in range(4)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=400)
    wall = time.monotonic() - t0
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    assert not errors, errors

    final = [r for r in log.rows if r["code"] != BUSY or r["tries"] == MAX_BUSY_RETRIES]
    # Every command ends in success (a busy exit was retried).
    failed = [r for r in final if r["code"] != 0]
    assert not failed, "\n\n".join(_fmt(r) for r in failed)
    assert len(final) == 2 * len(enrolling) + 4 * n_searches, f"{len(final)} commands completed"
    busy = [r for r in log.rows if r["code"] == BUSY]
    for r in busy:  # a busy exit is the documented one-line message
        assert r["err"].strip().startswith("Error: database busy"), _fmt(r)
        assert len(r["err"].strip().splitlines()) == 1, _fmt(r)
    print(f"\n{len(log.rows)} processes ({len(busy)} busy exits retried) in {wall:.1f}s wall")
    for r in sorted(log.rows, key=lambda r: r["t_end"]):
        print(f"  {r['t_end'] - t0:6.1f} {r['seconds']:5.1f}s exit {r['code']} {r['who']} {' '.join(r['args'][:1] + r['args'][3:])}")

    # Enrollers: the first command stores 2 faces, the second 1 (+1 duplicate), unless retried.
    for r in final:
        if r["args"][0] != "enroll":
            continue
        rep = json.loads(r["out"])
        if r["tries"] == 1:
            expected = (2, 0) if r["args"][2].endswith("_v0.jpg") else (1, 1)
            assert (rep["enrolled"], rep["duplicates"]) == expected, _fmt(r)
        assert rep["n_failed"] == 0, _fmt(r)

    # Searchers: every output parses and is consistent at that moment.
    all_names = set(base) | set(enrolling)
    searches = sorted((r for r in final if r["args"][0] == "search"), key=lambda r: r["t_end"])
    snapshots: list[tuple[float, float, dict[str, set[int]], dict[str, Any]]] = []
    for r in searches:
        data = json.loads(r["out"])  # must be complete, valid JSON
        reference = "--reference" in r["args"]
        assert len(data["results"]) == 2, _fmt(r)
        for res in data["results"]:
            who = truth[res["image"]]
            assert res["error"] is None and len(res["faces"]) == 1, _fmt(r)
            face = res["faces"][0]
            # The probe is the very photo enrolled (or being enrolled) for `who`: it is `who`
            # once enrolled, else unknown; never anybody else.
            if who in base:
                assert face["identity"] == who, _fmt(r)
            else:
                assert face["identity"] in (None, who), _fmt(r)
            assert {m["subject"] for m in face["matches"]} <= all_names, _fmt(r)
            dists = [m["distance"] for m in face["matches"]]
            assert dists == sorted(dists), _fmt(r)
            if reference:
                assert face["reference_agrees"] is True, _fmt(r)
            else:
                assert face.get("reference_agrees") is None, _fmt(r)
        if "face" in r["args"]:
            # k=50 > all faces: the matches are a snapshot of every indexed face. Each enroll
            # command is one atomic batch (2 faces, then 1): a subject shows 0, 2 or 3 faces,
            # never a half-written batch; base subjects always show all 3.
            face_ids: dict[str, set[int]] = {}
            for m in data["results"][0]["faces"][0]["matches"]:
                face_ids.setdefault(m["subject"], set()).add(m["face_id"])
            for other in data["results"][1:]:
                ids2: dict[str, set[int]] = {}
                for m in other["faces"][0]["matches"]:
                    ids2.setdefault(m["subject"], set()).add(m["face_id"])
                assert ids2 == face_ids, "two probes of one search saw different indexes\n" + _fmt(r)
            for name in base:
                assert len(face_ids.get(name, ())) == 3, _fmt(r)
            for name in enrolling:
                assert len(face_ids.get(name, ())) in (0, 2, 3), _fmt(r)
            snapshots.append((r["t_start"], r["t_end"], face_ids, r))
    print("index snapshots (faces of person1..4):",
          [tuple(len(ids.get(n, ())) for n in enrolling) for _, _, ids, _ in snapshots])
    # Monotonic reads across processes: a snapshot taken by a search that started after another
    # search had finished holds every face that the earlier one saw.
    for _a_start, a_end, a_ids, a_row in snapshots:
        for b_start, _b_end, b_ids, b_row in snapshots:
            if a_end < b_start:
                for name, ids in a_ids.items():
                    assert ids <= b_ids.get(name, set()), (
                        f"{name} lost faces between snapshots\n{_fmt(a_row)}\n---\n{_fmt(b_row)}")

    # Final state: exact counts, a clean check, and every SQL face id in Chroma.
    subjects = {s["name"]: (s["images"], s["faces"]) for s in json.loads(
        run_retrying(home, "final", log, "subjects", "--json")["out"])}
    assert subjects == {name: (3, 3) for name in all_names}
    row = run_retrying(home, "final", log, "check", "--json")
    assert row["code"] == 0, _fmt(row)
    report = json.loads(row["out"])
    assert report["clean"] is True and report["catalog_faces"] == report["index_faces"] == 18, report
    assert report["pending_index"] == 0 and report["pending_deletes"] == 0, report

    from facedb import FaceDB

    db = FaceDB(home=home, lock_timeout=30)
    try:
        with db.hold():
            info = db.pack.info
            sql_ids = db.catalog.face_ids(info.name)
            assert db.index_face_ids() == sql_ids and len(sql_ids) == 18
            assert db.catalog.unindexed_faces(info.name) == []
            assert db.catalog.pending_deletes() == {}
    finally:
        db.close()
    # And the answers are right: every probe is its own person, exactly as the reference says.
    data = run_json(home, "search", *(str(p) for _, p in probes), "--reference")
    assert [r["faces"][0]["identity"] for r in data["results"]] == [n for n, _ in probes]
    assert all(r["faces"][0]["reference_agrees"] for r in data["results"])


def test_concurrent_first_open_of_a_new_home(tmp_path: Path) -> None:
    """Several processes creating the same (new) home at once: schema created once, all succeed."""
    home = tmp_path / "new-home"
    procs = [subprocess.Popen([*facedb_executable(), "--home", str(home), "--lock-timeout", "30",
                               "subjects", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
        assert json.loads(out) == []
    code, out, err = run_cli(home, "check", "--json")
    assert code == 0 and json.loads(out)["clean"] is True, err


# -- the lock itself -----------------------------------------------------------------------------

HOLDER = """
import sys
from facedb import FaceDB
db = FaceDB(sys.argv[1])
with db.hold():              # the exclusive home lock, with the Chroma index open
    print("held", flush=True)
    sys.stdin.readline()     # hold until the parent writes a line (or closes stdin)
print("released", flush=True)
"""


def _start_holder(home: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else b""
    if line.strip() != b"held":
        proc.kill()
        raise AssertionError(f"holder did not take the lock: {line!r} {proc.stderr.read().decode()}")
    return proc


def _close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.fixture()
def small_home(tmp_path: Path, people: dict[str, list[Path]]) -> Path:
    home = tmp_path / "home"
    assert run_json(home, "enroll", "person2", str(people["person2"][0]), "-q")["enrolled"] == 1
    return home


def test_held_lock_makes_search_busy_then_it_succeeds(small_home: Path, people: dict[str, list[Path]]) -> None:
    probe = str(people["person2"][1])
    holder = _start_holder(small_home)
    waiter = None
    try:
        elapsed = {}
        for timeout in ("0", "1"):
            t0 = time.monotonic()
            proc = run_process(small_home, "--lock-timeout", timeout, "search", probe, "--json", timeout=60)
            elapsed[timeout] = time.monotonic() - t0
            err = proc.stderr.decode().strip()
            assert proc.returncode == BUSY, (proc.returncode, err)
            assert len(err.splitlines()) == 1 and err.startswith("Error: database busy"), err
            assert json.loads(proc.stdout)["exit_code"] == BUSY
        # It waited the whole 1 s timeout before giving up (a lower bound: never flaky).
        assert elapsed["1"] >= 1.0, elapsed
        # A command with a longer timeout waits, and succeeds once the holder lets go.
        waiter = subprocess.Popen([*facedb_executable(), "--home", str(small_home), "--lock-timeout", "60",
                                   "search", probe, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        assert waiter.poll() is None, "the waiting search did not wait for the lock"
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write(b"\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
        assert holder.stdout.read().strip() == b"released"
        out, err2 = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, err2.decode()
        assert json.loads(out)["results"][0]["faces"][0]["identity"] == "person2"
    finally:
        for p in (holder, waiter):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
            if p is not None:
                _close_pipes(p)
    # The holder is gone: the lock is free at once.
    proc = run_process(small_home, "--lock-timeout", "1", "subjects", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [s["name"] for s in json.loads(proc.stdout)] == ["person2"]


def test_sigkill_of_the_holder_releases_the_lock(small_home: Path, people: dict[str, list[Path]]) -> None:
    holder = _start_holder(small_home)
    try:
        proc = run_process(small_home, "--lock-timeout", "0.5", "subjects", "--json", timeout=60)
        assert proc.returncode == BUSY, proc.stderr.decode()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        _close_pipes(holder)
    assert holder.returncode == -signal.SIGKILL
    proc = run_process(small_home, "--lock-timeout", "2", "search", str(people["person2"][1]), "--json",
                       timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert json.loads(proc.stdout)["results"][0]["faces"][0]["identity"] == "person2"
    proc = run_process(small_home, "--lock-timeout", "2", "check", "--json", timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["clean"] is True, proc.stderr.decode()


# -- lock-free disk scans ------------------------------------------------------------------------

def test_stats_survives_a_file_removed_by_another_process(small_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic stand-in for the race: a file disappears right after the directory listing
    saw it, exactly as when another process's vacuum deletes an obsolete Chroma segment."""
    import facedb.operations.maintenance as maintenance
    from facedb import FaceDB

    db = FaceDB(home=small_home)
    real_stat = os.stat
    removed: list[str] = []

    def stat_after_removal_by_other_process(path, *args, **kwargs):
        path = os.fspath(path)
        if path.endswith("header.bin") and not removed:
            removed.append(path)
            os.unlink(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(maintenance.os, "stat", stat_after_removal_by_other_process)
    try:
        stats = db.stats()
    finally:
        monkeypatch.undo()
        db.close()
    assert removed, "the home had no Chroma segment file to remove"
    assert stats.subjects == 1 and stats.disk_bytes > 0
