"""Clustering face embeddings into people (``facedb discover``), without an n x n matrix.

Two steps, both linear in the number of faces times a small neighbourhood:

1. **A k-nearest-neighbour graph** (cosine, on L2-normalised vectors). Up to
   ``EXACT_KNN_MAX`` faces it is exact (blocks of rows against all faces: the full similarity
   matrix never exists, only ``_BLOCK`` rows of it at a time). Above that it is an inverted-file
   search: a few Lloyd iterations of spherical k-means give about sqrt(n) cells, every face is
   stored in its nearest cell and looks for its neighbours in its ``probes`` nearest cells. The
   neighbours that matter here are close (cosine distance under about 0.5), so they nearly always
   share a cell or sit in a neighbouring one; ``scripts/bench/cluster_speed.py`` measures the
   recall against the exact graph. Only edges shorter than ``edge_distance`` are kept.
2. **A linkage rule over the graph.** ``average`` (the default, chosen by BCubed on LFW, see
   docs/benchmarks/discover.md) is average-linkage agglomeration restricted to the graph: two
   clusters may merge only when a graph edge joins them, and they merge when the mean cosine
   distance over *every* pair of their faces (not only the graph's edges) is under
   ``threshold``. For unit vectors that mean is exact and cheap: the mean of a . b over A x B is
   sum(A) . sum(B) / (|A| |B|), so each cluster carries the sum of its vectors. Merges go by
   rounds of reciprocal nearest neighbours (each cluster's closest graph neighbour; mutual pairs
   under the threshold merge), which for average linkage gives the same merges as the one-at-a-time
   greedy order would. Average linkage favours precision: one close pair cannot chain two
   people together as single linkage does (``single``, kept for the measurement, as is
   ``mutual``: connected components of mutual-kNN edges under the threshold).

Output is deterministic: the same vectors in the same order give the same labels, numbered by
cluster size (largest first) then by the first face of the cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import FacedbError

#: Linkage rules (``average`` is the one ``facedb discover`` uses).
LINKAGES = ("average", "single", "mutual")
#: Up to this many faces the kNN graph is exact (blocked brute force); above, inverted cells.
EXACT_KNN_MAX = 20_000
#: Rows of the similarity matrix computed at once (memory: _BLOCK x n float32).
_BLOCK = 1024
#: Cells of the approximate graph: this many x sqrt(faces).
CELLS_PER_SQRT_N = 0.5
#: Reciprocal-nearest-neighbour rounds before giving up (each round merges at least one pair).
_MAX_ROUNDS = 10_000

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class ClusterSettings:
    """How ``cluster`` groups faces.

    ``threshold``: the largest linkage distance (cosine distance, 1 - cos) at which two clusters
    merge. ``k``: neighbours per face in the graph. ``edge_distance``: graph edges longer than this
    are dropped (None: ``threshold`` + 0.15, so that a pair a little over the threshold can still
    join two clusters whose *average* is under it). ``probes``: cells searched per face when the
    graph is approximate."""

    threshold: float = 0.50
    k: int = 20
    linkage: str = "average"
    edge_distance: float | None = None
    probes: int = 12

    def check(self) -> ClusterSettings:
        if self.linkage not in LINKAGES:
            raise FacedbError(f"linkage must be one of {', '.join(LINKAGES)}, not {self.linkage!r}")
        if not 0.0 < self.threshold < 2.0:
            raise FacedbError(f"the clustering threshold is a cosine distance in (0, 2), not {self.threshold}")
        if self.k < 1:
            raise FacedbError(f"k must be at least 1, not {self.k}")
        if self.probes < 1:
            raise FacedbError(f"probes must be at least 1, not {self.probes}")
        return self

    @property
    def max_edge(self) -> float:
        return self.edge_distance if self.edge_distance is not None else self.threshold + 0.15


def normalise(vectors: NDArray[np.floating]) -> FloatArray:
    """Rows scaled to unit length (float32); a zero row stays zero (it then links to nothing)."""
    X = np.asarray(vectors, dtype=np.float32)
    if X.ndim != 2:
        raise FacedbError(f"embeddings must be a 2-d array (faces x dimension), not shape {X.shape}")
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    out: FloatArray = np.divide(X, norms, out=np.zeros_like(X), where=norms > 0)
    return out


# -- the k-nearest-neighbour graph ---------------------------------------------------------------

def _top_k_rows(S: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Column indices and values of the k largest entries of each row (unordered)."""
    kk = min(k, S.shape[1])
    if kk == S.shape[1]:
        idx = np.broadcast_to(np.arange(kk), S.shape).astype(np.int64)
    else:
        idx = np.argpartition(S, S.shape[1] - kk, axis=1)[:, -kk:].astype(np.int64)
    return idx, np.take_along_axis(S, idx, axis=1)


