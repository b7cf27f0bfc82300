"""IR -> `ovs-ofctl` text: for people (`tenetctl compile`) and for `ovs-ofctl -O OpenFlow13 add-flows`.

With `names=True` tables appear by name (`table=l2`, `goto_table:ingress_policy`), which reads well but only
Tenet understands; with `names=False` they are numeric ids and the text is valid `ovs-ofctl` input.
This module imports no os-ken, so the CLI can render flows without it; the value helpers here are shared
with `controller.openflow.messages`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

from controller.pipeline import cookies
from controller.pipeline.fields import RegField
from controller.pipeline.ir import (
    OFPP_IN_PORT,
    OFPVID_NONE,
    OFPVID_PRESENT,
    Action,
    Conjunction,
    Ct,
    CtClear,
    DecTtl,
    Flow,
    Group,
    Match,
    MatchItem,
    Meter,
    Move,
    Nat,
    Output,
    OutputReg,
    PopVlan,
    PushVlan,
    SetField,
    ToGroup,
)
from controller.pipeline.tables import PIPELINE

MAC_FIELDS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
IPV4_FIELDS = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"})

_REG = re.compile(r"reg(\d+)")
_FIELD_BITS = {
    "eth_src": 48,
    "eth_dst": 48,
    "arp_sha": 48,
    "arp_tha": 48,
    "ipv4_src": 32,
    "ipv4_dst": 32,
    "arp_spa": 32,
    "arp_tpa": 32,
    "tun_ipv4_src": 32,
    "tun_ipv4_dst": 32,
    "tunnel_id": 64,
}
# OVS spells these OXM fields its own way; the rest (eth_dst, arp_tpa, reg0, tcp_dst, ...) it accepts as is.
_OVS_NAMES = {
    "tunnel_id": "tun_id",
    "tun_ipv4_src": "tun_src",
    "tun_ipv4_dst": "tun_dst",
    "ipv4_src": "nw_src",
    "ipv4_dst": "nw_dst",
    "ip_proto": "nw_proto",
}
# Names for move:, which takes NXM field names rather than OXM ones.
_NXM_NAMES = {
    "eth_src": "NXM_OF_ETH_SRC",
    "eth_dst": "NXM_OF_ETH_DST",
    "ipv4_src": "NXM_OF_IP_SRC",
    "ipv4_dst": "NXM_OF_IP_DST",
    "arp_spa": "NXM_OF_ARP_SPA",
    "arp_tpa": "NXM_OF_ARP_TPA",
    "arp_sha": "NXM_NX_ARP_SHA",
    "arp_tha": "NXM_NX_ARP_THA",
    "tunnel_id": "NXM_NX_TUN_ID",
    "tun_ipv4_src": "NXM_NX_TUN_IPV4_SRC",
    "tun_ipv4_dst": "NXM_NX_TUN_IPV4_DST",
}
# Small integers read better in decimal; everything else is hex.
_DECIMAL_FIELDS = frozenset(
    {"in_port", "ip_proto", "arp_op", "tcp_src", "tcp_dst", "udp_src", "udp_dst", "sctp_src", "sctp_dst"}
    | {"ct_zone", "conj_id"}
)
_CT_STATE_NAMES = ("new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat")  # bit 0 up, as OVS prints them
# Matches print where the packet came in, then the registers ("regN"), then the packet from the outside in.
_MATCH_ORDER_NAMES = (
    "in_port",
    "tunnel_id",
    "tun_ipv4_src",
    "tun_ipv4_dst",
    "vlan_vid",
    "regN",
    "conj_id",
    "ct_state",
    "ct_zone",
    "ct_mark",
    "ct_label",
    "eth_src",
    "eth_dst",
    "eth_type",
    "arp_op",
    "arp_spa",
    "arp_tpa",
    "arp_sha",
    "arp_tha",
    "ipv4_src",
    "ipv4_dst",
    "ip_proto",
    "tcp_src",
    "tcp_dst",
    "udp_src",
    "udp_dst",
    "sctp_src",
    "sctp_dst",
)
_MATCH_ORDER = {name: rank for rank, name in enumerate(_MATCH_ORDER_NAMES)}
_VLAN_VID_MASK = OFPVID_PRESENT | 0x0FFF


def mac_text(value: int) -> str:
    if not 0 <= value < 1 << 48:
        raise ValueError(f"MAC {value:#x} does not fit in 48 bits")
    return ":".join(f"{octet:02x}" for octet in value.to_bytes(6, "big"))


def ipv4_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def user_value(field: str, value: int) -> int | str:
    """The value as os-ken's OFPMatch and OFPActionSetField want it: MACs and IPv4 addresses as text."""
    if field in MAC_FIELDS:
        return mac_text(value)
    if field in IPV4_FIELDS:
        return ipv4_text(value)
    return value


