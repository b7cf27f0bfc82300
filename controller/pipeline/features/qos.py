"""QoS: one OpenFlow meter per profile attachment; an endpoint's traffic passes its meter."""

from __future__ import annotations

from controller.pipeline.ir import Flow, Meter, match
from controller.pipeline.tables import PIPELINE
from topology.model import Endpoint, QosAttachment, QosProfile

PRIORITY = 100


def meter(attachment: QosAttachment, profile: QosProfile) -> Meter:
    return Meter(attachment.meter_id, profile.rate_kbps, profile.burst_kb)


def meter_port(endpoint: Endpoint, attachment: QosAttachment, *, cookie: int) -> Flow:
    return PIPELINE.verify(
        Flow(
            "qos",
            PRIORITY,
            match(in_port=endpoint.ofport),
            meter=attachment.meter_id,
            goto="egress_policy",
            cookie=cookie,
        )
    )
