"""The VLAN fabric as a networkx graph, and the forwarding answers the compiler needs from it.

Vertices are the model's nodes and, when any node has an uplink, one pseudo-vertex `FABRIC` standing for
the physical L2 switch every uplink plugs into (a learning switch: Tenet programs nothing on it). Each edge
carries `ports`, a dict {node: ofport on that node}; an edge to `FABRIC` names only the node's side.

Every traversal here visits neighbours in sorted order, so each answer is the same on every call, in every
process and under every hash seed: recompiling an unchanged topology yields the same flows.

Loop freedom rests on two rules the compiler applies with these answers: floods leave only by
`flood_ports` and are accepted only on `tree_ports`; unicast toward a node follows `next_hop_port`, which
comes from one BFS tree per destination, so hops never disagree.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from topology.errors import ValidationError
from topology.model import UPLINK_OFPORT, Link, Model

FABRIC = "(fabric)"
_HOSTS_CACHE_SIZE = 1024  # distinct host sets remembered; endpoints come and go on a long-lived fabric

Parents = dict[str, str | None]  # BFS tree: vertex -> its parent (None for the root), in visit order


class Unreachable(ValidationError):
    """No chain of links and uplinks joins two vertices of the fabric."""


def network_hosts(model: Model, key: str) -> frozenset[str]:
    """Nodes with at least one endpoint of network `key`: the flood list of a VXLAN network."""
    model.network(key)
    return frozenset(node for node, count in model.hosts[key].items() if count > 0)


def fabric_key(model: Model) -> Hashable:
    """What the fabric is built from: equal keys give equal fabrics, so a caller can rebuild only on change."""
    nodes = tuple(sorted((node.name, node.uplink is not None) for node in model.nodes.values()))
    return nodes, tuple((link, model.link_up(link)) for link in model.links)


def build_graph(model: Model) -> nx.Graph:
    """The fabric graph of a model, with vertices and edges inserted in sorted order.

    Links a switch reports down are left out. Of several links up between the same two nodes only the
    first declared becomes an edge; the others stay idle (they are neither tree nor fabric ports, so the
    compiler forwards nothing onto them).
    """
    if FABRIC in model.nodes:
        raise ValidationError(f"node {FABRIC!r}", "the name is reserved for the physical switch of the uplinks")
    names = sorted(model.nodes)
    uplinked = [name for name in names if model.nodes[name].uplink is not None]
    edges: dict[tuple[str, str], dict[str, int]] = {}
    link_ofports = {name: model.link_ports(name) for name in names}
    for link in model.links:
        pair = _pair(link.a, link.b)
        if pair not in edges and model.link_up(link):  # parallel links: the first declared up wins
            edges[pair] = _link_ports(link, link_ofports)
    for name in uplinked:
        edges[_pair(name, FABRIC)] = {name: UPLINK_OFPORT}
    graph: nx.Graph[str] = nx.Graph()
    graph.add_nodes_from(sorted([*names, FABRIC] if uplinked else names))
    for a, b in sorted(edges):
        graph.add_edge(a, b, ports=edges[a, b])
    return graph


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _link_ports(link: Link, link_ofports: dict[str, dict[str, int]]) -> dict[str, int]:
    return {link.a: link_ofports[link.a][link.a_port], link.b: link_ofports[link.b][link.b_port]}


@dataclass(frozen=True)
class _Forest:
    """The flood tree as parent pointers: BFS from the smallest real node of each component."""

    parent: Parents  # all vertices, components one after another, each in BFS order
    root: dict[str, str]  # vertex -> root of its component


@dataclass(frozen=True)
class _HostCounts:
    """Per host set: hosts in each vertex's flood subtree, and hosts in each component."""

    below: dict[str, int]
    total: dict[str, int]  # by component root


