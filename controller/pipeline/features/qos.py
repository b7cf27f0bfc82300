"""QoS: OpenFlow meters per endpoint and direction.

A profile attached to a network or an endpoint caps each endpoint it covers separately: every endpoint gets
its own meter on its node's switch, one for what it sends (egress, metered in table qos as it enters the
pipeline) and one for what it receives (ingress, metered in table output as it leaves for the pod), as the
profile's direction asks. OpenFlow meters belong to one switch, so a cap shared by a whole network, or by
the endpoints of one node, is not what a profile means.

Meter ids follow from the endpoint's ofport, which is unique on its node: egress = ofport, ingress =
ofport + 0x10000. Rates are in kbit/s, bursts in kbit (OFPMF_KBPS | OFPMF_BURST, one drop band).
"""

from __future__ import annotations

from controller.pipeline.fields import OUT_PORT
from controller.pipeline.ir import Flow, Meter, OutputReg, match
from controller.pipeline.tables import PIPELINE
from topology.model import Endpoint, QosProfile

PRIORITY = 100
INGRESS_PRIORITY = 200  # above the plain delivery in table output
INGRESS_METER_BASE = 0x10000  # ofports end at 0xff00, meter ids at 0xffff0000


def egress_meter_id(endpoint: Endpoint) -> int:
    return endpoint.ofport


def ingress_meter_id(endpoint: Endpoint) -> int:
    return INGRESS_METER_BASE + endpoint.ofport


def meters(endpoint: Endpoint, profile: QosProfile) -> tuple[Meter, ...]:
    """The endpoint's meters under `profile`: egress, ingress or both."""
    found = []
    if profile.direction in ("egress", "both"):
        found.append(Meter(egress_meter_id(endpoint), profile.rate_kbps, profile.burst_kb))
    if profile.direction in ("ingress", "both"):
        found.append(Meter(ingress_meter_id(endpoint), profile.rate_kbps, profile.burst_kb))
    return tuple(found)


def meter_flows(endpoint: Endpoint, profile: QosProfile, *, cookie: int) -> list[Flow]:
    """What sends the endpoint's traffic through its meters."""
    flows = []
    if profile.direction in ("egress", "both"):
        egress = Flow(
            "qos",
            PRIORITY,
            match(in_port=endpoint.ofport),
            meter=egress_meter_id(endpoint),
            goto="egress_policy",
            cookie=cookie,
        )
        flows.append(PIPELINE.verify(egress))
    if profile.direction in ("ingress", "both"):
        ingress = Flow(
            "output",
            INGRESS_PRIORITY,
            match(**{OUT_PORT.register: endpoint.ofport}),
            (OutputReg(OUT_PORT.register),),
            meter=ingress_meter_id(endpoint),
            cookie=cookie,
        )
        flows.append(PIPELINE.verify(ingress))
    return flows
