"""NetworkPolicy through the compiled, simulated pipeline, against the reference model: the named e2e
scenarios through `tenetctl matrix`, random clusters and policies, incremental == full under policy changes,
conjunctions that cost a sum and not a product, and traces that name the rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from controller.cli import main
from controller.pipeline import matrix
from controller.pipeline.compile import Compiler
from controller.pipeline.cookies import Feature, split
from controller.pipeline.features.netpol import explain
from controller.pipeline.ir import ETH_TYPE_ARP, Conjunction
from controller.pipeline.probes import to_endpoint
from controller.pipeline.simulate import SimNetwork, Trace
from controller.pipeline.tables import PIPELINE
from tests.netpol_reference import Cluster, allowed, xyz_cluster
from tests.netpol_scenarios import SCENARIOS, Scenario, policy
from tests.netpol_strategies import PROBE_PORTS, clusters
from tests.unit.netpol_support import model_from_cluster
from topology.loader import dump_model
from topology.model import Model


def pod_of(endpoint: str) -> str:
    return endpoint.replace(".", "/", 1)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_tenetctl_matrix_agrees_with_the_reference_on_each_scenario(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster = xyz_cluster(scenario.policies)
    topology = tmp_path / "cluster.yaml"
    topology.write_text(yaml.safe_dump(dump_model(model_from_cluster(cluster, nodes=3, routed=True))))
    assert main(["matrix", str(topology), "--ports", "80,81", "--protocols", "tcp,udp", "--json"]) == 0
    probes = json.loads(capsys.readouterr().out)["probes"]
    assert len(probes) == 9 * 8 * 4
    wrong = [
        p
        for p in probes
        if p["allowed"] != allowed(cluster, pod_of(p["from"]), pod_of(p["to"]), p["protocol"].upper(), p["port"])
    ]
    assert not wrong
    assert any(not p["allowed"] for p in probes) or scenario.name == "egress-allow-all"


@given(clusters())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_compiled_pipeline_agrees_with_the_reference_on_random_clusters(cluster: Cluster) -> None:
    model = model_from_cluster(cluster, nodes=2)
    states = Compiler(model).compile_all()
    for state in states.values():
        for flow in state.flows():
            PIPELINE.verify(flow)
    found = matrix.run(model, states, matrix.probes(model, PROBE_PORTS, ("tcp", "udp")))
    for probe, got in found:
        want = allowed(cluster, pod_of(probe.source), pod_of(probe.destination), probe.protocol.upper(), probe.port)
        assert got == want, probe


def test_a_label_change_touches_only_the_nodes_of_the_pods_it_concerns() -> None:
    spec = {
        "podSelector": {"matchLabels": {"pod": "a"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
    }
    model = model_from_cluster(xyz_cluster([policy("p", "x", spec)]), nodes=9)
    compiler = Compiler(model)
    compiler.compile_all()
    changes = compiler.update(model.set_endpoint_labels("y.c", {"pod": "c", "tier": "x"}))
    assert not changes  # y/c is no peer of the rule and selected by nothing
    changes = compiler.update(model.set_endpoint_labels("x.c", {"pod": "b"}))  # x/c becomes a peer of x/a's rule
    assert set(changes) == {model.endpoints["x.a"].node}


def test_a_rule_costs_a_sum_of_flows_not_a_product() -> None:
    spec = {
        "podSelector": {},  # x/a, x/b, x/c
        "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 80}, {"port": 81}, {"protocol": "UDP"}]}],
    }
    model = model_from_cluster(xyz_cluster([policy("p", "x", spec)]))
    state = Compiler(model).compile_all()["n0"]
    clause_flows = [f for f in state.flows() if any(isinstance(a, Conjunction) for a in f.actions)]
    assert len(clause_flows) == 3 + 9 + 3  # selected pods + peers + ports, not 3 * 9 * 3
    rule_flows = [f for f in state.flows() if split(f.cookie)[1] is Feature.NETPOL_RULE]
    assert len(rule_flows) == 1  # one allow flow, with the rule's own cookie: its counters


def trace(model: Model, src: str, dst: str, *, proto: str, dport: int | None = None) -> tuple[Trace, list[str]]:
    states = Compiler(model).compile_all()
    result = SimNetwork(model, states).send(
        src, to_endpoint(model, model.endpoints[src], model.endpoints[dst], proto=proto, dport=dport)
    )
    return result, explain(model, [(h.node, h.flow) for h in result.hops])


def test_a_trace_names_the_rule_that_allowed_and_the_isolation_that_dropped() -> None:
    spec = {"podSelector": {"matchLabels": {"pod": "a"}}, "ingress": [{"ports": [{"port": 81}]}]}
    model = model_from_cluster(
        xyz_cluster([policy("deny", "y", {"podSelector": {}}), policy("web", "x", spec)]), nodes=2
    )
    result, lines = trace(model, "y.b", "x.a", proto="tcp", dport=81)
    assert result.delivered_to == ["x.a"] and lines == ["ingress: allowed by x/web rule 0"]
    result, lines = trace(model, "y.b", "x.a", proto="tcp", dport=80)
    assert not result.delivered
    assert lines == ["ingress: dropped: x.a is isolated for ingress by x/web and none of their rules allows it"]
    result, lines = trace(model, "y.b", "y.a", proto="arp")  # ARP is never blocked, even under deny-all
    assert result.delivered_to == ["y.b"] and lines == []
    first, second = result.hops[0].flow, result.hops[1].flow
    assert first is not None and second is not None and ETH_TYPE_ARP in [v for _n, v, _m in second.match]


def test_an_ip_block_of_every_address_is_any_peer_with_no_zero_mask_field() -> None:
    # OVS stores a field with mask 0 as no field at all: a flow matching nw_src=0.0.0.0/0 would differ from
    # the switch's forever (tenetctl flows), and 0.0.0.0/0 is every address, so it is the any-IP clause.
    every = {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 80}]}]}
    out = {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}
    cluster = xyz_cluster([policy("every", "x", every), policy("out", "y", out)])
    model = model_from_cluster(cluster, nodes=2)
    states = Compiler(model).compile_all()
    for state in states.values():
        for flow in state.flows():
            PIPELINE.verify(flow)
            assert all(mask != 0 for _name, _value, mask in flow.match), flow
    for probe, got in matrix.run(model, states, matrix.probes(model, (80, 81), ("tcp", "udp"))):
        want = allowed(cluster, pod_of(probe.source), pod_of(probe.destination), probe.protocol.upper(), probe.port)
        assert got == want, probe
