"""Labeled Faces in the Wild: where the datasets are, the listing of its people and images, and
the official ``pairs.txt`` verification protocol, parsed and validated in one place.

Every LFW reader of the project (``facedb eval --lfw-pairs``, ``scripts/calibrate_threshold.py``,
the experiments and the benchmarks) uses this module, so that they agree on which images exist,
in which order, and which pairs the protocol holds.

Layout (``<datasets>/lfw``, see the datasets README): ``<Person_Name>/<Person_Name>_NNNN.jpg``;
``pairs.txt`` starts with ``<folds> <pairs per half-fold>`` (``10 300``), then each fold holds
that many same-person lines (``name<TAB>i<TAB>j``) followed by as many different-person lines
(``name1<TAB>i<TAB>name2<TAB>j``).
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import FacedbError

#: Environment variable naming the datasets folder (holding ``lfw/`` and ``yalefaces/``).
DATASETS_ENV = "FACEDB_DATASETS"
#: Where the datasets sit relative to a checkout: ``<checkout>/../shared/datasets``.
SHARED_DATASETS = Path("shared") / "datasets"


class PairsError(FacedbError):
    """``pairs.txt`` does not follow the LFW pairs format (the message names the line)."""


# -- where the datasets are ----------------------------------------------------------------------

def _datasets_candidates() -> list[Path]:
    """``<ancestor>/shared/datasets`` for every ancestor of the working directory, then of this
    module's file: a checkout's ``../shared/datasets`` is found from the checkout (or any folder
    in it) whether the package runs from the source tree or from a regular install in the
    checkout's venv (``<checkout>/.venv/lib/.../site-packages``)."""
    out: list[Path] = []
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for ancestor in (start, *start.parents):
            candidate = ancestor / SHARED_DATASETS
            if candidate not in out:
                out.append(candidate)
    return out


