"""``facedb review`` on real faces (LFW): a photo filed under the wrong person is an outlier
naming the right person, one person under two names is a look-alike pair, a re-saved copy of a
photo under another name is a duplicate, and a clean gallery gives no finding. The same report
comes from the Python API, the CLI (human and JSON) and ``GET /v1/review`` (``test_routes``)."""
from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facedb.api import FaceDB
from facedb.cli import cli
from facedb.contract.review import ReviewReport
from facedb.evaluation import lfw
from facedb.operations.review import OUTLIER_FACTOR, outlier_reason

pytestmark = [pytest.mark.dataset, pytest.mark.slow]

CLEAN = ("Tony_Blair", "Silvio_Berlusconi", "Jean_Chretien", "Wen_Jiabao", "Hans_Blix")


def _photos(lfw_dir: Path, person: str, numbers: range) -> list[Path]:
    """The person's photos at these places (1-based) of the dataset's listing (LFW's numbering
    has gaps in this subset)."""
    listed = lfw.list_people(lfw_dir)[person]
    return [lfw_dir / listed[n - 1] for n in numbers]


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, lfw_dir: Path) -> Iterator[tuple[FaceDB, Path, ReviewReport]]:
    """A gallery with errors planted in the default collection, and a clean collection ``clean``."""
    tmp = tmp_path_factory.mktemp("review")
    home = tmp / "home"
    copy = tmp / "copy_of_chretien.jpg"  # the same photo in other bytes: smaller, re-encoded
    buf = io.BytesIO()
    chretien = _photos(lfw_dir, "Jean_Chretien", range(1, 2))[0]
    Image.open(chretien).convert("RGB").resize((230, 230)).save(
        buf, format="JPEG", quality=85)
    copy.write_bytes(buf.getvalue())
    db = FaceDB(home=home, workers=1)
    try:
        for person in CLEAN:
            db.enroll(person, _photos(lfw_dir, person, range(1, 5)))
        # Mislabels forced in with multi_face="largest" (the default "resolve" refuses a photo with
        # several faces none of which is the subject's: exactly these, when they have a second face).
        db.enroll("Tony_Blair", _photos(lfw_dir, "David_Beckham", range(1, 2)), multi_face="largest")  # a stranger
        db.enroll("Wen_Jiabao", _photos(lfw_dir, "Hans_Blix", range(5, 6)), multi_face="largest")  # in the gallery
        db.enroll("Arnold_Schwarzenegger", _photos(lfw_dir, "Arnold_Schwarzenegger", range(1, 6)))
        db.enroll("Arnie", _photos(lfw_dir, "Arnold_Schwarzenegger", range(6, 11)))   # the same man
        db.enroll("Pete_Sampras", [*_photos(lfw_dir, "Pete_Sampras", range(1, 4)), copy])
        db.enroll("Tiger_Woods", _photos(lfw_dir, "Tiger_Woods", range(1, 2)))        # one face only
        db.create_collection("clean")
        clean = db.collection("clean")
        for person in CLEAN:
            clean.enroll(person, _photos(lfw_dir, person, range(1, 5)))
        yield db, home, db.review()
    finally:
        db.close()


def _face_of(db: FaceDB, subject: str, file_name: str) -> int:
    for image in db.show(subject).images:
        if Path(image["path"]).name == file_name:
            return int(image["faces"][0]["face_id"])
    raise AssertionError(f"{file_name} is not enrolled for {subject}")


def test_a_photo_under_the_wrong_person_is_an_outlier_naming_the_right_one(planted: tuple[FaceDB, Path, ReviewReport]) -> None:
    db, _, rep = planted
    by_face = {o.face_id: o for o in rep.outliers}
    inside = by_face[_face_of(db, "Wen_Jiabao", "Hans_Blix_0018.jpg")]
    assert inside.subject == "Wen_Jiabao" and inside.nearest_other == "Hans_Blix"
    assert inside.reason == "closer_to_other"
    assert inside.distance_other is not None and inside.distance_own is not None
    assert inside.distance_other <= rep.threshold < inside.distance_own
    assert inside.image.endswith("Hans_Blix_0018.jpg")
    stranger = by_face[_face_of(db, "Tony_Blair", "David_Beckham_0001.jpg")]
    assert stranger.reason == "far_from_own" and stranger.distance_own is not None
    assert stranger.distance_own > rep.outlier_distance == pytest.approx(OUTLIER_FACTOR * rep.threshold)
    # The people the errors were filed under keep their own faces: only the planted ones are
    # flagged there (the copy under Pete_Sampras is the duplicate's other half).
    flagged = {(o.subject, Path(o.image).name) for o in rep.outliers}
    assert flagged - {("Pete_Sampras", "copy_of_chretien.jpg")} == {
        ("Wen_Jiabao", "Hans_Blix_0018.jpg"), ("Tony_Blair", "David_Beckham_0001.jpg")}


