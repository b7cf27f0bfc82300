"""Registers as named bit ranges: the layout, marks, and the declared ranges `PIPELINE.verify` enforces."""

from __future__ import annotations

import pytest

from controller.pipeline import fields
from controller.pipeline.fields import (
    CT_ZONE,
    EGRESS_ALLOW,
    EGRESS_VERDICT,
    FROM_REMOTE,
    INGRESS_DENY,
    NETWORK,
    OUT_PORT,
    TENANT,
    RegField,
    RegMark,
)
from controller.pipeline.ir import Conjunction, Ct, CtClear, Nat, SetField, match, port_range
from controller.pipeline.ir import Flow as F
from controller.pipeline.tables import PIPELINE, PipelineError, _table


def test_todays_fields_keep_their_bits() -> None:
    assert (NETWORK.register, NETWORK.start, NETWORK.end) == ("reg0", 0, 15)
    assert (TENANT.register, TENANT.start, TENANT.end) == ("reg1", 0, 23)
    assert (FROM_REMOTE.register, FROM_REMOTE.mask, fields.FLAG_FROM_REMOTE) == ("reg2", 1, 1)
    assert (OUT_PORT.register, OUT_PORT.mask) == ("reg3", 0xFFFF)


def test_fields_of_one_register_do_not_overlap_unless_one_is_a_view_of_the_other() -> None:
    views = {(CT_ZONE.name, NETWORK.name)} | {(f.name, fields.FLAGS.name) for f in fields.ALL_FIELDS}
    for a in fields.ALL_FIELDS:
        for b in fields.ALL_FIELDS:
            if a is not b and a.register == b.register and a.mask & b.mask:
                assert (a.name, b.name) in views or (b.name, a.name) in views, (a, b)
    assert len(fields.BY_NAME) == len(fields.ALL_FIELDS)
    assert all(f.doc for f in fields.ALL_FIELDS)


def test_a_field_builds_masked_matches_and_set_fields_of_its_range() -> None:
    assert EGRESS_VERDICT.match(2) == {"reg2": (0x20, 0x30)}
    assert EGRESS_VERDICT.set(2) == SetField("reg2", 0x20, 0x30)
    assert EGRESS_ALLOW.set() == SetField("reg2", 0x10, 0x30) and INGRESS_DENY.match() == {"reg2": (0x80, 0xC0)}
    assert fields.EGRESS_RULE.set(7) == SetField("reg4", 7)  # the whole register: no mask
    assert fields.EGRESS_RULE.match(7) == {"reg4": 7}
    assert match(**EGRESS_ALLOW.match(), **NETWORK.match(3)) == (("reg0", 3, 0xFFFF), ("reg2", 0x10, 0x30))


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (lambda: EGRESS_VERDICT.set(4), "does not fit in 2 bits"),
        (lambda: RegMark(FROM_REMOTE, 2), "does not fit in 1 bits"),
        (lambda: RegField("x", "reg9", 30, 32), "outside a 32-bit register"),
        (lambda: SetField("reg2", 0x40, 0x30), "bits outside mask"),
        (lambda: Ct(zone=70000), "outside 0..65535"),
        (lambda: Ct(exec_=(SetField("ct_mark", 1),)), "needs commit"),
        (lambda: Ct(commit=True, exec_=(SetField("reg0", 1),)), "only set_field of ct_mark"),
        (lambda: Ct(zone=TENANT), "wider than 16 bits"),
        (lambda: Nat(None, 1), "takes no range"),
        (lambda: Nat("src"), "address is required"),
        (lambda: Nat("src", 1, None, 2000, 1000), "port_max"),
        (lambda: Conjunction(1, 3, 2), "is not k/n"),
        (lambda: Conjunction(1, 1, 1), "is not k/n"),
        (lambda: port_range(5, 4), "expected 0 <= low <= high"),
    ],
)
def test_bad_values_name_what_is_wrong(make, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        make()


@pytest.mark.parametrize(
    ("flow", "complaint"),
    [
        # l2 declares from_remote (reg2 bit 0) only
        (F("l2", 1, match(reg2=(2, 2), eth_dst=1)), r"may match only bits 0x1 of reg2, not 0x2"),
        (F("l2", 1, match(reg2=1, eth_dst=1)), "may match only bits 0x1 of reg2"),  # whole register
        # egress_policy sets egress_verdict (reg2[4..5]) and egress_rule, not the ingress verdict
        (F("egress_policy", 1, (), (INGRESS_DENY.set(),)), r"may set only bits 0x30 of reg2, not 0xc0"),
        (F("egress_policy", 1, (), (SetField("reg2", 0x10),)), "may set only bits 0x30 of reg2"),
        (F("egress_policy", 1, (), (SetField("reg3", 1),)), "does not set 'reg3'"),
        (F("egress_policy", 1, (), (Ct(table="output"),)), "ct may not continue in 'output'"),
        (F("l2", 1, (), (Ct(),)), "does not allow Ct"),
        (F("l2", 1, (), (Conjunction(1, 1, 2),)), "does not allow Conjunction"),
        (F("qos", 1, match(ct_state=(0x20, 0x20))), "does not match on 'ct_state'"),
        (F("egress_policy", 1, (), (Conjunction(1, 1, 2), CtClear())), "only conjunction actions"),
        (F("egress_policy", 1, (), (Conjunction(1, 1, 2),), goto="l3_gateway"), "only conjunction actions"),
        (F("l3_route", 1, match(reg1=(1 << 24, 1 << 24))), "may match only bits 0xffffff of reg1"),
    ],
)
def test_flows_outside_their_declared_ranges_are_rejected(flow: F, complaint: str) -> None:
    with pytest.raises(PipelineError, match=complaint):
        PIPELINE.verify(flow)


def test_flows_inside_their_declared_ranges_pass() -> None:
    ok = [
        F("l2", 1, match(**FROM_REMOTE.match(1), **NETWORK.match(2), eth_dst=1)),
        F("l2", 1, match(reg0=2, eth_dst=1)),  # unmasked: network is all of reg0's fields
        F("classify", 1, match(in_port=1), (SetField("reg2", 1), SetField("reg1", 7))),  # flags whole
        F("egress_policy", 1, match(**NETWORK.match(1)), (EGRESS_ALLOW.set(), fields.EGRESS_RULE.set(3))),
        F(
            "egress_policy",
            1,
            match(eth_type=0x800),
            (Ct(True, CT_ZONE, "l3_gateway", exec_=(SetField("ct_mark", 1),)),),
        ),
        F("ingress_policy", 1, match(eth_type=0x800), (Ct(zone=CT_ZONE, table="output"),)),
    ]
    for flow in ok:
        assert PIPELINE.verify(flow) is flow


def test_a_whole_register_write_must_own_every_field_in_it() -> None:
    table = _table("t", "", matches="", sets="from_remote")
    assert table.set_bits == (("reg2", 1),) and "reg2" in table.sets
    whole = _table("t", "", matches="reg7 network", sets="flags")
    assert dict(whole.match_bits) == {"reg7": 0xFFFFFFFF, "reg0": 0xFFFF}
    assert dict(whole.set_bits) == {"reg2": 0xFFFFFFFF}
