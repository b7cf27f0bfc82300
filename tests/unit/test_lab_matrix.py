"""The lab's matrices as a user reads them: the plain one leaves pairs a NetworkPolicy isolates to the policy
(read from the controller's model in the lab's store) instead of calling them mismatches, no Python None in
what they print, the legend of `--ports` explains every mark, and long pod names keep the grid aligned."""

from __future__ import annotations

from pathlib import Path

from controller.service import Service
from controller.store.sqlite import SqliteStore
from lab import matrix, ports
from lab.cluster import Lab, LabPod
from lab.ovs import Pod

POLICY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy"}


def probe(source: str, target: str, *, expected: bool, ping: bool, tcp_by: str | None) -> matrix.Probe:
    return matrix.Probe(source, target, expected, ping, tcp_by is not None, tcp_by)


def pods(*names_and_networks: tuple[str, str]) -> dict[str, tuple[Pod, str]]:
    return {name: (Pod(name, f"ns-{name}", "10.0.0.1"), network) for name, network in names_and_networks}


def test_a_pair_a_network_policy_isolates_is_left_to_it_not_a_mismatch() -> None:
    found = [
        probe("x-a", "x-b", expected=True, ping=False, tcp_by=None),  # denied by x-b's ingress policy
        probe("x-b", "x-a", expected=True, ping=True, tcp_by="x-a"),
        probe("x-a", "r1", expected=False, ping=False, tcp_by=None),  # another tenant: judged as ever
        probe("r1", "x-a", expected=False, ping=False, tcp_by=None),
        probe("x-b", "r1", expected=False, ping=False, tcp_by=None),
        probe("r1", "x-b", expected=False, ping=False, tcp_by=None),  # x-b's ingress isolation: judged all the same
    ]
    isolation = {"x-a": frozenset(), "x-b": frozenset({"ingress"}), "r1": frozenset()}
    judged = matrix.left_to_policy(found, isolation)
    assert [p.by_policy for p in judged] == [True, False, False, False, False, False]
    assert all(p.matches for p in judged)
    # Without the policy's isolation the same measurement is a mismatch, as it was before.
    assert not matrix.left_to_policy(found, {})[0].matches
    text = matrix.render(pods(("x-a", "shop/pods"), ("x-b", "shop/pods"), ("r1", "red/web")), judged)
    assert "5/5 pairs as the policy says" in text
    assert "1 pair(s) marked ~ left to NetworkPolicy" in text and "matrix --ports" in text
    assert "~--" in text and "MISMATCH" not in text


def test_an_egress_isolated_sender_leaves_its_pairs_to_the_policy_and_other_tenants_stay_judged() -> None:
    found = [
        probe("x-a", "x-b", expected=True, ping=False, tcp_by=None),
        probe("x-a", "r1", expected=False, ping=True, tcp_by="r1"),  # across tenants: never left to a policy
    ]
    judged = matrix.left_to_policy(found, {"x-a": frozenset({"egress"})})
    assert [(p.by_policy, p.matches) for p in judged] == [(True, True), (False, False)]


def test_a_mismatch_says_what_answered_in_words_never_none() -> None:
    found = [
        probe("b1", "b2", expected=True, ping=False, tcp_by=None),
        probe("b2", "b1", expected=True, ping=True, tcp_by="b3"),
    ]
    text = matrix.render(pods(("b1", "blue/web"), ("b2", "blue/web")), found)
    assert "None" not in text
    assert "MISMATCH b1 should reach b2: ping no answer, TCP no answer" in text
    assert "MISMATCH b2 should reach b1: ping answered, TCP answered by b3" in text


def test_the_grid_stays_aligned_with_long_row_names() -> None:
    names = (("shop/front", "default/pods"), ("shop/back", "default/pods"), ("c1", "default/pods"))
    found = [
        probe(a, b, expected=True, ping=True, tcp_by=b) for a, _ in names for b, _ in names if a != b
    ]  # fmt: skip
    lines = matrix.render(pods(*names), found).splitlines()
    grid = lines[: len(names) + 1]
    assert len({len(line) for line in grid}) == 1, grid  # every row as wide as the header
    assert lines[1].startswith("shop/front (default/pods)  ")  # the label whole, then the cells
    column = grid[0].index("shop/front") + len("shop/front")  # the cells sit under their column's name
    assert all(line[column - 2 : column] in ("ok", " .") for line in grid[1:]), grid


def test_the_ports_legend_explains_every_mark_and_a_mismatch_names_no_none() -> None:
    found = [
        ports.PortProbe("x-a", "x-b", "tcp", 80, expected=True, allowed=False),
        ports.PortProbe("x-b", "x-a", "tcp", 80, expected=False, allowed=False),
    ]
    text = ports.render(["x-a", "x-b"], found, [80, 81], ["tcp"])
    assert "- not probed" in text and ". allowed" in text and "X denied" in text and "! not as the policy" in text
    assert "None" not in text
    assert "MISMATCH x-a should reach x-b on tcp/80 (no answer)" in text


def test_isolation_reads_the_policies_of_the_controller_model_in_the_lab_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tenet.db")
    try:
        service = Service(store)
        service.create_tenant("shop")
        service.create_network("shop", "pods", encap="vxlan", segment=5001, subnet="10.0.1.0/24")
        service.register_node("node1", tunnel_ip="192.168.100.1")
        for namespace in ("x", "y"):
            service.create_namespace(namespace, tenant="shop", labels={"ns": namespace})
        for name, namespace in (("x-a", "x"), ("x-b", "x"), ("y-a", "y")):
            service.create_endpoint(f"cni-{name}", network="shop/pods", node="node1", namespace=namespace)
        for name, namespace, kind in (("deny", "x", "Ingress"), ("out", "y", "Egress")):
            spec = {"podSelector": {}, "policyTypes": [kind]}
            service.apply_policy({**POLICY, "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    finally:
        store.close()
    lab = Lab(tmp_path)
    lab_pods = {
        name: LabPod(name, "node1", "shop/pods", f"ns-{name}", f"c-{name}", endpoint=f"cni-{name}")
        for name in ("x-a", "x-b", "y-a")
    }
    lab_pods["host"] = LabPod("host", "node1", "shop/pods", "ns-host", "c-host")  # no endpoint of its own
    assert ports.isolation(lab, lab_pods) == {
        "x-a": frozenset({"ingress"}),
        "x-b": frozenset({"ingress"}),
        "y-a": frozenset({"egress"}),
        "host": frozenset(),
    }
