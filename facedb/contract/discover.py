"""What ``facedb discover`` returns (light: the thin client imports it; what it accepts is in
``facedb.contract.requests``).

``DiscoverReport`` is the JSON of issue 17: every face found in the photos is in exactly one
cluster; a cluster is one person, named (``subject``) when its faces match an enrolled subject as
``facedb search`` would name them, else ``null``; a face alone is a cluster of size 1.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import UsageError
from .models import FailedItem, Result

#: The default linkage threshold (average cosine distance between two clusters' faces), chosen
#: by BCubed on LFW: docs/benchmarks/discover.md.
DEFAULT_CLUSTER_THRESHOLD = 0.50
#: Faces listed per cluster in the human output (the JSON lists them all).
SAMPLE_FACES = 3


@dataclass(kw_only=True)
class DiscoveredFace(Result):
    """One face found in the photos."""

    image: str
    bbox: list[float]  # x1, y1, x2, y2 in image pixels
    #: the pack's quality signals of this face
    quality: dict[str, float] | None = None
    #: seconds into a video (null for a photo)
    frame_s: float | None = None
    #: detector confidence
    score: float = 0.0
    #: cosine distance to the named subject's template (null in an unnamed cluster)
    distance: float | None = None


@dataclass(kw_only=True)
class DiscoveredCluster(Result):
    """One person: the faces clustered together (``subject``: the enrolled person they match)."""

    id: int
    subject: str | None
    size: int
    faces: list[DiscoveredFace]
    #: the face closest to the cluster's mean (its best picture of the person)
    representative: DiscoveredFace


@dataclass(kw_only=True)
class DiscoverReport(Result):
    """The answer to "who are the people in these photos?", enrolled or not."""

    pack: str
    #: the match threshold that named faces (the collection's, as search uses it)
    threshold: float
    #: the linkage threshold of the clustering
    cluster_threshold: float
    clusters: list[DiscoveredCluster] = field(default_factory=list)
    #: images that could not be used (unreadable, not an image...); images without a face are here too
    failed: list[FailedItem] = field(default_factory=list)
    #: the name the run was saved under (``--save``), else null
    run: str | None = None

    # Derived: part of the JSON (and of its schema), never read back by ``from_dict``.
    derived: ClassVar[dict[str, str]] = {"faces": "integer"}

    @property
    def faces(self) -> int:
        """Faces found (each in exactly one cluster)."""
        return sum(c.size for c in self.clusters)


@dataclass(kw_only=True)
class ForgetReport(Result):
    """What ``facedb discover --forget RUN`` erased."""

    run: str
    faces: int
    clusters: int


@dataclass(kw_only=True)
class RunInfo(Result):
    """A saved discover run of the collection."""

    name: str
    pack: str
    created_at: str | None
    faces: int
    clusters: int


def validate_run_name(name: str) -> str:
    """A run name: 1-128 printable characters, no leading or trailing blanks."""
    if not (1 <= len(name) <= 128) or name != name.strip() or not name.isprintable():
        raise UsageError(f"a run name is 1-128 printable characters without leading or trailing blanks, "
                         f"not {name!r}")
    return name
