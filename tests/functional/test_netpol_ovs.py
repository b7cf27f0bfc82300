"""NetworkPolicy flows on a real userspace br-int: the compiled policy sections of a node, with conntrack
recirculating into its own table and rules as shared conjunctive matches, decide as the reference model.

The node's policy flows are installed as compiled; small harness flows stand in for the rest of the
pipeline (classify sets tenant and network, l3_gateway sets the destination's port, output counts a
delivery). Each probe is a UDP request by packet-out, then its answer; a connection is allowed when both are
delivered (the delivery flow's counter moved)."""

from __future__ import annotations

import re

import pytest

from controller.openflow.ofctl import render_state
from controller.pipeline.compile import Compiler
from controller.pipeline.cookies import split
from controller.pipeline.features import netpol
from controller.pipeline.fields import NETWORK, OUT_PORT, TENANT
from controller.pipeline.ir import ETH_TYPE_IP, Flow, match
from lab.ovs import OvsNode
from tests.functional.test_conntrack_semantics import udp_frame
from tests.netpol_reference import allowed, xyz_cluster
from tests.netpol_scenarios import SCENARIOS, Scenario
from tests.unit.netpol_support import endpoint_id, model_from_cluster
from topology.model import Model

DELIVERED = 7  # the cookie of the harness's delivery flow
NAMES = ("default-deny-all", "ingress-named-port-udp", "egress-ip-block-except", "ingress-from-pod-in-any-namespace")
CHOSEN = [s for s in SCENARIOS if s.name in NAMES]
PODS = ["x/a", "x/b", "y/a", "z/c"]


def harness(model: Model) -> list[Flow]:
    flows = []
    for endpoint in model.endpoints.values():
        network = model.networks[endpoint.network]
        tenant = model.tenants[endpoint.tenant].id
        enter = (NETWORK.set(network.id), TENANT.set(tenant))
        ip = {"eth_type": ETH_TYPE_IP}
        flows.append(
            Flow("classify", 10, match(**ip, ipv4_src=int(endpoint.ip)), enter, goto="egress_policy", cookie=1)
        )
        port = (OUT_PORT.set(endpoint.ofport),)
        flows.append(
            Flow("l3_gateway", 10, match(**ip, ipv4_dst=int(endpoint.ip)), port, goto="ingress_policy", cookie=2)
        )
    flows.append(Flow("output", 10, (), cookie=DELIVERED))
    return flows


def delivered(node: OvsNode) -> int:
    found = re.search(rf"cookie={DELIVERED:#x},.*?n_packets=(\d+)", node.ofctl("dump-flows"))
    assert found is not None
    return int(found.group(1))


@pytest.mark.parametrize("scenario", CHOSEN, ids=[s.name for s in CHOSEN])
def test_policy_flows_on_open_vswitch_decide_as_the_reference(ovs_node: OvsNode, scenario: Scenario) -> None:
    cluster = xyz_cluster(scenario.policies)
    model = model_from_cluster(cluster)
    state = Compiler(model).compile_all()["n0"]
    policy = [f for f in state.flows() if split(f.cookie)[1] in netpol.FEATURES]
    assert policy, "the scenario isolates some pod"
    ovs_node.vsctl(
        "add-br", "br-int", "--", "set", "bridge", "br-int", "datapath_type=netdev", "protocols=OpenFlow13",
        "fail_mode=secure",
    )  # fmt: skip
    flows_file = ovs_node.dir / "netpol-flows.txt"
    flows_file.write_text(render_state([*policy, *harness(model)], [], [], names=False))
    ovs_node.ofctl("add-flows", str(flows_file))
    sport, wrong = 2000, []
    for src in PODS:
        for dst in PODS:
            if src == dst:
                continue
            for port in (80, 81):
                a, b = model.endpoints[endpoint_id(src)].ip, model.endpoints[endpoint_id(dst)].ip
                before = delivered(ovs_node)
                ovs_node.ofctl("packet-out", "LOCAL", "resubmit(,0)", udp_frame(int(a), int(b), sport, port).hex())
                ovs_node.ofctl("packet-out", "LOCAL", "resubmit(,0)", udp_frame(int(b), int(a), port, sport).hex())
                got = delivered(ovs_node) - before == 2
                if got != allowed(cluster, src, dst, "UDP", port):
                    wrong.append((src, dst, port, got))
                sport += 1
    assert not wrong
