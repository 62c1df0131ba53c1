"""One ``FaceDB`` shared by many threads (what the server does): searches run at the same time,
writes one at a time, and the answers stay right while writes go on."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from facephotos import make_face_variants


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("people"), n_variants=3)


@pytest.fixture
def db(tmp_path: Path, people: dict[str, list[Path]]) -> Any:
    from facedb import FaceDB

    db = FaceDB(home=tmp_path / "home", workers=1, exclusive=True)
    for name in ("person1", "person2"):
        assert db.enroll(name, people[name]).enrolled == 3
    yield db
    db.close()


def test_searches_run_at_the_same_time(db: Any, people: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two searches must be inside the index at once: each waits at a barrier for the other;
    if searches were serialised, the barrier would time out."""
    from facedb.index.chroma_index import ChromaIndex

    barrier = threading.Barrier(2, timeout=20)
    real = ChromaIndex.query

    def meeting(self: Any, *args: Any, **kwargs: Any) -> Any:
        barrier.wait()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ChromaIndex, "query", meeting)
    with ThreadPoolExecutor(2) as pool:
        reps = list(pool.map(lambda name: db.search([people[name][0]]), ("person1", "person2")))
    assert [r.results[0].faces[0].identity for r in reps] == ["person1", "person2"]


def test_writes_are_one_at_a_time_and_searches_stay_right(db: Any, people: dict[str, list[Path]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from facedb.store.journal import Journal

    inside = {"now": 0, "most": 0}
    lock = threading.Lock()
    real = Journal.index_new_faces

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            inside["now"] += 1
            inside["most"] = max(inside["most"], inside["now"])
        try:
            return real(self, *args, **kwargs)
        finally:
            with lock:
                inside["now"] -= 1

    monkeypatch.setattr(Journal, "index_new_faces", counting)
    errors: list[BaseException] = []
    answers: list[tuple[str, str | None]] = []

    def searcher(name: str) -> None:
        try:
            for i in range(6):
                rep = db.search([people[name][i % 3]], k=1)
                answers.append((name, rep.results[0].faces[0].identity))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def writer(name: str) -> None:
        try:
            for p in people[name]:  # one photo per call: many small writes
                db.enroll(name, [p])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(n,)) for n in ("person1", "person2") * 2]
    threads += [threading.Thread(target=writer, args=(n,)) for n in ("person3", "person4", "person5")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    assert inside["most"] == 1, "two writes were in the index at once"
    assert len(answers) == 24 and all(name == who for name, who in answers), answers
    assert {s.name: s.faces for s in db.subjects()} == {f"person{i}": 3 for i in range(1, 6)}
    report = db.check()
    assert report.clean and report.catalog_faces == 15, report.to_dict()


def test_a_delete_racing_searches_is_never_half_seen(db: Any, people: dict[str, list[Path]]) -> None:
    """While person2 is deleted, each search names person2 (before) or nobody (after), never a
    face of person2 whose rows are gone."""
    seen: list[str | None] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            rep = db.search([people["person2"][0]], k=3, by="face")
            face = rep.results[0].faces[0]
            seen.append(face.identity)
            assert all(m.subject in ("person1", "person2") for m in face.matches)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(searcher) for _ in range(3)]
        db.delete("person2")
        stop.set()
        for f in futures:
            f.result(timeout=120)
    after = db.search([people["person2"][0]], k=3).results[0].faces[0]
    assert after.identity is None and all(m.subject == "person1" for m in after.matches)
    assert set(seen) <= {"person2", None}
