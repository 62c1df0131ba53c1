"""Shared fixtures: real face photos, the shared datasets, and the hostile corpus.

Real photos come from ``../shared/datasets`` (beside the checkout; override with the
``FACEDB_DATASETS`` environment variable) when it exists, else from the photos the installed
``insightface`` package ships, so that a fresh clone without ``../shared`` still passes.
Tests marked ``@pytest.mark.dataset`` are skipped when the datasets are absent.
"""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

_TESTS = Path(__file__).resolve().parent
if str(_TESTS) not in sys.path:  # make ``import hostile`` work in every pytest import mode
    sys.path.insert(0, str(_TESTS))

from hostile import HostileCorpus, insightface_images_dir, make_hostile_corpus  # noqa: E402

# Real PostgreSQL / Chroma servers: the package's helpers, wrapped in fixtures below.
from facedb.evaluation.servers import (  # noqa: E402
    ENV_REQUIRE,
    ChromaServer,
    PostgresCluster,
    chroma_unavailable,
    postgres_unavailable,
)

DATASETS_SKIP_REASON = "../shared/datasets not found: dataset tests skipped"

#: LFW photos (relative to lfw/) of people with several photos in which the sface pack finds
#: exactly one face (first image of the first such people, alphabetically).
LFW_SINGLE_FACE = (
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Sorkin/Aaron_Sorkin_0001.jpg",
    "Abdoulaye_Wade/Abdoulaye_Wade_0001.jpg", "Abdullah/Abdullah_0001.jpg",
    "Abdullah_Gul/Abdullah_Gul_0001.jpg", "Abdullah_al-Attiyah/Abdullah_al-Attiyah_0001.jpg",
    "Abel_Pacheco/Abel_Pacheco_0001.jpg", "Adam_Sandler/Adam_Sandler_0001.jpg",
    "Adam_Scott/Adam_Scott_0001.jpg", "Adrian_McPherson/Adrian_McPherson_0001.jpg",
    "Adrian_Nastase/Adrian_Nastase_0001.jpg",
)
#: Face boxes (left, top, right, bottom) in insightface's t1.jpg (1280x886, six people), each
#: with a margin; every crop holds exactly one detectable face.
T1_FACE_CROPS = (
    (0, 212, 232, 453), (204, 95, 437, 328), (383, 205, 655, 477),
    (685, 296, 911, 522), (826, 2, 1078, 253), (1068, 224, 1280, 449),
)


def find_datasets_dir() -> Path | None:
    """``$FACEDB_DATASETS``, else ``<checkout>/../shared/datasets``; None when absent. The same
    lookup as the package's (``facedb.evaluation.lfw.find_datasets``), so that a test and the
    benchmark script it starts agree, plus this file's own checkout when the tests run from
    another directory."""
    from facedb.evaluation import lfw

    found = lfw.find_datasets()
    if found is not None or os.environ.get(lfw.DATASETS_ENV, "").strip():
        return found
    beside = Path(__file__).resolve().parents[2] / lfw.SHARED_DATASETS
    return beside if beside.is_dir() else None


def script_env(datasets: Path | None) -> dict[str, str]:
    """The environment for a script a test starts (a benchmark): none of the caller's ``FACEDB_*``
    settings (home, server, key), and ``FACEDB_DATASETS`` naming the folder the test found, so
    that the script reads the same datasets whatever its own lookup would find."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEDB_")}
    if datasets is not None:
        env["FACEDB_DATASETS"] = str(datasets)
    return env


def _insightface_images() -> Path:
    d = insightface_images_dir()
    if d is None:
        pytest.skip("insightface is not installed: its sample photos are unavailable")
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if find_datasets_dir() is not None:
        return
    skip = pytest.mark.skip(reason=DATASETS_SKIP_REASON)
    for item in items:
        if item.get_closest_marker("dataset") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``../shared/datasets`` (or ``$FACEDB_DATASETS``); skips the test when absent."""
    d = find_datasets_dir()
    if d is None:
        pytest.skip(DATASETS_SKIP_REASON)
    return d


@pytest.fixture(scope="session")
def yale_dir(datasets_dir: Path) -> Path:
    """``yalefaces/``: 15 subjects, 164 grayscale GIFs named ``subjectNN.<condition>`` (no extension)."""
    d = datasets_dir / "yalefaces"
    if not d.is_dir():
        pytest.skip(f"{d} not found: Yale dataset tests skipped")
    return d


@pytest.fixture(scope="session")
def lfw_dir(datasets_dir: Path) -> Path:
    """``lfw/``: ``<Person>/<Person>_NNNN.jpg`` plus ``pairs.txt``."""
    d = datasets_dir / "lfw"
    if not d.is_dir():
        pytest.skip(f"{d} not found: LFW dataset tests skipped")
    return d


