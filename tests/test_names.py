"""Subject names: NFC at the edge ("Zoë" typed precomposed or decomposed is one person), and
names made only of dots refused with a clear message."""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest
from facephotos import make_face_variants

from facedb.contract.names import normalize_subject_name, validate_subject_name
from facedb.errors import FacedbError

NFC = "Zo\u00eb"  # precomposed ë
NFD = "Zoe\u0308"  # e + combining diaeresis


def test_the_two_spellings_differ_in_bytes_and_normalise_to_one() -> None:
    assert NFC != NFD and NFC.encode() != NFD.encode()
    assert validate_subject_name(NFD) == NFC
    assert validate_subject_name(NFC) == NFC
    assert normalize_subject_name(NFD) == NFC
    assert unicodedata.is_normalized("NFC", validate_subject_name("Ange\u0301lique Dupont"))


@pytest.mark.parametrize("name", [".", "..", "...", "...."])
def test_names_made_only_of_dots_are_refused(name: str) -> None:
    with pytest.raises(FacedbError, match="only of dots"):
        validate_subject_name(name)


@pytest.mark.parametrize("name", ["A.", ".hidden", "J.R.R. Tolkien", "..x"])
def test_names_with_dots_and_other_characters_are_fine(name: str) -> None:
    assert validate_subject_name(name) == name


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return make_face_variants(tmp_path_factory.mktemp("names"), n_variants=3)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    from facedb import FaceDB

    db = FaceDB(home=tmp_path / "home", workers=1)
    yield db
    db.close()


def test_decomposed_and_precomposed_enrollments_are_one_subject(db: Any, people: dict[str, list[Path]]) -> None:
    assert db.enroll(NFD, people["person1"][:1]).enrolled == 1
    rep = db.enroll(NFC, people["person1"][1:2])
    assert rep.enrolled == 1 and rep.subject == NFC
    subjects = db.subjects()
    assert [s.name for s in subjects] == [NFC] and subjects[0].faces == 2
    # Looked up by either spelling.
    assert len(db.show(NFD).images) == 2
    assert db.verify(people["person1"][2], NFD).match
    hit = db.search([people["person1"][2]]).results[0].faces[0]
    assert hit.identity == NFC
    db.rename(NFD, "Zoe\u0301")  # to another decomposed name: stored in NFC
    assert [s.name for s in db.subjects()] == ["Zo\u00e9"]
    assert db.delete("Zo\u00e9").faces == 2
    assert db.subjects() == []


def test_dot_names_are_refused_and_folder_names_are_nfc(db: Any, people: dict[str, list[Path]],
                                                                tmp_path: Path) -> None:
    with pytest.raises(FacedbError, match="only of dots"):
        db.enroll("..", people["person2"][:1])
    db.enroll("ok", people["person2"][:1])
    with pytest.raises(FacedbError, match="only of dots"):
        db.rename("ok", ".")
    root = tmp_path / "import"
    (root / "...").mkdir(parents=True)
    (root / "...").joinpath("a.jpg").write_bytes(people["person3"][0].read_bytes())
    (root / NFD).mkdir()
    (root / NFD).joinpath("b.jpg").write_bytes(people["person3"][1].read_bytes())
    rep = db.import_dir(root)  # a folder of dots is hidden (skipped); a decomposed folder name is NFC
    assert [s.subject for s in rep.subjects] == [NFC] and rep.enrolled == 1
    assert sorted(s.name for s in db.subjects()) == sorted(["ok", NFC])
