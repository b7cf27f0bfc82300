"""The gateway port's iptables rules from the controller's GET /v1/gateway answer (agent/gateway.py)."""

from __future__ import annotations

from ipaddress import IPv4Address

from agent.gateway import plan_from

DOC = {
    "cluster_network": "default/pods",
    "cluster_subnet": "10.244.0.0/16",
    "transit_subnet": "100.64.0.0/16",
    "gateway": "10.244.0.1",
    "mtu": 1450,
    "node_ports": [{"network": "red/net", "transit_ip": "100.64.0.3", "ports": ["tcp/53", "udp/53"]}],
}


def test_input_accepts_a_networks_transit_address_to_its_node_ports_only_then_drops() -> None:
    plan = plan_from(DOC, IPv4Address("192.168.100.1"))
    assert plan is not None
    accept = "-i tenet-gw0 -s 100.64.0.3/32 -d 192.168.100.1/32 -p {} --dport 53 -j ACCEPT"
    assert [" ".join(rule) for _table, _chain, rule in plan.input_rules()] == [
        accept.format("tcp"),
        accept.format("udp"),
        "-i tenet-gw0 -s 100.64.0.0/16 -j DROP",
    ]
    assert plan.rules()[-3:] == plan.input_rules()


def test_no_node_ports_means_input_drops_the_transit_subnet() -> None:
    plan = plan_from({**DOC, "node_ports": []}, IPv4Address("192.168.100.1"))
    older = plan_from({k: v for k, v in DOC.items() if k != "node_ports"}, IPv4Address("192.168.100.1"))
    assert plan is not None and older is not None
    assert (
        plan.input_rules()
        == older.input_rules()
        == [("filter", "TENET-INPUT", ("-i", "tenet-gw0", "-s", "100.64.0.0/16", "-j", "DROP"))]
    )