def test_one_person_under_two_names_is_a_look_alike_pair(planted: tuple[FaceDB, Path, ReviewReport]) -> None:
    _, _, rep = planted
    assert [{p.a, p.b} for p in rep.look_alikes] == [{"Arnold_Schwarzenegger", "Arnie"}]
    assert rep.look_alikes[0].distance < rep.look_alike_distance
    # Explained by the pair, their faces are not listed again as outliers.
    assert not {o.subject for o in rep.outliers} & {"Arnold_Schwarzenegger", "Arnie"}


def test_the_same_photo_under_two_names_is_a_duplicate(planted: tuple[FaceDB, Path, ReviewReport]) -> None:
    db, _, rep = planted
    assert len(rep.duplicates) == 1
    dup = rep.duplicates[0]
    assert {dup.subject, dup.other_subject} == {"Jean_Chretien", "Pete_Sampras"}
    assert {Path(dup.image).name, Path(dup.other_image).name} == {"Jean_Chretien_0002.jpg", "copy_of_chretien.jpg"}
    assert {dup.face_id, dup.other_face_id} == {_face_of(db, "Jean_Chretien", "Jean_Chretien_0002.jpg"),
                                                _face_of(db, "Pete_Sampras", "copy_of_chretien.jpg")}
    assert dup.distance < rep.duplicate_distance
    # The byte-identical photo never gets that far: enrollment refuses it.
    again = db.enroll("Pete_Sampras", [Path(dup.image if dup.subject == "Jean_Chretien" else dup.other_image)])
    assert [f.reason for f in again.failed] == ["enrolled_as_other"]


def test_a_clean_gallery_gives_no_finding(planted: tuple[FaceDB, Path, ReviewReport]) -> None:
    db, _, _ = planted
    rep = db.collection("clean").review()
    assert rep.clean and (rep.subjects, rep.faces) == (5, 20)
    assert rep.to_dict()["clean"] is True


def test_a_single_face_is_judged_only_by_the_other_subjects(planted: tuple[FaceDB, Path, ReviewReport]) -> None:
    _, _, rep = planted
    assert "Tiger_Woods" not in {o.subject for o in rep.outliers}
    # The rule on numbers: no leave-one-out template (NaN), so only "matched by another subject".
    assert outlier_reason(np.nan, 0.4, 0.5) == "closer_to_other"
    assert outlier_reason(np.nan, 0.6, 0.5) is None
    assert outlier_reason(0.3, 0.45, 0.5) is None          # its own is closer
    assert outlier_reason(0.9, 0.8, 0.5) == "far_from_own"  # nobody matches it, its own does not either


def test_the_cli_prints_the_evidence_and_the_json(planted: tuple[FaceDB, Path, ReviewReport]) -> None:
    db, home, rep = planted
    runner = CliRunner()
    res = runner.invoke(cli, ["--home", str(home), "review", "--json"])
    assert res.exit_code == 0, res.output
    got = ReviewReport.from_dict(json.loads(res.output))
    assert got == rep
    text = runner.invoke(cli, ["--home", str(home), "review"])
    assert text.exit_code == 0, text.output
    inside = next(o for o in rep.outliers if o.subject == "Wen_Jiabao")
    line = next(ln for ln in text.output.splitlines() if f" {inside.face_id} " in ln)
    assert "Wen_Jiabao" in line and "Hans_Blix" in line and "closer_to_other" in line
    assert "Arnold_Schwarzenegger  ~  Arnie" in text.output or "Arnie  ~  Arnold_Schwarzenegger" in text.output
    clean = runner.invoke(cli, ["--home", str(home), "--collection", "clean", "review"])
    assert clean.exit_code == 0 and "nothing looks wrong" in clean.output