def datasets_root() -> Path:
    """The datasets folder: ``$FACEDB_DATASETS`` when set, else the nearest existing
    ``shared/datasets`` above the working directory or the package (``<checkout>/../shared/datasets``
    in the documented layout), else ``<working directory>/../shared/datasets``. It may not exist:
    see ``find_datasets``."""
    env = os.environ.get(DATASETS_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    for candidate in _datasets_candidates():
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / SHARED_DATASETS


def find_datasets() -> Path | None:
    """``datasets_root()`` when it is a folder, else None."""
    root = datasets_root()
    return root if root.is_dir() else None


def find_lfw() -> Path | None:
    """``<datasets>/lfw`` when it is a folder, else None."""
    root = find_datasets()
    return root / "lfw" if root is not None and (root / "lfw").is_dir() else None


def find_yale() -> Path | None:
    """``<datasets>/yalefaces`` when it is a folder, else None."""
    root = find_datasets()
    return root / "yalefaces" if root is not None and (root / "yalefaces").is_dir() else None


def require_lfw(root: Path | None = None) -> Path:
    """``root`` (or the default LFW folder), checked to be a folder; raises ``FacedbError``."""
    lfw = root if root is not None else find_lfw()
    if lfw is None or not Path(lfw).is_dir():
        where = root if root is not None else datasets_root() / "lfw"
        raise FacedbError(f"LFW not found at {where} (set {DATASETS_ENV} to the folder holding lfw/)")
    return Path(lfw)


# -- people and images ---------------------------------------------------------------------------

def image_name(person: str, number: int) -> str:
    """The path of image ``number`` of ``person`` inside the LFW folder: ``<person>/<person>_NNNN.jpg``."""
    return f"{person}/{person}_{number:04d}.jpg"


def list_images(root: Path) -> list[str]:
    """Every image as ``<Person>/<file>.jpg`` (relative to ``root``), by person then file name.

    People are the sub-folders of ``root`` (hidden ones skipped); images are their ``.jpg``
    files (any case). The order is the one every LFW reader of the project uses."""
    root = Path(root)
    if not root.is_dir():
        raise FacedbError(f"{root}: not a directory")
    out: list[str] = []
    for person in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted((root / person).iterdir()):
            if f.is_file() and f.suffix.lower() == ".jpg" and not f.name.startswith("."):
                out.append(f"{person}/{f.name}")
    return out


def image_paths(root: Path) -> list[Path]:
    """``list_images`` as absolute paths."""
    return [Path(root) / r for r in list_images(root)]


def person_of(rel: str) -> str:
    """The person of a ``<Person>/<file>`` path."""
    return rel.split("/", 1)[0]


def list_people(root: Path) -> dict[str, list[str]]:
    """Person -> their images (``<Person>/<file>.jpg``), in ``list_images`` order."""
    out: dict[str, list[str]] = {}
    for rel in list_images(root):
        out.setdefault(person_of(rel), []).append(rel)
    return out


# -- the pairs protocol --------------------------------------------------------------------------

@dataclass(frozen=True)
class Pair:
    """One line of ``pairs.txt``: two images (``<Person>/<file>.jpg``), same person or not."""

    a: str
    b: str
    same: bool
    fold: int
    line: int  # 1-based line number in the file


@dataclass(frozen=True)
class Pairs:
    """The whole protocol: ``folds`` folds of ``per_fold`` same then ``per_fold`` different pairs."""

    folds: int
    per_fold: int
    pairs: tuple[Pair, ...]

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def same(self) -> NDArray[np.bool_]:
        return np.array([p.same for p in self.pairs], dtype=bool)

    @property
    def fold_ids(self) -> NDArray[np.int64]:
        return np.array([p.fold for p in self.pairs], dtype=np.int64)

    def images(self) -> list[str]:
        """Every image the pairs name, sorted, once each."""
        return sorted({x for p in self.pairs for x in (p.a, p.b)})

    def missing(self, available: Iterable[str]) -> list[str]:
        """The images the pairs name that are not in ``available`` (e.g. ``list_images(root)``)."""
        have = set(available)
        return [x for x in self.images() if x not in have]


def _positive_int(text: str, what: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise PairsError(f"{where}: {what} must be an integer, not {text!r}") from None
    if value < 1:
        raise PairsError(f"{where}: {what} must be at least 1, not {value}")
    return value


def parse_pairs(text: str, source: str = "pairs.txt") -> Pairs:
    """Parse and validate the text of ``pairs.txt``; ``PairsError`` names the first bad line.

    Checked: the header is two positive integers; every line has 3 fields (same person) or 4
    (different people), tab- or space-separated; image numbers are positive integers; each fold
    holds exactly ``per_fold`` same-person lines followed by ``per_fold`` different-person lines;
    a same-person pair names two different images and a different-person pair two different
    people; the number of lines is ``folds * 2 * per_fold`` (blank lines are ignored)."""
    lines = text.splitlines()
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise PairsError(f"{source}: empty file")
    head_no, head = numbered[0]
    fields = head.split()
    if len(fields) != 2:
        raise PairsError(f"{source}:{head_no}: the header must be '<folds> <pairs per fold half>', not {head!r}")
    folds = _positive_int(fields[0], "the number of folds", f"{source}:{head_no}")
    per = _positive_int(fields[1], "the pairs per fold half", f"{source}:{head_no}")
    rows = numbered[1:]
    expected = folds * 2 * per
    if len(rows) != expected:
        raise PairsError(f"{source}: the header announces {folds} folds x 2 x {per} = {expected} pairs, "
                         f"the file holds {len(rows)}")
    out: list[Pair] = []
    for k, (no, ln) in enumerate(rows):
        where = f"{source}:{no}"
        parts = ln.split("\t") if "\t" in ln else ln.split()
        parts = [p.strip() for p in parts]
        fold, pos = divmod(k, 2 * per)
        want_same = pos < per
        if len(parts) == 3:
            if not want_same:
                raise PairsError(f"{where}: a same-person line (3 fields) where fold {fold + 1} expects "
                                 "different-person lines (4 fields)")
            name, i, j = parts[0], _positive_int(parts[1], "an image number", where), \
                _positive_int(parts[2], "an image number", where)
            if not name:
                raise PairsError(f"{where}: empty person name")
            if i == j:
                raise PairsError(f"{where}: a same-person pair of one image ({name} {i})")
            out.append(Pair(image_name(name, i), image_name(name, j), True, fold, no))
        elif len(parts) == 4:
            if want_same:
                raise PairsError(f"{where}: a different-person line (4 fields) where fold {fold + 1} expects "
                                 "same-person lines (3 fields)")
            n1, i, n2, j = parts[0], _positive_int(parts[1], "an image number", where), parts[2], \
                _positive_int(parts[3], "an image number", where)
            if not n1 or not n2:
                raise PairsError(f"{where}: empty person name")
            if n1 == n2:
                raise PairsError(f"{where}: a different-person pair names one person twice ({n1})")
            out.append(Pair(image_name(n1, i), image_name(n2, j), False, fold, no))
        else:
            raise PairsError(f"{where}: expected 3 fields (same person) or 4 (different people), "
                             f"found {len(parts)}: {ln!r}")
    return Pairs(folds, per, tuple(out))


def read_pairs(path: Path) -> Pairs:
    """``parse_pairs`` of a file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PairsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise PairsError(f"{path}: not a text file") from None
    return parse_pairs(text, str(path))


def choose_protocol(people: dict[str, list[str]], protocol: str, n_people: int, n_strangers: int, seed: int,
           min_photos: int, enroll: int) -> tuple[dict[str, list[str]], dict[str, str], list[str]]:
    """The aligned-crop experiments' protocols (``scripts/experiments/aligned_crops.py``, ``crop_tta.py``):
    (person -> enrolled photos, person -> held-out probe photo, strangers) of ``protocol``.

    Both take the held-out photo as the last of the person's photos in LFW's order and enroll
    from the first ones: nothing is chosen by how well it is recognised."""
    rng = random.Random(seed)
    single = sorted(p for p, ims in people.items() if len(ims) == 1)
    if protocol == "sampled":
        multi = sorted(p for p, ims in people.items() if len(ims) >= 2)
        gallery = rng.sample(multi, min(n_people, len(multi)))
    else:
        gallery = sorted(p for p, ims in people.items() if len(ims) >= min_photos)
    strangers = rng.sample(single, min(n_strangers, len(single)))
    return ({p: people[p][:-1][:enroll] for p in gallery}, {p: people[p][-1] for p in gallery}, strangers)
