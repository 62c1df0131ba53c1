"""A template search reads the pack contract and refreshes its template cache while the workers
run the model (``Searcher._fresh_templates`` through ``Analyzer.stream(meanwhile=...)``): once
per search, with the same answers and the same errors as when it read them after."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from facephotos import make_face_variants

from facedb.analysis.files import Upload
from facedb.api import FaceDB
from facedb.errors import ModelError


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaceDB, dict[str, list[Path]]]]:
    people = make_face_variants(tmp_path_factory.mktemp("people"), n_variants=3)
    home = tmp_path_factory.mktemp("overlap") / "home"
    with FaceDB(home=home, workers=1) as d:
        for name, paths in people.items():
            d.enroll(name, paths[:1])
    with FaceDB(home=home, workers=2, exclusive=True) as d:  # a server's: the workers run
        yield d, people


def _answer(d: FaceDB, photo: Path) -> list[tuple[str | None, list[tuple[str, int, float]]]]:
    rep = d.search([Upload(photo.name, photo.read_bytes())], k=2)
    return [(f.identity, [(m.subject, m.face_id, m.distance) for m in f.matches]) for f in rep.results[0].faces]


def test_one_contract_read_per_search_and_the_same_answers(db: tuple[FaceDB, dict[str, list[Path]]],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    d, people = db
    assert d.analyzer.running
    photo = people["person2"][1]
    first = _answer(d, photo)
    assert first[0][0] == "person2"
    calls = []
    real = d._search.pack.contract
    monkeypatch.setattr(d._search.pack, "contract", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert _answer(d, photo) == first
    assert len(calls) == 1
    # reference mode reads them after, as before: same answer
    rep = d.search([Upload(photo.name, photo.read_bytes())], k=2, reference=True)
    assert rep.results[0].faces[0].identity == "person2" and rep.results[0].faces[0].reference_agrees


def test_a_contract_that_fails_fails_the_search_as_before(db: tuple[FaceDB, dict[str, list[Path]]],
                                                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The early read swallows the error; the search reads again after and raises it, only when
    there is a face to search for (an image without one is answered, as it always was)."""
    d, people = db
    calls = []

    def refuse(*_a: object, **_k: object) -> None:
        calls.append(1)
        raise ModelError("other weights")

    monkeypatch.setattr(d._search.pack, "contract", refuse)
    with pytest.raises(ModelError, match="other weights"):
        _answer(d, people["person1"][1])
    assert len(calls) == 2
    blank = tmp_path / "blank.png"
    from PIL import Image

    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    rep = d.search([Upload(blank.name, blank.read_bytes())], k=2)
    assert rep.results[0].reason == "no_face"
