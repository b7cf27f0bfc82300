"""Flows using conntrack, NAT, conjunctions, masked register writes and the policy match fields: every new
shape once, for the encoding, reading-back and text tests."""

from __future__ import annotations

from controller.pipeline import cookies
from controller.pipeline.cookies import Feature
from controller.pipeline.fields import CT_ZONE, EGRESS_ALLOW, EGRESS_RULE, INGRESS_DENY, INGRESS_RULE, NETWORK
from controller.pipeline.ir import (
    ETH_TYPE_IP,
    IP_PROTO,
    Conjunction,
    Ct,
    CtClear,
    Flow,
    Nat,
    SetField,
    ct_state,
    match,
)

IP = {"eth_type": ETH_TYPE_IP}
SNAT_LOW, SNAT_HIGH, DNAT_TO = 0xC0A80A01, 0xC0A80A04, 0x0A000107
COOKIE = cookies.cookie(Feature.PORT, 9)


def ct_flows() -> list[Flow]:
    """One flow per new shape, all valid in the pipeline and accepted by OVS."""
    return [
        Flow(
            "egress_policy",
            300,
            match(**NETWORK.match(1), ct_state=ct_state(trk=False), **IP),
            (Ct(zone=CT_ZONE, table="l3_gateway"),),
            cookie=COOKIE,
        ),
        Flow(
            "egress_policy",
            290,
            match(**NETWORK.match(1), ct_state=ct_state(trk=True, new=True, inv=False), **IP, ip_proto=6, tcp_src=999),
            (
                Ct(
                    commit=True,
                    zone=CT_ZONE,
                    nat=Nat("src", SNAT_LOW, SNAT_HIGH, 1024, 2047, persistent=True, random=True),
                    exec_=(SetField("ct_mark", 1), SetField("ct_label", 5)),
                ),
                EGRESS_ALLOW.set(),
                EGRESS_RULE.set(77),
            ),
            goto="l3_gateway",
            cookie=COOKIE,
        ),
        Flow(
            "egress_policy",
            280,
            match(ct_state=ct_state(trk=True, new=True), **IP, ipv4_dst=DNAT_TO),
            (Ct(commit=True, zone=7, nat=Nat("dst", DNAT_TO)),),
            goto="l3_gateway",
            cookie=COOKIE,
        ),
        Flow(
            "egress_policy",
            200,
            match(**IP, ipv4_src=(0x0A000000, 0xFFFFFF00)),
            (Conjunction(10, 1, 2),),
            cookie=COOKIE,
        ),
        Flow(
            "egress_policy",
            200,
            match(**IP, ip_proto=IP_PROTO["udp"], udp_src=53, udp_dst=(0x1000, 0xF000)),
            (Conjunction(10, 2, 2), Conjunction(11, 2, 3)),
            cookie=COOKIE,
        ),
        Flow(
            "egress_policy",
            200,
            match(conj_id=10, **IP),
            (EGRESS_RULE.set(10), SetField("reg2", 0x10, 0x30)),
            goto="l3_gateway",
            cookie=COOKIE,
        ),
        Flow(
            "ingress_policy",
            300,
            match(ct_state=ct_state(trk=True, est=True, rpl=True), ct_zone=1, ct_mark=(1, 1), ct_label=(5, 0xFF), **IP),
            (CtClear(), Ct(zone=CT_ZONE, table="output", nat=Nat())),
            cookie=COOKIE,
        ),
        Flow(
            "ingress_policy",
            200,
            match(**IP, ip_proto=IP_PROTO["sctp"], sctp_src=5, sctp_dst=(0x100, 0xFF00)),
            (Conjunction(12, 1, 2),),
            cookie=COOKIE,
        ),
        Flow(
            "ingress_policy",
            190,
            match(**IP, ip_proto=IP_PROTO["tcp"], tcp_dst=(0x50, 0xFFF0)),
            (INGRESS_DENY.set(), INGRESS_RULE.set(12)),
            cookie=COOKIE,
        ),
    ]