def field_bits(field: str) -> int:
    """Width of a whole field, for a Move of all of it."""
    if _REG.fullmatch(field):
        return 32
    try:
        return _FIELD_BITS[field]
    except KeyError:
        raise ValueError(f"field {field!r}: width unknown, cannot move it") from None


def move_bits(action: Move) -> int:
    """Bits a Move copies; both fields must be the same width."""
    src, dst = field_bits(action.src), field_bits(action.dst)
    if src != dst:
        raise ValueError(f"move {action.src} ({src} bits) -> {action.dst} ({dst} bits): widths differ")
    return src


def nxm_name(field: str) -> str:
    reg = _REG.fullmatch(field)
    if reg:
        return f"NXM_NX_REG{reg.group(1)}"
    try:
        return _NXM_NAMES[field]
    except KeyError:
        raise ValueError(f"field {field!r}: no NXM name") from None


def _ovs_name(field: str) -> str:
    return _OVS_NAMES.get(field, field)


def _value_text(field: str, value: int) -> str:
    if field in MAC_FIELDS:
        return mac_text(value)
    if field in IPV4_FIELDS:
        return ipv4_text(value)
    if field in _DECIMAL_FIELDS:
        return str(value)
    if field == "eth_type":
        return f"0x{value:04x}"
    return hex(value)


def _vlan_match_text(value: int, mask: int | None) -> str:
    # OpenFlow 1.3 vlan_vid carries the VLAN-present bit; OVS text spells it through vlan_tci (same low 13 bits).
    if mask is None and value & OFPVID_PRESENT:
        return f"dl_vlan={value & 0x0FFF}"
    if mask is None and value == OFPVID_NONE:
        return "vlan_tci=0x0000/0x1fff"
    return f"vlan_tci=0x{value:04x}/0x{(_VLAN_VID_MASK if mask is None else mask):04x}"


def _ct_state_text(value: int, mask: int) -> str:
    """A masked ct_state as OVS flags (`+trk+new-est`); hex if the mask holds bits without a name."""
    if mask >> len(_CT_STATE_NAMES):
        return f"{value:#x}/{mask:#x}"
    return "".join(("+" if value >> i & 1 else "-") + name for i, name in enumerate(_CT_STATE_NAMES) if mask >> i & 1)


def _match_order(item: MatchItem) -> tuple[int, int, str]:
    field = item[0]
    reg = _REG.fullmatch(field)
    if reg:
        return (_MATCH_ORDER["regN"], int(reg.group(1)), field)
    return (_MATCH_ORDER.get(field, len(_MATCH_ORDER)), 0, field)


def match_text(match: Match) -> str:
    """The match in ovs-ofctl syntax, in a reading order (ovs-ofctl itself does not care about order)."""
    parts = []
    for field, value, mask in sorted(match, key=_match_order):
        if field == "vlan_vid":
            parts.append(_vlan_match_text(value, mask))
        elif field == "ct_state" and mask is not None:
            parts.append(f"ct_state={_ct_state_text(value, mask)}")
        elif mask is None:
            parts.append(f"{_ovs_name(field)}={_value_text(field, value)}")
        else:
            parts.append(f"{_ovs_name(field)}={_value_text(field, value)}/{_value_text(field, mask)}")
    return ",".join(parts)


def _zone_text(zone: int | RegField) -> str:
    if isinstance(zone, int):
        return str(zone)
    return f"{nxm_name(zone.register)}[{zone.start}..{zone.end}]"


def nat_text(nat: Nat) -> str:
    """OVS's `nat(src=10.0.0.1-10.0.0.9:1024-2047,persistent,random)`; a bare `nat` un-NATs."""
    if nat.kind is None:
        return "nat"
    assert nat.addr_min is not None  # Nat requires it with a kind
    text = f"{nat.kind}={ipv4_text(nat.addr_min)}"
    if nat.addr_max is not None:
        text += f"-{ipv4_text(nat.addr_max)}"
    if nat.port_min is not None:
        text += f":{nat.port_min}" + ("" if nat.port_max is None else f"-{nat.port_max}")
    flags = ["persistent"] * nat.persistent + ["random"] * nat.random
    return f"nat({','.join([text, *flags])})"