@pytest.fixture(scope="session")
def face_photo_paths(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real photos, each of a different person, each with exactly one detectable face.

    With the datasets: 11 LFW photos (color JPEG 250x250), then the 15 Yale ``subjectNN.normal``
    GIFs. Without: insightface's Tom_Hanks_54745.png (112x112) and six crops of its group
    photo t1.jpg, written as PNG to a session temporary folder. Never empty (skips if it would be).
    """
    root = find_datasets_dir()
    photos: list[Path] = []
    if root is not None:
        photos += [root / "lfw" / rel for rel in LFW_SINGLE_FACE if (root / "lfw" / rel).is_file()]
        photos += sorted((root / "yalefaces").glob("subject*.normal"))
    if not photos:
        images = _insightface_images()
        tom = images / "Tom_Hanks_54745.png"
        if tom.is_file():
            photos.append(tom)
        t1 = images / "t1.jpg"
        if t1.is_file():
            out = tmp_path_factory.mktemp("t1_faces")
            with Image.open(t1) as group:
                if group.size == (1280, 886):
                    rgb = group.convert("RGB")
                    for i, box in enumerate(T1_FACE_CROPS, 1):
                        p = out / f"t1_face{i}.png"
                        rgb.crop(box).save(p)
                        photos.append(p)
    if not photos:
        pytest.skip("no real face photo available (no ../shared/datasets, no insightface sample images)")
    return photos


@pytest.fixture(scope="session")
def face_photo(face_photo_paths: list[Path]) -> Path:
    """The first of ``face_photo_paths``: one real upright single-face photo."""
    return face_photo_paths[0]


@pytest.fixture(scope="session")
def group_photo() -> Path:
    """insightface's t1.jpg: a 1280x886 group photo of six people, six detectable faces."""
    p = _insightface_images() / "t1.jpg"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="session")
def no_face_photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real photo with no detectable face (insightface's mask_white.jpg: a face mask on its
    own), or, without insightface, a synthetic 320x240 colour gradient."""
    d = insightface_images_dir()
    if d is not None and (d / "mask_white.jpg").is_file():
        return d / "mask_white.jpg"
    y, x = np.mgrid[0:240, 0:320]
    rgb = np.stack([x * 255 // 319, y * 255 // 239, (x + y) * 255 // 558], axis=-1).astype(np.uint8)
    p = tmp_path_factory.mktemp("no_face") / "gradient.png"
    Image.fromarray(rgb).save(p)
    return p


@pytest.fixture(scope="session")
def hostile_corpus(tmp_path_factory: pytest.TempPathFactory, face_photo: Path) -> HostileCorpus:
    """``make_hostile_corpus`` built once per session from ``face_photo``. Read-only: a test
    that wants to change files must make its own with ``make_hostile_corpus(tmp_path)``."""
    return make_hostile_corpus(tmp_path_factory.mktemp("hostile"), face_photo)


# -- real servers (facedb.evaluation.servers) ------------------------------------------------------

def require_or_skip(reason: str) -> None:
    """Skip the test, or fail it when ``FACEDB_REQUIRE_SERVERS=1`` (CI must not skip)."""
    if os.environ.get(ENV_REQUIRE, "") not in ("", "0"):
        pytest.fail(f"{reason} (and {ENV_REQUIRE}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL cluster for the session (skips, or fails under CI, when unavailable).

    A test that stops or kills it must start it again; ``pg_url`` restarts it if one did not."""
    reason = postgres_unavailable()
    if reason:
        require_or_skip(reason)
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture()
def pg_url(pg_cluster: PostgresCluster) -> Iterator[str]:
    """A fresh, empty database of the session cluster; dropped after the test."""
    pg_cluster.ensure_running()
    url = pg_cluster.create_database()
    try:
        yield url
    finally:
        with contextlib.suppress(Exception):
            pg_cluster.ensure_running()
            pg_cluster.drop_database(url.rsplit("/", 1)[1])


@pytest.fixture(scope="session")
def chroma_server() -> Iterator[ChromaServer]:
    """One ``chroma run`` server for the session on a free loopback port (restarted by ``chroma_client``
    if a test left it down)."""
    reason = chroma_unavailable()
    if reason:
        require_or_skip(reason)
    server = ChromaServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()


@pytest.fixture()
def chroma_client(chroma_server: ChromaServer) -> Iterator[Any]:
    """An ``HttpClient`` on the session server; collections it created are deleted afterwards."""
    chroma_server.ensure_running()
    client = chroma_server.client()
    before = {c.name for c in client.list_collections()}
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            chroma_server.ensure_running()
            fresh = chroma_server.client()
            for c in fresh.list_collections():
                if c.name not in before:
                    fresh.delete_collection(c.name)
        chroma_server.close_clients()
