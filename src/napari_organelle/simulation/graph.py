"""Ground-truth graphs of tubular organelle networks (ER, mitochondria).

A :class:`NetworkGraph` stores the centre lines the simulator drew: nodes
(junctions, free ends) and edges, each edge carrying the exact polyline of its
curved path in nm. Skeleton analysis of an image can be checked against its
:class:`NetworkStats`: total length, junctions (degree >= 3), end points
(degree 1) and connected components.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class NetworkStats:
    """Summary of a network graph, the numbers a skeleton analysis should recover.

    Attributes:
        total_length_nm: summed length of all centre lines.
        total_length_px: the same in pixels of the image it was made for.
        n_branches: edges after merging degree-2 nodes (one branch runs
            between two nodes that are junctions or ends).
        n_junctions: nodes of degree >= 3.
        n_endpoints: nodes of degree 1.
        n_components: connected pieces (an unbranched rod is one).
        mean_branch_length_nm: ``total_length_nm / n_branches`` (0 when empty).
    """

    total_length_nm: float
    total_length_px: float
    n_branches: int
    n_junctions: int
    n_endpoints: int
    n_components: int
    mean_branch_length_nm: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def path_lengths(paths: Sequence[np.ndarray]) -> np.ndarray:
    """Length of each polyline in ``paths`` (each an (K, 2) array), vectorised over all of them."""
    if not paths:
        return np.zeros(0)
    counts = np.fromiter((len(p) for p in paths), dtype=np.intp, count=len(paths))
    points = np.concatenate(paths, axis=0)
    along = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(points, axis=0).T))))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # the jump from one path's last point to the next path's first lies outside both spans
    return along[starts + counts - 1] - along[starts]


@dataclass
class NetworkGraph:
    """Nodes and curved edges of a network, in nm.

    Attributes:
        nodes_nm: (N, 2) node positions (y, x).
        edges: (E, 2) node indices joined by each edge.
        paths_nm: one (K, 2) polyline per edge, from ``nodes_nm[edges[e, 0]]``
            to ``nodes_nm[edges[e, 1]]`` inclusive.
    """

    nodes_nm: np.ndarray
    edges: np.ndarray
    paths_nm: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes_nm = np.asarray(self.nodes_nm, dtype=float).reshape(-1, 2)
        self.edges = np.asarray(self.edges, dtype=np.intp).reshape(-1, 2)
        if not self.paths_nm and len(self.edges):
            self.paths_nm = [self.nodes_nm[list(edge)] for edge in self.edges]
        if len(self.paths_nm) != len(self.edges):
            raise ValueError("a graph needs exactly one path per edge")

    # ------------------------------------------------------------------ building

    @classmethod
    def empty(cls) -> NetworkGraph:
        return cls(np.zeros((0, 2)), np.zeros((0, 2), dtype=np.intp), [])

    @classmethod
    def from_paths(cls, paths: Iterable[np.ndarray], snap_nm: float = 1e-6) -> NetworkGraph:
        """Build a graph from polylines; path ends closer than ``snap_nm`` become one node."""
        paths = [np.asarray(p, dtype=float) for p in paths if len(p) >= 2]
        if not paths:
            return cls.empty()
        ends = np.array([[p[0], p[-1]] for p in paths]).reshape(-1, 2)
        keys = np.round(ends / max(snap_nm, 1e-9)).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        return cls(ends[first], inverse.reshape(-1, 2), paths)

    @staticmethod
    def merged(graphs: Iterable[NetworkGraph]) -> NetworkGraph:
        """Disjoint union of several graphs."""
        nodes, edges, paths, offset = [], [], [], 0
        for graph in graphs:
            nodes.append(graph.nodes_nm)
            edges.append(graph.edges + offset)
            paths.extend(graph.paths_nm)
            offset += graph.n_nodes
        if not nodes:
            return NetworkGraph.empty()
        return NetworkGraph(np.concatenate(nodes), np.concatenate(edges), paths)

    # ------------------------------------------------------------------ queries

    @property
    def n_nodes(self) -> int:
        return len(self.nodes_nm)

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    def degrees(self) -> np.ndarray:
        """Number of edge ends at each node (a self-loop counts twice)."""
        return np.bincount(self.edges.ravel(), minlength=self.n_nodes)

    def edge_lengths_nm(self) -> np.ndarray:
        return path_lengths(self.paths_nm)

    @property
    def total_length_nm(self) -> float:
        return float(self.edge_lengths_nm().sum())

    def component_of_nodes(self) -> np.ndarray:
        """Connected-component index of every node."""
        if self.n_nodes == 0:
            return np.zeros(0, dtype=np.intp)
        adjacency = coo_matrix(
            (np.ones(self.n_edges), (self.edges[:, 0], self.edges[:, 1])), shape=(self.n_nodes,) * 2
        )
        return connected_components(adjacency, directed=False)[1]

    def n_components(self) -> int:
        labels = self.component_of_nodes()
        return int(labels.max() + 1) if len(labels) else 0

    def stats(self, pixel_size_nm: float) -> NetworkStats:
        """Truth numbers for skeleton analysis; degree-2 nodes are merged first."""
        graph = self.simplified()
        degrees = graph.degrees()
        total = graph.total_length_nm
        n_branches = graph.n_edges
        return NetworkStats(
            total_length_nm=total,
            total_length_px=total / pixel_size_nm,
            n_branches=n_branches,
            n_junctions=int(np.count_nonzero(degrees >= 3)),
            n_endpoints=int(np.count_nonzero(degrees == 1)),
            n_components=graph.n_components(),
            mean_branch_length_nm=total / n_branches if n_branches else 0.0,
        )

    # ------------------------------------------------------------------ transforms

    def subgraph(self, keep_edges: np.ndarray, drop_isolated: bool = True) -> NetworkGraph:
        """The graph with only the edges where ``keep_edges`` is True."""
        keep_edges = np.asarray(keep_edges)
        if keep_edges.dtype == bool:
            keep_edges = np.flatnonzero(keep_edges)
        edges = self.edges[keep_edges]
        paths = [self.paths_nm[i] for i in keep_edges]
        if not drop_isolated:
            return NetworkGraph(self.nodes_nm.copy(), edges, paths)
        used = np.unique(edges.ravel())
        remap = np.full(self.n_nodes, -1, dtype=np.intp)
        remap[used] = np.arange(len(used))
        return NetworkGraph(self.nodes_nm[used], remap[edges], paths)

    def simplified(self) -> NetworkGraph:
        """Merge every chain through degree-2 nodes into one edge; isolated nodes are dropped.

        A closed loop made only of degree-2 nodes keeps one node and becomes a
        self-loop, so it still counts as one component.
        """
        if self.n_edges == 0:
            return NetworkGraph.empty()
        degrees = self.degrees()
        incident: list[list[tuple[int, int]]] = [[] for _ in range(self.n_nodes)]
        for e, (a, b) in enumerate(self.edges.tolist()):
            incident[a].append((e, 0))
            incident[b].append((e, 1))
        used = np.zeros(self.n_edges, dtype=bool)
        new_paths: list[np.ndarray] = []
        new_edges: list[tuple[int, int]] = []

        def walk(start: int, e: int, side: int) -> None:
            # follow edge e leaving `start` through degree-2 nodes until a node of another degree
            pieces, node = [], start
            while True:
                used[e] = True
                path = self.paths_nm[e]
                pieces.append(path if side == 0 else path[::-1])
                node = int(self.edges[e, 1 - side])
                if degrees[node] != 2 or node == start:
                    break
                first, second = incident[node]
                e, side = first if second == (e, 1 - side) else second
                if used[e]:
                    break
            joined = np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])
            new_edges.append((start, node))
            new_paths.append(joined)

        for node in np.flatnonzero(degrees != 2):
            for e, side in incident[node]:
                if not used[e]:
                    walk(int(node), e, side)
        # what is left are loops made only of degree-2 nodes
        for e in np.flatnonzero(~used):
            if not used[e]:
                walk(int(self.edges[e, 0]), int(e), 0)
        return NetworkGraph(self.nodes_nm, np.array(new_edges), new_paths).subgraph(
            np.arange(len(new_edges))
        )

    def clipped(self, low_nm: Sequence[float], high_nm: Sequence[float]) -> NetworkGraph:
        """The part of the network inside the box ``low <= (y, x) < high``.

        Paths leaving the box are cut exactly where they cross its edge; the
        cut ends become new nodes of degree 1, as a skeleton of a cropped
        image would show them.
        """
        low, high = np.asarray(low_nm, dtype=float), np.asarray(high_nm, dtype=float)
        if self.n_edges == 0:
            return NetworkGraph.empty()
        counts = np.fromiter((len(p) for p in self.paths_nm), dtype=np.intp, count=self.n_edges)
        points = np.concatenate(self.paths_nm)
        inside = np.all((points >= low) & (points < high), axis=1)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        n_inside = np.add.reduceat(inside.astype(np.intp), starts)
        whole = n_inside == counts
        out_paths = [self.paths_nm[e] for e in np.flatnonzero(whole)]
        for e in np.flatnonzero((n_inside > 0) & ~whole):
            out_paths.extend(
                _clip_path(self.paths_nm[e], inside[starts[e] : starts[e] + counts[e]], low, high)
            )
        # an edge that only passes through the box between two samples is lost; samples are
        # dense enough
        return NetworkGraph.from_paths(out_paths, snap_nm=1e-3)


def _clip_path(
    path: np.ndarray, inside: np.ndarray, low: np.ndarray, high: np.ndarray
) -> list[np.ndarray]:
    """Pieces of one polyline inside the box, ends moved onto the box edge."""
    pieces = []
    flips = np.flatnonzero(np.diff(inside.astype(np.int8))) + 1
    bounds = np.concatenate(([0], flips, [len(path)]))
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if not inside[start]:
            continue
        piece = [path[start:stop]]
        if start > 0:
            piece.insert(0, _box_crossing(path[start], path[start - 1], low, high)[None])
        if stop < len(path):
            piece.append(_box_crossing(path[stop - 1], path[stop], low, high)[None])
        joined = np.concatenate(piece)
        if len(joined) >= 2:
            pieces.append(joined)
    return pieces


def _box_crossing(
    inner: np.ndarray, outer: np.ndarray, low: np.ndarray, high: np.ndarray
) -> np.ndarray:
    """Where the segment from a point inside the box to one outside it leaves the box."""
    direction = outer - inner
    t_exit = 1.0
    for axis in range(2):
        if direction[axis] > 0:
            t_exit = min(t_exit, (high[axis] - inner[axis]) / direction[axis])
        elif direction[axis] < 0:
            t_exit = min(t_exit, (low[axis] - inner[axis]) / direction[axis])
    point = inner + max(t_exit, 0.0) * direction
    # stay strictly inside the half-open box so the end pixel exists in the image
    return np.minimum(point, np.nextafter(high, low))