def _exact_knn(X: FloatArray, k: int, min_sim: float) -> tuple[IntArray, IntArray, FloatArray]:
    n = len(X)
    rows, cols, sims = [], [], []
    for s in range(0, n, _BLOCK):
        S = X[s:s + _BLOCK] @ X.T
        r = np.arange(s, min(s + _BLOCK, n))
        S[r - s, r] = -np.inf  # not its own neighbour
        idx, val = _top_k_rows(S, k)
        near = val >= min_sim  # far pairs never become edges: drop them now (memory)
        rows.append(np.repeat(r, idx.shape[1])[near.ravel()])
        cols.append(idx[near])
        sims.append(val[near])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(sims).astype(np.float32)


def _cells(X: FloatArray, n_cells: int, probes: int, seed: int) -> IntArray:
    """(n, probes) nearest cells of every face, nearest first (spherical k-means, a few rounds)."""
    rng = np.random.default_rng(seed)
    C = X[np.sort(rng.choice(len(X), n_cells, replace=False))].copy()

    def nearest(top: int) -> IntArray:
        out = np.empty((len(X), top), dtype=np.int64)
        for s in range(0, len(X), 8 * _BLOCK):
            S = X[s:s + 8 * _BLOCK] @ C.T
            idx, val = _top_k_rows(S, top)
            order = np.argsort(-val, axis=1, kind="stable")
            out[s:s + 8 * _BLOCK] = np.take_along_axis(idx, order, axis=1)
        return out

    for _ in range(4):
        primary = nearest(1)[:, 0]
        sums = np.zeros_like(C, dtype=np.float64)
        np.add.at(sums, primary, X)
        counts = np.bincount(primary, minlength=n_cells)
        keep = counts > 0  # an empty cell keeps its centre
        C[keep] = normalise(sums[keep])
    return nearest(min(probes, n_cells))


def _ivf_knn(X: FloatArray, k: int, probes: int, min_sim: float, seed: int = 0
             ) -> tuple[IntArray, IntArray, FloatArray]:
    n = len(X)
    n_cells = max(1, int(round(np.sqrt(n) * CELLS_PER_SQRT_N)))
    near = _cells(X, n_cells, probes, seed)
    primary = near[:, 0]
    by_cell = np.argsort(primary, kind="stable")
    starts = np.searchsorted(primary[by_cell], np.arange(n_cells + 1))
    q_cells = near.ravel()
    q_faces = np.repeat(np.arange(n, dtype=np.int64), near.shape[1])
    q_order = np.argsort(q_cells, kind="stable")
    q_starts = np.searchsorted(q_cells[q_order], np.arange(n_cells + 1))
    rows, cols, sims = [], [], []
    for c in range(n_cells):
        members = by_cell[starts[c]:starts[c + 1]]
        queries = q_faces[q_order[q_starts[c]:q_starts[c + 1]]]
        if len(members) == 0 or len(queries) == 0:
            continue
        for s in range(0, len(queries), _BLOCK):
            q = queries[s:s + _BLOCK]
            S = X[q] @ X[members].T
            S[q[:, None] == members[None, :]] = -np.inf
            idx, val = _top_k_rows(S, k)
            close = val >= min_sim
            rows.append(np.repeat(q, idx.shape[1])[close.ravel()])
            cols.append(members[idx[close]])
            sims.append(val[close])
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    r, c_, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(sims).astype(np.float32)
    # The k best of each face over its probed cells: sort by face, then similarity (high first).
    order = np.lexsort((c_, -v, r))
    r, c_, v = r[order], c_[order], v[order]
    first = np.searchsorted(r, np.arange(n))
    rank = np.arange(len(r)) - first[r]
    keep = rank < k
    return r[keep], c_[keep], v[keep]


def knn_graph(X: FloatArray, k: int, max_distance: float, *, probes: int = 12,
              exact: bool | None = None) -> tuple[IntArray, IntArray, FloatArray]:
    """Directed kNN edges (face, neighbour, cosine distance) no longer than ``max_distance``.

    ``X`` must be normalised. ``exact``: None picks by size (``EXACT_KNN_MAX``)."""
    n = len(X)
    if n < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    use_exact = n <= EXACT_KNN_MAX if exact is None else exact
    min_sim = 1.0 - max_distance
    r, c, s = _exact_knn(X, k, min_sim) if use_exact else _ivf_knn(X, k, probes, min_sim)
    d = (1.0 - s).astype(np.float32)
    keep = np.isfinite(d) & (d <= max_distance)
    return r[keep], c[keep], d[keep]


# -- linkage rules -------------------------------------------------------------------------------