def ct_text(ct: Ct, *, names: bool = False) -> str:
    """OVS's `ct(commit,table=5,zone=NXM_NX_REG0[0..15],nat(...),exec(set_field:0x1->ct_mark))`."""
    parts = ["commit"] if ct.commit else []
    if ct.table is not None:
        parts.append(f"table={_table_text(ct.table, names)}")
    if ct.zone != 0:
        parts.append(f"zone={_zone_text(ct.zone)}")
    if ct.nat is not None:
        parts.append(nat_text(ct.nat))
    if ct.exec_:
        parts.append(f"exec({','.join(action_text(a) for a in ct.exec_)})")
    return f"ct({','.join(parts)})"


def action_text(action: Action, *, names: bool = False) -> str:
    """One action in ovs-ofctl syntax; with `names` a ct(table=...) names its table (Tenet-only text)."""
    match action:
        case Output(port=port):
            return "output:in_port" if port == OFPP_IN_PORT else f"output:{port}"
        case OutputReg(field=field):
            return f"output:{nxm_name(field)}[]"
        case SetField(field=field, value=value, mask=None):
            return f"set_field:{_value_text(field, value)}->{_ovs_name(field)}"
        case SetField(field=field, value=value, mask=int(mask)):
            return f"set_field:{_value_text(field, value)}/{_value_text(field, mask)}->{_ovs_name(field)}"
        case Ct():
            return ct_text(action, names=names)
        case CtClear():
            return "ct_clear"
        case Conjunction(conj_id=conj_id, clause=clause, n_clauses=n_clauses):
            return f"conjunction({conj_id},{clause}/{n_clauses})"
        case PushVlan(ethertype=ethertype):
            return f"push_vlan:0x{ethertype:04x}"
        case PopVlan():
            return "pop_vlan"
        case ToGroup(group_id=group_id):
            return f"group:{group_id}"
        case DecTtl():
            return "dec_ttl"
        case Move(src=src, dst=dst):
            move_bits(action)
            return f"move:{nxm_name(src)}[]->{nxm_name(dst)}[]"
    raise TypeError(f"unknown action {action!r}")


def actions_text(actions: Iterable[Action]) -> str:
    return ",".join(action_text(a) for a in actions) or "drop"


def _table_text(name: str, names: bool) -> str:
    return name if names else str(PIPELINE.table_id(name))


def flow_text(flow: Flow, *, names: bool = True, round_: int = 0) -> str:
    """One flow as `ovs-ofctl add-flow` text; instructions in OpenFlow order: meter, actions, goto."""
    head = [f"cookie={cookies.with_round(flow.cookie, round_):#x}", f"table={_table_text(flow.table, names)}"]
    head.append(f"priority={flow.priority}")
    if flow.match:
        head.append(match_text(flow.match))
    steps = [] if flow.meter is None else [f"meter:{flow.meter}"]
    steps.extend(action_text(a, names=names) for a in flow.actions)
    if flow.goto is not None:
        steps.append(f"goto_table:{_table_text(flow.goto, names)}")
    return f"{','.join(head)} actions={','.join(steps) or 'drop'}"


def group_text(group: Group) -> str:
    """A group as `ovs-ofctl add-group` text: type all, one bucket per copy."""
    buckets = "".join(f",bucket=actions={actions_text(bucket)}" for bucket in group.buckets)
    return f"group_id={group.group_id},type=all{buckets}"


def meter_text(meter: Meter) -> str:
    """A meter as `ovs-ofctl add-meter` text: kbit/s with a burst, one drop band."""
    return f"meter={meter.meter_id},kbps,burst,bands=type=drop,rate={meter.rate_kbps},burst_size={meter.burst_kb}"


def _match_key(match: Match) -> tuple[tuple[str, int, int], ...]:
    # A mask of None sorts before any real mask, so mixed matches still compare.
    return tuple((field, value, -1 if mask is None else mask) for field, value, mask in match)


def render_state(
    flows: Iterable[Flow], groups: Iterable[Group], meters: Iterable[Meter], *, names: bool = True, round_: int = 0
) -> str:
    """Everything a switch should hold, one item a line, in a stable order: meters, groups, then flows by
    table, descending priority and match."""
    lines = [meter_text(m) for m in sorted(meters, key=lambda m: m.meter_id)]
    lines += [group_text(g) for g in sorted(groups, key=lambda g: g.group_id)]
    rendered = [(f, flow_text(f, names=names, round_=round_)) for f in flows]
    rendered.sort(
        key=lambda pair: (PIPELINE.table_id(pair[0].table), -pair[0].priority, _match_key(pair[0].match), pair[1])
    )
    lines += [text for _flow, text in rendered]
    return "".join(f"{line}\n" for line in lines)