class Fabric:
    """An immutable snapshot of the fabric; build a new one when nodes, uplinks, links or their state change."""

    def __init__(self, graph: nx.Graph, *, key: Hashable = None) -> None:
        self.graph: nx.Graph = nx.freeze(graph)
        self.key = key
        self._neighbours = {v: tuple(sorted(graph[v])) for v in graph}
        # FABRIC has no ports of its own: nothing on it is programmed.
        self._ports = {
            v: {n: graph.edges[v, n]["ports"][v] for n in self._neighbours[v]} if v != FABRIC else {} for v in graph
        }
        self._towards: dict[str, Parents] = {}
        self._counts: OrderedDict[frozenset[str], _HostCounts] = OrderedDict()

    @classmethod
    def from_model(cls, model: Model) -> Fabric:
        return cls(build_graph(model), key=fabric_key(model))

    # --- flooding ------------------------------------------------------------------------------

    def flood_tree(self) -> nx.Graph:
        """A loop-free spanning forest, one BFS tree per connected component (frozen, shared)."""
        return self._tree_graph

    def tree_ports(self, node: str) -> frozenset[int]:
        """Ports of `node` on the flood tree: the only ports a flood may arrive on or leave by."""
        self._check_node(node)
        return self._tree_ports[node]

    def flood_ports(self, node: str, network_hosts: Collection[str]) -> tuple[int, ...]:
        """Flood-tree ports of `node` behind which at least one host lies, sorted (empty subtrees pruned)."""
        self._check_node(node)
        counts = self._host_counts(self._host_set(network_hosts))
        forest = self._forest
        ports = [
            port
            for neighbour, port in self._ports[node].items()
            if self._on_tree(node, neighbour) and self._hosts_behind(node, neighbour, counts, forest)
        ]
        return tuple(sorted(ports))

    def carriers(self, network_hosts: Collection[str]) -> frozenset[str]:
        """Real nodes that must carry a VLAN network: its hosts, the flood subtree joining them, unicast paths.

        Hosts in different components stay apart (the network is partitioned); each group is joined inside
        its own component.
        """
        hosts = self._host_set(network_hosts)
        counts = self._host_counts(hosts)
        forest = self._forest
        result = set(hosts)
        for vertex, parent in forest.parent.items():
            # The edge to the parent joins hosts iff hosts lie both below it and elsewhere in the component.
            if parent is not None and 0 < counts.below[vertex] < counts.total[forest.root[vertex]]:
                result.update((vertex, parent))
        for destination in sorted(hosts):
            tree = self._tree_towards(destination)
            seen = {destination}
            for source in hosts:
                hop: str | None = source
                while hop is not None and hop in tree and hop not in seen:
                    seen.add(hop)
                    hop = tree[hop]
            result |= seen
        result.discard(FABRIC)
        return frozenset(result)

    # --- unicast -------------------------------------------------------------------------------

    def shortest_path(self, a: str, b: str) -> list[str]:
        """Vertices from `a` to `b`, both included: exactly the hops `next_hop` takes."""
        self._check_vertex(a)
        self._check_vertex(b)
        tree = self._tree_towards(b)
        if a not in tree:
            raise Unreachable("links", f"node {b!r} is not reachable from {a!r}: no link or uplink joins them")
        path = [a]
        while (parent := tree[path[-1]]) is not None:
            path.append(parent)
        return path

    def next_hop(self, vertex: str, destination: str) -> str | None:
        """The neighbour of `vertex` toward `destination` (None if the same vertex or unreachable)."""
        self._check_vertex(vertex)
        self._check_vertex(destination)
        return self._tree_towards(destination).get(vertex)

    def next_hop_port(self, node: str, destination: str) -> int | None:
        """The ofport on `node` for unicast toward `destination` (None if the same node or unreachable)."""
        self._check_node(node)
        hop = self.next_hop(node, destination)
        return None if hop is None else self._ports[node][hop]

    def fabric_ports(self, node: str) -> dict[int, str]:
        """Every port of `node` toward another vertex (links and uplink): port -> neighbour, by port."""
        self._check_node(node)
        return {port: neighbour for neighbour, port in sorted(self._ports[node].items(), key=lambda item: item[1])}

    # --- internals -----------------------------------------------------------------------------

    def _bfs(self, root: str) -> Parents:
        parent: Parents = {root: None}
        queue = deque([root])
        while queue:
            vertex = queue.popleft()
            for neighbour in self._neighbours[vertex]:
                if neighbour not in parent:
                    parent[neighbour] = vertex
                    queue.append(neighbour)
        return parent

    def _tree_towards(self, destination: str) -> Parents:
        # A BFS tree rooted at the destination: every vertex's parent is its next hop, so all hops agree.
        tree = self._towards.get(destination)
        if tree is None:
            tree = self._towards[destination] = self._bfs(destination)
        return tree

    @cached_property
    def _forest(self) -> _Forest:
        parent: Parents = {}
        root: dict[str, str] = {}
        for start in sorted(v for v in self._neighbours if v != FABRIC):
            if start not in parent:
                component = self._bfs(start)
                parent.update(component)
                root.update(dict.fromkeys(component, start))
        return _Forest(parent, root)

    @cached_property
    def _tree_graph(self) -> nx.Graph:
        tree: nx.Graph[str] = nx.Graph()
        tree.add_nodes_from(self.graph)
        for vertex, parent in self._forest.parent.items():
            if parent is not None:
                tree.add_edge(parent, vertex, ports=self.graph.edges[parent, vertex]["ports"])
        return nx.freeze(tree)

    @cached_property
    def _tree_ports(self) -> dict[str, frozenset[int]]:
        ports: dict[str, set[int]] = {v: set() for v in self.graph}
        for vertex, parent in self._forest.parent.items():
            if parent is None:
                continue
            for end, other in ((vertex, parent), (parent, vertex)):
                if other in self._ports[end]:  # FABRIC's side has no port
                    ports[end].add(self._ports[end][other])
        return {v: frozenset(p) for v, p in ports.items()}

    def _on_tree(self, vertex: str, neighbour: str) -> bool:
        parent = self._forest.parent
        return parent[vertex] == neighbour or parent[neighbour] == vertex

    @staticmethod
    def _hosts_behind(vertex: str, neighbour: str, counts: _HostCounts, forest: _Forest) -> bool:
        if forest.parent[neighbour] == vertex:  # a child: its subtree
            return counts.below[neighbour] > 0
        return counts.total[forest.root[vertex]] - counts.below[vertex] > 0  # the parent: the rest

    def _host_counts(self, hosts: frozenset[str]) -> _HostCounts:
        counts = self._counts.get(hosts)
        if counts is not None:
            self._counts.move_to_end(hosts)
            return counts
        forest = self._forest
        below = {vertex: int(vertex in hosts) for vertex in forest.parent}
        for vertex, parent in reversed(forest.parent.items()):  # children before parents
            if parent is not None:
                below[parent] += below[vertex]
        total = {root: below[root] for root in set(forest.root.values())}
        counts = self._counts[hosts] = _HostCounts(below, total)
        if len(self._counts) > _HOSTS_CACHE_SIZE:
            self._counts.popitem(last=False)
        return counts

    def _host_set(self, hosts: Collection[str]) -> frozenset[str]:
        if isinstance(hosts, str):  # a lone name would be read as a set of characters
            raise TypeError("network_hosts is a collection of node names, not one name")
        result = frozenset(hosts)
        for host in sorted(result):
            self._check_node(host, path="hosts")
        return result

    def _check_vertex(self, name: str, *, path: str = "node") -> None:
        if name not in self._neighbours:
            raise ValidationError(path, f"unknown node {name!r}")

    def _check_node(self, name: str, *, path: str = "node") -> None:
        self._check_vertex(name, path=path)
        if name == FABRIC:
            raise ValidationError(path, f"{FABRIC!r} is the physical switch of the uplinks, not a node")