def _undirected(r: IntArray, c: IntArray, n: int) -> tuple[IntArray, IntArray]:
    """Each edge once, as (smaller face, larger face), sorted."""
    key = np.unique(np.minimum(r, c) * n + np.maximum(r, c))
    return key // n, key % n


def _components(n: int, a: IntArray, b: IntArray) -> IntArray:
    """Connected components of the edges (a, b): each face gets its component's smallest face,
    by min-label propagation with pointer jumping (numpy only)."""
    label = np.arange(n, dtype=np.int64)
    while True:
        la, lb = label[a], label[b]
        low = np.minimum(la, lb)
        new = label.copy()
        np.minimum.at(new, la, low)
        np.minimum.at(new, lb, low)
        while True:  # pointer jumping: follow labels to their roots
            nxt = new[new]
            if np.array_equal(nxt, new):
                break
            new = nxt
        if np.array_equal(new, label):
            return label
        label = new


def _rowdot(M: NDArray[np.float64], a: IntArray, b: IntArray, chunk: int = 65_536) -> NDArray[np.float64]:
    """M[a[i]] . M[b[i]] for every i, a chunk of rows at a time (gathering every pair's rows at
    once would take pairs x dimension x 16 bytes: gigabytes at 100,000 faces)."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), chunk):
        out[s:s + chunk] = np.einsum("ij,ij->i", M[a[s:s + chunk]], M[b[s:s + chunk]])
    return out


def _average(X: FloatArray, a: IntArray, b: IntArray, threshold: float) -> IntArray:
    """Average linkage over the graph edges (a, b), by rounds of reciprocal nearest neighbours."""
    n = len(X)
    label = np.arange(n, dtype=np.int64)  # face -> cluster (a face index: its smallest member)
    sums = X.astype(np.float64)  # cluster -> sum of its unit vectors (rows of dead clusters unused)
    size = np.ones(n, dtype=np.float64)
    ea, eb = a, b
    for _ in range(_MAX_ROUNDS):
        ca, cb = label[ea], label[eb]
        live = ca != cb
        if not live.any():
            break
        ca, cb = np.minimum(ca[live], cb[live]), np.maximum(ca[live], cb[live])
        pairs = np.unique(ca * n + cb)
        ca, cb = pairs // n, pairs % n
        sim = _rowdot(sums, ca, cb) / (size[ca] * size[cb])
        dist = 1.0 - sim
        close = dist <= threshold
        ca, cb, dist = ca[close], cb[close], dist[close]
        ea, eb = ea[live], eb[live]  # edges inside a cluster never matter again
        if len(ca) == 0:
            break
        # Each cluster's nearest neighbour (ties: the smaller id), both directions of every pair.
        x = np.concatenate([ca, cb])
        y = np.concatenate([cb, ca])
        dd = np.concatenate([dist, dist])
        order = np.lexsort((y, dd, x))
        x, y = x[order], y[order]
        firsts = np.ones(len(x), dtype=bool)
        firsts[1:] = x[1:] != x[:-1]
        best = np.full(n, -1, dtype=np.int64)
        best[x[firsts]] = y[firsts]
        src = x[firsts]
        dst = best[src]
        mutual = (best[dst] == src) & (src < dst)
        keep_c, gone_c = src[mutual], dst[mutual]
        sums[keep_c] += sums[gone_c]
        size[keep_c] += size[gone_c]
        remap = np.arange(n, dtype=np.int64)
        remap[gone_c] = keep_c
        label = remap[label]
    return label


def _ordered(label: IntArray) -> IntArray:
    """Labels renumbered 0.. by cluster size (largest first), then by the cluster's first face."""
    uniq, first, inverse, counts = np.unique(label, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    out: IntArray = rank[inverse.ravel()]
    return out


def cluster(vectors: NDArray[np.floating], settings: ClusterSettings | None = None, *,
            exact: bool | None = None) -> IntArray:
    """A cluster label per row of ``vectors`` (0 = the largest cluster); see the module docstring."""
    s = (settings or ClusterSettings()).check()
    X = normalise(vectors)
    n = len(X)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    r, c, d = knn_graph(X, s.k, max(s.max_edge, s.threshold), probes=s.probes, exact=exact)
    if s.linkage == "single":
        close = d <= s.threshold
        a, b = _undirected(r[close], c[close], n)
        return _ordered(_components(n, a, b))
    if s.linkage == "mutual":
        close = d <= s.threshold
        r, c = r[close], c[close]
        both = np.isin(c * n + r, r * n + c)  # the neighbour lists the face back
        a, b = _undirected(r[both], c[both], n)
        return _ordered(_components(n, a, b))
    a, b = _undirected(r, c, n)
    return _ordered(_average(X, a, b, s.threshold))
