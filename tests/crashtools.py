"""Helpers for ``test_crash.py``: real face files, SIGKILLed ``facedb`` subprocesses, and the
in-process checks run on a home after a kill.

Nothing here changes how facedb behaves. The one test-only device is ``MemoEngine``: the
verifying pytest process analyses the same probe photos after every kill, so it memoises the
engine's answer per decoded pixel array (same pixels, same faces) instead of re-running the
CNN dozens of times. The killed subprocesses always run the real, unmodified engine.
"""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbtools import facedb_executable
from facephotos import t1_people
from hostile import insightface_images_dir
from PIL import Image, ImageEnhance, ImageOps

KILLED = -int(signal.SIGKILL)
#: Environment variables of the test process that must not reach a killed subprocess.
CRASH_WRITE_BATCH = 64
_SCRUB = ("FACEDB_CRASH_AT", "FACEDB_HOME", "FACEDB_DB_URL", "FACEDB_PACK", "FACEDB_LOCK_TIMEOUT",
          "FACEDB_WRITE_BATCH")


# -- real faces and junk ---------------------------------------------------------------------

def t1_photo() -> Path | None:
    """insightface's t1.jpg (1280x886, six people), or None when insightface is absent."""
    d = insightface_images_dir()
    return d / "t1.jpg" if d is not None and (d / "t1.jpg").is_file() else None


def _variant(crop: Image.Image, v: int) -> Image.Image:
    w, h = crop.size
    ops = [
        lambda c: c,
        ImageOps.mirror,
        lambda c: c.resize((int(w * 1.1), int(h * 1.1))),
        lambda c: c.resize((int(w * 0.9), int(h * 0.9))),
        lambda c: ImageEnhance.Brightness(c).enhance(1.15),
        lambda c: ImageEnhance.Contrast(c).enhance(0.85),
        lambda c: c.rotate(4, resample=Image.BICUBIC, fillcolor=(128, 128, 128)),
        lambda c: ImageOps.mirror(c).resize((int(w * 0.9), int(h * 0.9))),
    ]
    return ops[v](crop)


def make_people(out: Path, engine: Any, wanted: dict[str, int]) -> dict[str, list[Path]]:
    """person1..person6 (left to right in t1.jpg) -> ``wanted[person]`` JPEG files of that face,
    each with different bytes (crop, mirrored, rescaled, brightened...) and exactly one face."""
    from facedb.analysis import imaging

    out.mkdir(parents=True, exist_ok=True)
    people: dict[str, list[Path]] = {}
    for person in t1_people(margin=0.5, engine=engine):
        name, crop = person.name, person.image
        if not wanted.get(name):
            continue
        paths = []
        for v in range(8):
            if len(paths) == wanted[name]:
                break
            p = out / f"{name}_v{v}.jpg"
            _variant(crop, v).save(p, quality=93)
            if len(engine.analyze(imaging.load(p).pixels)) == 1:
                paths.append(p)
            else:
                p.unlink()
        assert len(paths) == wanted[name], f"only {len(paths)} single-face variants of {name}"
        people[name] = paths
    return people


def write_junk(path: Path, i: int, salt: str = "") -> None:
    """A distinct file that fails cheaply, before any detection: text, or bytes that are no image.

    (Not tiny images: YuNet was seen to "find" faces with score 1.0 in 24x24 solid-colour PNGs,
    depending on the image analysed before; see the report of test_crash.py.)"""
    if i % 2:
        path.with_suffix(".txt").write_text(f"not an image #{i} of {salt}\n")
    else:
        path.with_suffix(".jpg").write_bytes(b"\x00\x01junk" + salt.encode() + i.to_bytes(4, "big") * 16)


def mixed_folder(folder: Path, n_items: int, faces: dict[int, Path]) -> None:
    """``n_items`` files sorted by name; position p holds a copy of ``faces[p]`` or junk. Analysed
    items are written in batches of 64 (ingest.WRITE_BATCH), so the positions choose which
    batch stores which face."""
    folder.mkdir(parents=True, exist_ok=True)
    for pos in range(n_items):
        target = folder / f"i{pos:03d}"
        if pos in faces:
            target.with_suffix(".jpg").write_bytes(faces[pos].read_bytes())
        else:
            write_junk(target, pos, folder.name)


