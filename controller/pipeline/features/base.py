"""Flows every br-int has: an explicit miss for each table, and delivery to the port l2 chose."""

from __future__ import annotations

from controller.pipeline.cookies import Feature, cookie
from controller.pipeline.fields import OUT_PORT
from controller.pipeline.ir import Flow, OutputReg
from controller.pipeline.tables import PIPELINE

PIPELINE_COOKIE = cookie(Feature.PIPELINE, 0)


def base_flows() -> tuple[Flow, ...]:
    deliver = Flow("output", 100, (), (OutputReg(OUT_PORT.register),), cookie=PIPELINE_COOKIE)
    return (*PIPELINE.miss_flows(PIPELINE_COOKIE), PIPELINE.verify(deliver))
