"""The OpenFlow app when a node re-registers with another datapath id: the old switch's session stops
resyncing (it is no node's), and comes back only when a node claims it again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.app.osken_app import Runtime, TenetApp
from controller.service import Service
from controller.store.sqlite import SqliteStore
from lab.ovs import wait_for
from tests.unit.test_session import EMPTY_REPLIES, ScriptedSwitch, error, port, reply


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TenetApp]:
    store = SqliteStore(tmp_path / "t.db")
    service = Service(store)
    service.create_tenant("blue")
    service.create_network("blue", "web", encap="vxlan", segment=100, subnet="10.0.0.0/24")
    service.register_node("node1", tunnel_ip="192.168.50.1")
    service.create_endpoint("b1", network="blue/web", node="node1")
    Runtime.service = service
    made = TenetApp()
    yield made
    for session in list(made.sessions.values()):
        session.close()
    Runtime.service = None
    store.close()


def switch(app: TenetApp, dpid: int, refuse: list[bool], ports: list[Any] | None = None) -> ScriptedSwitch:
    """A switch that answers as OVS does, with `ports` (OFPPort) as its port descriptions; it refuses bundle
    commits while `refuse[0]`."""

    def answer(msg: Any) -> None:
        session = app.sessions[dpid]
        if isinstance(msg, parser.OFPPortDescStatsRequest):
            session.deliver(reply(parser.OFPPortDescStatsReply, msg, ports or []))
        elif type(msg) in EMPTY_REPLIES:
            session.deliver(reply(EMPTY_REPLIES[type(msg)], msg, []))
        elif isinstance(msg, parser.ONFBundleCtrlMsg) and msg.type == ofp.ONF_BCT_COMMIT_REQUEST and refuse[0]:
            session.error(error(msg, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_EPERM))
        elif isinstance(msg, parser.OFPBarrierRequest | parser.OFPEchoRequest | parser.ONFBundleCtrlMsg):
            done = parser.OFPBarrierReply(msg.datapath)
            done.xid = msg.xid
            session.deliver(done)

    dp = ScriptedSwitch(answer)
    dp.id = dpid
    return dp


def test_a_session_in_backoff_whose_node_moved_to_another_datapath_id_stops_resyncing(app: TenetApp) -> None:
    old = app.service.model.nodes["node1"].datapath_id
    refuse = [True]
    app._adopt(switch(app, old, refuse))
    session = app.sessions[old]
    wait_for(lambda: session.resyncs >= 2, timeout=10, what="resyncs after a refused commit")
    app.service.register_node("node1", tunnel_ip="192.168.50.1", datapath_id=0x1234)
    refuse[0] = False
    assert session.node is None and not session.resync_pending
    count = session.resyncs
    # a resync already running finds the switch is no node's and parks it; none follows
    wait_for(lambda: session.queued() == 0, timeout=10, what="the session's queue drained")
    app.service.register_node("node2", tunnel_ip="192.168.50.2")  # a change that is published
    wait_for(lambda: session.queued() == 0, timeout=10, what="the session's queue drained")
    assert session.resyncs <= count + 1 and not session.resync_pending and session.node is None
    assert app.status("node1") == {"connected": False}
    # given back its old id, node1 claims the switch again
    app.service.register_node("node1", tunnel_ip="192.168.50.1", datapath_id=old)
    wait_for(lambda: session.node == "node1" and session.in_sync is True, timeout=10, what="re-adopted")


def test_a_new_datapath_id_does_not_hand_a_node_another_hosts_connected_switch(app: TenetApp) -> None:
    old = app.service.model.nodes["node1"].datapath_id
    own = switch(app, old, [False])
    own.address = ("192.168.50.1", 40000)
    app._adopt(own)
    other_id = 0x7E_0000_C0A8_3203
    other = switch(app, other_id, [False])
    other.address = ("192.168.50.3", 40001)  # node3's switch, connected before node3 registered
    app._adopt(other)
    wait_for(lambda: app.sessions[old].in_sync is True, timeout=10, what="node1's switch in sync")
    app.service.register_node("node1", tunnel_ip="192.168.50.1", datapath_id=other_id)
    assert app.sessions[other_id].node is None and other.raw == []
    assert app.sessions[old].node is None
    # node1's own switch reconnecting under the new id (OVS reconnects when its datapath id changes) is node1's
    again = switch(app, other_id, [False])
    again.address = ("192.168.50.1", 40002)
    app._adopt(again)
    wait_for(lambda: app.sessions[other_id].in_sync is True, timeout=10, what="node1's switch under its new id")
    assert app.sessions[other_id].node == "node1" and other.raw == []


def test_a_link_added_after_its_port_was_reported_is_checked_against_the_switch(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "links.db")
    service = Service(store)
    service.register_node("node1", tunnel_ip="192.168.50.1")
    service.register_node("node2", tunnel_ip="192.168.50.2")
    Runtime.service = service
    app = TenetApp()
    try:
        dpid = service.model.nodes["node1"].datapath_id
        dp = switch(app, dpid, [False], [port("eth2", 77)])  # the fabric port is there, numbered 77
        app._adopt(dp)
        session = app.sessions[dpid]
        wait_for(lambda: session.in_sync is True, timeout=10, what="node1's switch in sync")
        assert not session.errors
        service.create_link("node1", "eth2", "node2", "eth2")  # no port status comes: the port was there before
        planned = service.model.planned_port("node1", "eth2")
        assert list(session.errors) == [f"port eth2 is OpenFlow port 77 on the switch, but flows use {planned}"]
    finally:
        for session in list(app.sessions.values()):
            session.close()
        Runtime.service = None
        store.close()