class MemoEngine:
    """Wraps a FaceEngine: ``analyze`` is memoised per pixel array (test process only)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.info = real.info
        self._memo: dict[tuple[str, tuple[int, ...]], list[Any]] = {}

    def analyze(self, pixels: Any, max_faces: int | None = None) -> list[Any]:
        key = (hashlib.sha1(pixels.tobytes()).hexdigest(), tuple(pixels.shape))
        if key not in self._memo:
            self._memo[key] = self._real.analyze(pixels)  # all faces embedded: serves any max_faces
        return list(self._memo[key])

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# -- killed subprocesses -----------------------------------------------------------------------

@dataclass
class Run:
    """One ``facedb`` subprocess: how it ended (``returncode == KILLED`` for a SIGKILL)."""

    args: list[str]
    returncode: int
    elapsed: float
    stdout: str
    stderr: str
    crash_at: str | None = None
    delay: float | None = None  # timed kill: SIGKILL sent this many seconds after the landmark
    landmark: float | None = None  # seconds after the start when it first opened a watched file

    @property
    def killed(self) -> bool:
        return self.returncode == KILLED

    def describe(self) -> str:
        how = f"FACEDB_CRASH_AT={self.crash_at} " if self.crash_at else ""
        when = f" (SIGKILL {self.delay:.2f}s after the landmark at {self.landmark}s)" if self.delay is not None else ""
        return (f"{how}facedb {' '.join(self.args)} -> returncode {self.returncode} after "
                f"{self.elapsed:.2f}s{when}\nstderr: {self.stderr[-1500:]}\nstdout: {self.stdout[-600:]}")


def _has_open(pid: int, prefix: str) -> bool | None:
    """Whether process ``pid`` has a file under ``prefix`` open (None: /proc cannot tell)."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"{fd_dir}/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def run_facedb(home: Path, args: list[str], *, crash_at: str | None = None, kill_after: float | None = None,
               watch: Path | None = None, timeout: float = 240) -> Run:
    """``facedb --home HOME ARGS`` as a real OS process.

    With ``crash_at`` it SIGKILLs itself at that crash point (faults.py). With ``kill_after`` the
    test SIGKILLs it that many seconds after it first opens a file under ``watch`` (Linux /proc;
    e.g. ``home/chroma``: the command starts writing), or after its start without ``watch`` or
    /proc. ``Run.landmark`` records when that first open was seen.
    """
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    # Small write batches, so that one command stores several: the kill points between
    # batches (a second SQL transaction, a second Chroma upsert) are reached with few images.
    env["FACEDB_WRITE_BATCH"] = str(CRASH_WRITE_BATCH)
    if crash_at:
        env["FACEDB_CRASH_AT"] = crash_at
    prefix = str(watch.resolve()) + os.sep if watch is not None else None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([*facedb_executable(), "--home", str(home), *args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, env=env)
        landmark: float | None = None
        kill_at = t0 + kill_after if kill_after is not None and prefix is None else None
        if prefix is None:  # nothing to watch: just wait (and kill on time)
            try:
                proc.wait(timeout=kill_after if kill_after is not None else timeout)
            except subprocess.TimeoutExpired:
                if kill_after is None:
                    proc.kill()
                    proc.wait()
                    raise AssertionError(f"facedb {' '.join(args)} hung for {timeout}s") from None
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        while proc.poll() is None:
            now = time.monotonic()
            if prefix is not None and landmark is None:
                seen = _has_open(proc.pid, prefix)
                if seen:
                    landmark = now - t0
                    if kill_after is not None:
                        kill_at = now + kill_after
                elif seen is None and kill_after is not None and kill_at is None:
                    kill_at = t0 + kill_after  # no /proc: count from the start
            if kill_at is not None and now >= kill_at:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                break
            if now - t0 > timeout:
                proc.kill()
                proc.wait()
                err.seek(0)
                raise AssertionError(f"facedb {' '.join(args)} hung for {timeout}s: "
                                     f"{err.read().decode(errors='replace')[-800:]}")
            if kill_at is not None:
                time.sleep(min(max(kill_at - now, 0.0), 0.05))
            else:  # watch closely for the landmark when a kill hangs on it
                time.sleep(0.004 if landmark is None and kill_after is not None else
                           0.015 if landmark is None else 0.05)
        elapsed = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        return Run(list(args), proc.returncode, elapsed, out.read().decode(errors="replace"),
                   err.read().decode(errors="replace"), crash_at, kill_after, landmark)


# -- what must hold after a kill ---------------------------------------------------------------

@dataclass
class Expect:
    """What the finished commands guarantee, for one killed command.

    ``present``: face id -> subject of every face a finished command reported as enrolled, with
    ``images`` giving the file it came from; ``deleted``: face id -> subject of subjects a
    finished command deleted (or whose delete was committed before the kill). ``deleting``: the
    subject the killed command was deleting (all of it, or none of it, may be gone);
    ``creating``: subjects the killed command was enrolling (any subset of their faces may be there).
    """

    present: dict[int, str]
    images: dict[int, Path]
    deleted: dict[int, str]
    deleting: str | None = None
    creating: tuple[str, ...] = ()
    probes: list[Path] = field(default_factory=list)
    #: The interrupted command may have dropped the index (vacuum): a search may refuse (exit 7)
    #: until ``check --repair``, but must never answer wrongly.
    may_refuse: bool = False
    #: k of the by-face search (None: every face, up to 60) and of the by-subject search.
    face_k: int | None = None
    subject_k: int = 3


@dataclass
class Outcome:
    flow: str
    raw_clean: bool | None = None        # check right after the kill (flow "check" only)
    repaired: bool = False               # a `check --repair` was needed
    search_refused: str | None = None    # the first search refused (IndexCorruptError)
    deleting_done: bool | None = None    # the interrupted delete had committed
    faces: int = 0
    notes: list[str] = field(default_factory=list)


def _sql_faces(db: Any) -> dict[int, str]:
    from sqlalchemy import select

    from facedb.catalog.models import Face, Subject

    with db.catalog.session() as s:
        return {int(fid): name for fid, name in s.execute(select(Face.id, Subject.name).join(Subject))}


def _image_paths(db: Any, face_ids: set[int]) -> dict[int, Path]:
    from sqlalchemy import select

    from facedb.catalog.models import Face, Image

    if not face_ids:
        return {}
    with db.catalog.session() as s:
        q = select(Face.id, Image.path).join(Image, Image.id == Face.image_id).where(Face.id.in_(face_ids))
        return {int(fid): Path(path) for fid, path in s.execute(q)}


def _subject_names(db: Any) -> set[str]:
    return {s.name for s in db.subjects()}


def _search_checks(db: Any, probes: list[Path], present: dict[int, str], images: dict[int, Path],
                   banned: dict[int, str], sql: dict[int, str], by: str, k: int, first: Any = None) -> Any:
    rep = first if first is not None else db.search([str(p) for p in probes], k=k, by=by, reference=True)
    banned_names = set(banned.values()) - set(sql.values())
    for res in rep.results:
        assert res.error is None or res.reason == "no_face", f"{res.image}: {res.error}"
        for face in res.faces:
            assert face.reference_agrees is True, f"search and --reference disagree on {res.image}: {face}"
            for m in face.matches:
                assert m.face_id not in banned, f"deleted face {m.face_id} ({banned[m.face_id]}) returned for {res.image}"
                assert m.subject not in banned_names, f"deleted subject {m.subject} returned for {res.image}"
                assert sql.get(m.face_id) == m.subject, f"match {m} is not the catalog's face {sql.get(m.face_id)}"
    if by == "face":
        by_image = {r.image: r for r in rep.results}
        for fid, subject in present.items():
            path = str(images.get(fid, ""))
            if path not in by_image:
                continue
            faces = by_image[path].faces
            assert faces and any(m.face_id == fid and m.distance <= 1e-3 for m in faces[0].matches), (
                f"enrolled face {fid} ({subject}, {path}) is not found by searching its own photo: "
                f"{faces[0].matches if faces else 'no face'}")
    return rep


def verify_home(home: Path, expect: Expect, flow: str, deleting_ids: dict[int, str] | None = None) -> Outcome:
    """Reopen ``home`` in this process after a kill and check every invariant.

    flow ``"check"``: the user runs ``facedb check``, then ``check --repair`` if it found drift;
    after that ``check`` must be clean. flow ``"replay"``: the next command is a search (which
    replays the journal when it takes the lock); after it, ``check`` must be clean (or be fixed
    by ``check --repair``). Then, in both flows: the catalog and Chroma hold exactly the same
    face ids, all marked indexed; every face a finished command reported is there and found by
    a search of its own photo; no face of a deleted subject is in Chroma or in any result;
    search and the reference mode agree on every probe face, by face and by subject.
    """
    from facedb import FaceDB
    from facedb.errors import IndexCorruptError

    out = Outcome(flow)
    db = FaceDB(home=home, workers=1)  # reopening works (schema check, settings) or raises
    try:
        info = db.pack.info
        probes = list(expect.probes)
        first = None
        if flow == "check":
            raw = db.check()
            out.raw_clean = raw.clean
            if not raw.clean:
                fixed = db.check(repair=True)
                assert fixed.repaired
                out.repaired = True
        else:
            try:
                first = db.search([str(p) for p in probes], k=expect.subject_k, by="subject", reference=True)
            except IndexCorruptError as exc:
                assert expect.may_refuse, f"the first search after the kill refused: {exc}"
                assert "check --repair" in str(exc)
                out.search_refused = str(exc)
                db.check(repair=True)
                out.repaired = True
        after = db.check()
        if not after.clean:
            assert flow == "replay", f"`check --repair` reported success but drift remains: {after.to_dict()}"
            out.notes.append(f"drift after the journal replay: {after.to_dict()}")
            db.check(repair=True)
            out.repaired = True
            after = db.check()
        assert after.clean, f"drift remains after `check --repair`: {after.to_dict()}"

        sql = _sql_faces(db)
        out.faces = len(sql)
        assert not db.catalog.unindexed_faces(info.name), "faces left unindexed"
        assert not db.catalog.pending_deletes(), "delete journal not empty"
        chroma = db.index_face_ids()
        assert chroma == set(sql), (f"Chroma ids != catalog ids: only in Chroma {sorted(chroma - set(sql))[:10]}, "
                                    f"only in SQL {sorted(set(sql) - chroma)[:10]}")
        banned = dict(expect.deleted)
        present = dict(expect.present)
        names = _subject_names(db)
        if expect.deleting is not None:
            ids = deleting_ids or {}
            out.deleting_done = expect.deleting not in names
            if out.deleting_done:
                banned.update(ids)
                for fid in ids:
                    present.pop(fid, None)
            else:
                assert set(ids) <= set(sql), f"subject {expect.deleting} half deleted: {sorted(set(ids) - set(sql))}"
        leaked = {fid: s for fid, s in banned.items() if fid in sql or fid in chroma}
        assert not leaked, f"faces of deleted subjects still stored: {leaked}"
        lost = {fid: s for fid, s in present.items() if sql.get(fid) != s}
        assert not lost, f"faces reported as enrolled by finished commands are gone: {lost}"
        allowed = set(present.values()) | set(expect.creating) | ({expect.deleting} - {None})
        assert names <= allowed, f"unexpected subjects {names - allowed}"

        k = expect.face_k or max(1, min(len(sql), 60))
        images = {**_image_paths(db, set(present) - set(expect.images)), **expect.images}
        if first is not None:
            _search_checks(db, probes, present, images, banned, sql, "subject", expect.subject_k, first)
        _search_checks(db, probes, present, images, banned, sql, "face", k)
        _search_checks(db, probes, present, images, banned, sql, "subject", expect.subject_k)
    finally:
        db.close()
    return out
