"""NetworkPolicy compiled incrementally (controller/pipeline/netpol_compile.py) equals a full compile under
any sequence of label changes, pods added, removed and moved, namespace relabels, and policies applied,
replaced and deleted with their names and ids reused (alone or several in one update); the change sets turn
what the switches held into that; the sections equal those built from scratch (`features.netpol.
node_sections`); the simulated pipeline decides every probe as the reference model (tests/netpol_reference.py);
and once every policy and pod is gone, nothing of them is remembered.

Half the clusters are routed: three networks per tenant on five nodes, so some nodes only route into a
network while policy changes reach them too. Examples: 80 random clusters of up to 12 changes each, every
change checked.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.pipeline import matrix
from controller.pipeline.compile import Compiler
from controller.pipeline.cookies import Feature, split
from controller.pipeline.features import netpol
from controller.pipeline.state import NodeState, apply
from tests.netpol_reference import Cluster, Pod, allowed, xyz_cluster
from tests.netpol_scenarios import policy
from tests.netpol_strategies import clusters, policy_doc
from tests.unit.incremental_support import assert_incremental_is_full
from tests.unit.netpol_support import cluster_from_model, model_from_cluster
from tests.unit.test_diff import assert_same
from topology.errors import ValidationError
from topology.model import Model, Touched, touched_by
from topology.netpol import resolve

MAX_EXAMPLES = 80
STEPS = 12
LABELS: tuple[dict[str, str], ...] = ({}, {"app": "a"}, {"app": "b", "tier": "f"}, {"app": "b"}, {"tier": "k"})


def one_change(model: Model, rng: random.Random, step: int, data: st.DataObject) -> Touched:
    """A policy applied (new or replacing one of the same name; or one naming a pod's address as a /32 beside
    a namespaceSelector), or deleted; a pod relabelled, its named ports changed, added, removed, or moved
    (removed and added again under its id, on another node, perhaps with another address); a namespace
    relabelled."""
    kinds = ["policy", "policy", "pinned", "anyip", "unpolicy", "label", "label", "ports", "ports", "nslabel"]
    kind = rng.choice([*kinds, "add", "remove", "move"])
    namespaces, endpoints = sorted(model.namespaces), sorted(model.endpoints)
    if kind == "policy":
        return model.apply_policy(data.draw(policy_doc(rng.randrange(3), rng.choice(namespaces))))[1]
    if kind == "pinned" and endpoints:  # a pod's address as a /32 beside a namespaceSelector that may name it
        pinned = [{"ipBlock": {"cidr": f"{model.endpoints[rng.choice(endpoints)].ip}/32"}}]
        peers = [{"namespaceSelector": {"matchLabels": {"team": rng.choice("pq")}}}, *pinned]
        direction = rng.choice(["ingress", "egress"])
        spec = {"podSelector": {}, direction: [{"from" if direction == "ingress" else "to": peers}]}
        doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
        metadata = {"name": f"p{rng.randrange(3)}", "namespace": rng.choice(namespaces)}
        return model.apply_policy({**doc, "metadata": metadata, "spec": spec})[1]
    if kind == "anyip":  # 0.0.0.0/0 beside a podSelector peer, or the same policy without it (same names)
        peers = [{"podSelector": {"matchLabels": {"app": rng.choice("ab")}}}]
        if rng.random() < 0.5:
            peers.append({"ipBlock": {"cidr": "0.0.0.0/0"}})
        direction = rng.choice(["ingress", "egress"])
        spec = {"podSelector": {}, direction: [{"from" if direction == "ingress" else "to": peers}]}
        doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
        metadata = {"name": f"p{rng.randrange(3)}", "namespace": rng.choice(namespaces)}
        return model.apply_policy({**doc, "metadata": metadata, "spec": spec})[1]
    if kind == "unpolicy" and model.policies:
        return model.remove_policy(rng.choice(sorted(model.policies)))
    if kind == "label" and endpoints:
        return model.set_endpoint_labels(rng.choice(endpoints), rng.choice(LABELS))
    if kind == "ports" and endpoints:  # the names policies use, renumbered or dropped (tests.netpol_strategies)
        names = [("http", "TCP"), ("dns", "UDP"), ("alt", "TCP"), ("alt-udp", "UDP")]
        ports = [{"name": n, "port": rng.choice([53, 80, 81]), "protocol": p} for n, p in names if rng.random() < 0.6]
        return model.set_endpoint_ports(rng.choice(endpoints), ports)
    if kind == "nslabel":
        return model.set_namespace_labels(rng.choice(namespaces), rng.choice([{}, {"team": "p"}, {"team": "q"}]))
    if kind in ("add", "move") and (kind == "add" or endpoints):
        touched = Touched()
        network: str | None = None
        if kind == "move":
            name = rng.choice(endpoints)
            old = model.endpoints[name]
            namespace, ip = old.namespace, str(old.ip) if rng.random() < 0.5 else None
            network = old.network
            touched.merge(model.remove_endpoint(name))
        else:
            name, namespace, ip = f"new{step}", rng.choice(namespaces), None
        tenant = model.namespaces[namespace].tenant if namespace else rng.choice(sorted(model.tenants))
        if network is None:  # one of the tenant's networks (several when routed)
            network = rng.choice(sorted(model.networks_by_tenant.get(tenant, ())) or [f"{tenant}/net"])
        ports = [{"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"}][: rng.randrange(3)]
        node = rng.choice(sorted(model.nodes))
        try:
            endpoint = model.add_endpoint(
                name,
                network=network,
                node=node,
                namespace=namespace,
                labels=rng.choice(LABELS),
                ports=ports,
                ip=ip,
            )
        except ValidationError:
            return touched  # the add was refused: the removal stands
        return touched.merge(touched_by(endpoint))
    if kind == "remove" and endpoints:
        return model.remove_endpoint(rng.choice(endpoints))
    return Touched()


def check(model: Model, compiler: Compiler, installed: dict[str, NodeState], where: str) -> None:
    fresh = assert_incremental_is_full(model, compiler, where)
    resolved = [resolve(model, p) for p in model.policies.values()]
    for name in model.nodes:
        assert_same(installed[name], fresh[name], f"{where}: {name}: the switch after the change sets")
        mine = {c: s for c, s in compiler.states[name].sections.items() if split(c)[1] in netpol.FEATURES}
        scratch = netpol.node_sections(model, resolved, model.policy_ids, name)
        assert {c: s.flows for c, s in mine.items()} == {c: s.flows for c, s in scratch.items()}, where
    cluster = cluster_from_model(model)
    for probe, got in matrix.run(model, compiler.states, matrix.probes(model, (53, 80, 81), ("tcp", "udp"))):
        want = allowed(cluster, probe.source, probe.destination, probe.protocol.upper(), probe.port)
        assert got == want, f"{where}: {probe}"


@given(clusters(), st.integers(0, 10_000), st.data())
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_incremental_policy_updates_equal_a_full_recompile(cluster: Cluster, seed: int, data: st.DataObject) -> None:
    rng = random.Random(seed)
    # routed: three networks per tenant on five nodes, so that some nodes only route into a network while
    # policy changes reach them too (their change sets are part shared, part their own)
    routed = rng.random() < 0.5
    model = model_from_cluster(cluster, nodes=5 if routed else 3, routed=routed)
    compiler = Compiler(model)
    installed = {name: NodeState.flat() for name in model.nodes}

    def send(touched: Touched) -> None:
        for name, changes in compiler.update(touched).items():
            installed[name] = apply(changes, installed.get(name, NodeState()))

    send(Touched(everything=True))
    for step in range(STEPS):
        batch = rng.random() < 0.3  # several changes in one update: a policy id freed and taken again, ...
        touched = Touched()
        for _ in range(rng.randrange(2, 4) if batch else 1):
            try:
                touched.merge(one_change(model, rng, step, data))
            except ValidationError:
                continue  # refused, and nothing changed
        send(touched)
        check(model, compiler, installed, f"step {step}")
    for key in sorted(model.policies):
        send(model.remove_policy(key))
    for endpoint in sorted(model.endpoints):
        send(model.remove_endpoint(endpoint))
    check(model, compiler, installed, "everything removed")
    held = {name: size for name, size in compiler.policies.cache_sizes().items() if size}
    assert not held, f"deleted policies or endpoints are still remembered: {held}"


def test_policy_ids_freed_and_taken_in_one_update_renumber_every_rule() -> None:
    """p0 (id 1) deleted and p1 applied in the same update takes id 1: p0's rules go before p1's come."""
    cluster = clusters().example() if False else None
    del cluster
    spec = {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}]}
    doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    model = model_from_cluster(
        Cluster(
            {"n0": ("t", {"kubernetes.io/metadata.name": "n0"})},
            {},
            [{**doc, "metadata": {"name": "p0", "namespace": "n0"}, "spec": spec}],
        ),
        nodes=2,
    )
    for i, labels in enumerate(({"app": "a"}, {"app": "b"}, {})):
        model.add_endpoint(f"e{i}", network="t/net", node=f"n{i % 2}", namespace="n0", labels=labels)
    compiler = Compiler(model)
    installed = {name: apply(c, NodeState()) for name, c in compiler.update(Touched(everything=True)).items()}
    touched = model.remove_policy("n0/p0")
    other = {"podSelector": {"matchLabels": {"app": "b"}}, "egress": [{"ports": [{"port": 80}]}]}
    touched.merge(model.apply_policy({**doc, "metadata": {"name": "p1", "namespace": "n0"}, "spec": other})[1])
    assert model.policy_ids["n0/p1"] == 1
    for name, changes in compiler.update(touched).items():
        installed[name] = apply(changes, installed.get(name, NodeState()))
    check(model, compiler, {n: installed.get(n, NodeState()) for n in model.nodes}, "after the swap")


def test_a_peer_relabelled_is_one_clause_flow_and_other_rules_keep_theirs() -> None:
    """x/a lets in pod=b of every namespace; y/c becoming pod=b adds its address's clause flow, nothing else;
    a policy applied in z then changes no flow of x's rule, whose conjunction ids stay."""
    spec = {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]}],
    }
    model = model_from_cluster(xyz_cluster([policy("web", "x", spec)]), nodes=2)
    compiler = Compiler(model)
    compiler.compile_all()
    home = model.endpoints["x.a"].node
    changes = compiler.update(model.set_endpoint_labels("y.c", {"pod": "b"}))
    assert set(changes) == {home}
    added = changes[home].flow_adds
    assert (len(added), changes[home].flow_mods, changes[home].flow_deletes) == (1, [], [])
    assert ("ipv4_src", int(model.endpoints["y.c"].ip), None) in added[0].match
    assert split(added[0].cookie)[1] is Feature.NETPOL_PEER
    before = {f for s in compiler.states.values() for f in s.flows() if split(f.cookie)[1] in netpol.FEATURES}
    other = {"podSelector": {"matchLabels": {"pod": "c"}}, "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}
    changes = compiler.update(model.apply_policy(policy("dns", "z", other))[1])
    assert changes
    touched = {f.key for c in changes.values() for f in (*c.flow_mods, *c.flow_deletes)}
    assert not touched & {f.key for f in before}, "a policy of z changed a flow of x's rule"
    after = {f for s in compiler.states.values() for f in s.flows()}
    assert before <= after


def test_a_namespace_relabel_keeps_a_peer_flow_shared_with_an_ip_block_and_other_rules() -> None:
    """n0's pod a is a peer of x's rule twice (namespaceSelector team=p, ipBlock of its /32) and of y's rule by
    podSelector: relabelling n0 away and back, and moving a to another node with its address, each leaves
    the sections a full compile builds (the clause flow for a's address counts every rule using it)."""
    doc = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}
    model = model_from_cluster(
        Cluster(
            {
                "n0": ("t", {"kubernetes.io/metadata.name": "n0", "team": "p"}),
                "n1": ("t", {"kubernetes.io/metadata.name": "n1"}),
            },
            {
                "a": Pod("n0", {"app": "a"}, "10.0.0.2", "t", []),
                "b": Pod("n1", {"app": "b"}, "10.0.0.3", "t", []),
                "c": Pod("n0", {"app": "b"}, "10.0.0.4", "t", []),
            },
            [],
        ),
        nodes=2,
    )
    compiler = Compiler(model)
    compiler.update(Touched(everything=True))
    team = {"namespaceSelector": {"matchLabels": {"team": "p"}}}
    x = {
        "podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [team, {"ipBlock": {"cidr": "10.0.0.2/32"}}]}],
    }
    y = {
        "podSelector": {"matchLabels": {"app": "b"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a"}}}]}],
    }
    steps: list[tuple[str, object]] = [
        ("x applied", lambda: model.apply_policy({**doc, "metadata": {"name": "x", "namespace": "n1"}, "spec": x})[1]),
        ("y applied", lambda: model.apply_policy({**doc, "metadata": {"name": "y", "namespace": "n0"}, "spec": y})[1]),
        ("n0 relabelled", lambda: model.set_namespace_labels("n0", {"team": "q"})),
        ("n0 back", lambda: model.set_namespace_labels("n0", {"team": "p"})),
        ("a relabelled", lambda: model.set_endpoint_labels("a", {"app": "b"})),
        ("n0 relabelled again", lambda: model.set_namespace_labels("n0", {})),
        ("a back", lambda: model.set_endpoint_labels("a", {"app": "a"})),
        ("n0 back again", lambda: model.set_namespace_labels("n0", {"team": "p"})),
    ]
    for where, change in steps:
        compiler.update(change())  # type: ignore[operator]
        assert_incremental_is_full(model, compiler, where)
    old = model.endpoints["a"]
    moved = model.remove_endpoint("a")
    other = "n1" if old.node == "n0" else "n0"
    endpoint = model.add_endpoint("a", network="t/net", node=other, namespace="n0", labels={"app": "a"}, ip=str(old.ip))
    compiler.update(moved.merge(touched_by(endpoint)))
    assert_incremental_is_full(model, compiler, "a moved with its address")
    touched = model.set_namespace_labels("n0", {"team": "q"})
    touched.merge(model.remove_endpoint("c"))
    compiler.update(touched)
    assert_incremental_is_full(model, compiler, "n0 relabelled and c removed")
    for key in sorted(model.policies):
        compiler.update(model.remove_policy(key))
    assert not compiler.policies.cache_sizes()["policy_clause_flows"]


def switches_after(model: Model, changes: list[Touched]) -> tuple[Compiler, dict[str, NodeState]]:
    """The compiler and what its switches hold after a full compile and then each change's change sets."""
    compiler = Compiler(model)
    installed = {name: apply(c, NodeState()) for name, c in compiler.update(Touched(everything=True)).items()}
    for touched in changes:
        for name, c in compiler.update(touched).items():
            installed[name] = apply(c, installed.get(name, NodeState()))
    return compiler, installed


def test_nodes_that_only_route_into_a_network_get_their_own_policy_changes() -> None:
    """Tenant t has networks a (a pod on n0) and b (s1 on n1, s2 on n2); p1 opens s1 to app=client on TCP 80,
    p2 s2 on TCP 81. Pod cl (app=client) added on n0 in a: n1 and n2 get the same change of a's routes and
    each its own policy change; s2 takes cl on 81 only (not on 80, as p1 says of s1)."""
    model = Model()
    for i in range(3):
        model.add_node(f"n{i}", tunnel_ip=f"192.168.0.{i + 1}", uplink="eth1")
    model.add_tenant("t")
    model.add_network("t", "a", encap="vxlan", segment=5000, subnet="10.0.0.0/24", gateway="10.0.0.1")
    model.add_network("t", "b", encap="vxlan", segment=5001, subnet="10.0.1.0/24", gateway="10.0.1.1")
    model.add_namespace("ns", tenant="t")
    model.add_endpoint("a0", network="t/a", node="n0", namespace="ns", labels={"app": "x"})
    for node, name, port in (("n1", "s1", 80), ("n2", "s2", 81)):
        model.add_endpoint(name, network="t/b", node=node, namespace="ns", labels={"app": name})
        ingress = [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": port}]}]
        model.apply_policy(
            policy(f"to-{name}", "ns", {"podSelector": {"matchLabels": {"app": name}}, "ingress": ingress})
        )
    probes = [matrix.Probe("cl", d, "tcp", p) for d in ("s1", "s2") for p in (80, 81)]
    for attempt in range(5):  # a freed change set's id comes back often, not always: several tries
        compiler = Compiler(model)
        installed = {n: apply(c, NodeState()) for n, c in compiler.update(Touched(everything=True)).items()}
        endpoint = model.add_endpoint("cl", network="t/a", node="n0", namespace="ns", labels={"app": "client"})
        changes = compiler.update(touched_by(endpoint))
        assert changes["n1"] is not changes["n2"], attempt
        for name, c in changes.items():
            installed[name] = apply(c, installed.get(name, NodeState()))
        check(model, compiler, installed, f"after cl, attempt {attempt}")
        got = {(p.destination, p.port): ok for p, ok in matrix.run(model, installed, probes)}
        assert got == {("s1", 80): True, ("s1", 81): False, ("s2", 80): False, ("s2", 81): True}, attempt
        model.remove_endpoint("cl")


def test_an_ip_block_of_everything_beside_a_pod_selector_comes_and_goes() -> None:
    """s lets in 0.0.0.0/0 and app=x (r): every pod; then app=x alone: r and not q; then q relabelled app=x
    while 0.0.0.0/0 is there again: the any-IP clause has no flow of its own for q."""
    model = Model()
    for i in range(2):
        model.add_node(f"n{i}", tunnel_ip=f"192.168.0.{i + 1}")
    model.add_tenant("t")
    model.add_network("t", "net", encap="vxlan", segment=5000, subnet="10.0.0.0/24")
    model.add_namespace("ns", tenant="t")
    for name, node, app in (("s", "n0", "s"), ("r", "n1", "x"), ("q", "n1", "y")):
        model.add_endpoint(name, network="t/net", node=node, namespace="ns", labels={"app": app})
    x = {"podSelector": {"matchLabels": {"app": "x"}}}

    def web(*peers: dict) -> Touched:
        spec = {"podSelector": {"matchLabels": {"app": "s"}}, "ingress": [{"from": list(peers)}]}
        return model.apply_policy(policy("web", "ns", spec))[1]

    compiler, installed = switches_after(model, [web({"ipBlock": {"cidr": "0.0.0.0/0"}}, x)])
    probes = [matrix.Probe(src, "s", "tcp", 80) for src in ("r", "q")]
    check(model, compiler, installed, "0.0.0.0/0 and app=x")
    for name, c in compiler.update(web(x)).items():
        installed[name] = apply(c, installed.get(name, NodeState()))
    check(model, compiler, installed, "app=x alone")
    assert {p.source: ok for p, ok in matrix.run(model, installed, probes)} == {"r": True, "q": False}
    for touched in (web({"ipBlock": {"cidr": "0.0.0.0/0"}}, x), model.set_endpoint_labels("q", {"app": "x"})):
        for name, c in compiler.update(touched).items():
            installed[name] = apply(c, installed.get(name, NodeState()))
        check(model, compiler, installed, "q relabelled under 0.0.0.0/0")
    for touched in (web(x),):
        for name, c in compiler.update(touched).items():
            installed[name] = apply(c, installed.get(name, NodeState()))
    check(model, compiler, installed, "app=x alone again")
    assert {p.source: ok for p, ok in matrix.run(model, installed, probes)} == {"r": True, "q": True}


@pytest.mark.parametrize("kind", ["removed", "moved to another tenant"])
def test_a_policy_selecting_its_first_pod_names_every_destination_of_its_named_ports(kind: str) -> None:
    """u/p lets its pods out to any pod with a port named dns (UDP). At the full compile it selects nobody; c
    comes, and with it the clause for d's dns port; d then goes (or comes back under its id in another
    tenant): c's node drops that clause, as a full compile has it."""
    dns = [{"name": "dns", "port": 53, "protocol": "UDP"}]
    egress = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}
    model = Model()
    for i in range(2):
        model.add_node(f"n{i}", tunnel_ip=f"192.168.0.{i + 1}")
    for k, tenant in enumerate(("t", "u")):
        model.add_tenant(tenant)
        model.add_network(tenant, "net", encap="vxlan", segment=5000 + k, subnet="10.0.0.0/16")
        model.add_namespace(f"{tenant}ns", tenant=tenant)
    model.add_endpoint("d", network="u/net", node="n1", ip="10.0.0.10", ports=dns)
    model.apply_policy(policy("p", "uns", egress))
    compiler, installed = switches_after(model, [])
    arrived = touched_by(model.add_endpoint("c", network="u/net", node="n0", namespace="uns"))
    for name, change in compiler.update(arrived).items():
        installed[name] = apply(change, installed.get(name, NodeState()))
    check(model, compiler, installed, f"{kind}: c added")
    left = model.remove_endpoint("d")
    if kind != "removed":
        left.merge(touched_by(model.add_endpoint("d", network="t/net", node="n1", namespace="tns", ports=dns)))
    for name, change in compiler.update(left).items():
        installed[name] = apply(change, installed.get(name, NodeState()))
    check(model, compiler, installed, f"{kind}: d gone")
