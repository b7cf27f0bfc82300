"""Port guards: a port of br-int that no endpoint has as planned (name and OpenFlow port number) neither sends
nor receives (OFPPC_NO_RECV | OFPPC_NO_FWD), so flows naming its number, which may be a new endpoint's, reach
no one else's pod. The real switch is in tests/functional/test_port_guard.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.app.osken_app import Runtime, TenetApp
from controller.app.reconcile import PORT_GUARD, port_guards
from controller.app.session import SwitchSession
from controller.service import Service
from controller.store.sqlite import SqliteStore
from lab.ovs import wait_for
from tests.unit.test_session import EMPTY_REPLIES, ScriptedSwitch, error, reply

GUARD = ofp.OFPPC_NO_RECV | ofp.OFPPC_NO_FWD


def test_the_guard_bits_are_no_recv_and_no_fwd() -> None:
    assert PORT_GUARD == GUARD


def test_a_port_is_bound_only_by_its_planned_name_and_number() -> None:
    planned = {"tenet-tun": 1, "tna": 1000, "tnb": 1001}
    ports = [
        ("tenet-tun", 1, 0),  # bound, open: left alone
        ("tna", 1000, GUARD),  # bound, guarded: opened
        ("tnb", 1005, 0),  # planned name, another number: guarded
        ("tnold", 1001, 0),  # another name on a planned number: guarded
        ("stray", 1002, GUARD),  # no one's, guarded already: left alone
        ("half", 1003, ofp.OFPPC_NO_FWD),  # only one of the two bits: guarded
    ]
    assert port_guards(planned, ports) == [
        ("tna", 1000, False),
        ("tnb", 1005, True),
        ("tnold", 1001, True),
        ("half", 1003, True),
    ]
    assert port_guards(planned, ports, opening=False) == [
        ("tnb", 1005, True),
        ("tnold", 1001, True),
        ("half", 1003, True),
    ]


class GuardingSwitch:
    """A switch holding `ports` that answers as OVS does: dumps, barriers and bundles; a port-mod changes the
    port's config without a port status to the controller that sent it (OVS, ofproto/connmgr.c
    connmgr_send_port_status, before OpenFlow 1.5), or is refused for a port it does not have (whose
    DELETE status went out first). `order` records port-mods and bundle commits as they come."""

    def __init__(self, app: TenetApp, dpid: int, ports: dict[str, int]) -> None:
        self.app, self.dpid = app, dpid
        self.ports = {name: [number, 0] for name, number in ports.items()}
        self.mods: list[tuple[int, int]] = []  # (port number, config) of each port-mod
        self.order: list[str] = []
        self.datapath = ScriptedSwitch(self.answer)
        self.datapath.id = dpid

    def desc(self, name: str, config: int | None = None) -> Any:
        number, have = self.ports[name]
        number_mac = mac(number & 0xFFFF)
        return parser.OFPPort(
            number, number_mac, name.encode(), have if config is None else config, 0, 0, 0, 0, 0, 0, 0
        )

    def answer(self, msg: Any) -> None:
        session = self.app.sessions[self.dpid]
        if isinstance(msg, parser.OFPPortDescStatsRequest):
            session.deliver(reply(parser.OFPPortDescStatsReply, msg, [self.desc(name) for name in self.ports]))
        elif type(msg) in EMPTY_REPLIES:
            session.deliver(reply(EMPTY_REPLIES[type(msg)], msg, []))
        elif isinstance(msg, parser.OFPPortMod):
            self.mods.append((msg.port_no, msg.config))
            self.order.append(f"{'guard' if msg.config else 'open'} {msg.port_no}")
            name = next((n for n, (number, _) in self.ports.items() if number == msg.port_no), None)
            if name is None:  # gone: its port status (DELETE) went out before this answer
                gone = next((n for n, number in session.ports.items() if number == msg.port_no), None)
                if gone is not None:
                    session.port_status(gone, None, False)
                session.error(error(msg, ofp.OFPET_PORT_MOD_FAILED, ofp.OFPPMFC_BAD_PORT))
                return
            if msg.hw_addr != mac(msg.port_no):
                session.error(error(msg, ofp.OFPET_PORT_MOD_FAILED, ofp.OFPPMFC_BAD_HW_ADDR))
                return
            entry = self.ports[name]
            entry[1] = (entry[1] & ~msg.mask) | (msg.config & msg.mask)
        elif isinstance(msg, parser.OFPBarrierRequest | parser.OFPEchoRequest | parser.ONFBundleCtrlMsg):
            if isinstance(msg, parser.ONFBundleCtrlMsg) and msg.type == ofp.ONF_BCT_COMMIT_REQUEST:
                self.order.append("bundle commit")
            done = parser.OFPBarrierReply(msg.datapath)
            done.xid = msg.xid
            session.deliver(done)

    def status(self, name: str, reason: int, *, config: int | None = None) -> None:
        """A port status, as os-ken's event thread hands it to the app; `config`: the port's config as the
        status says it (one sent before a port-mod says the config before it)."""
        msg = parser.OFPPortStatus(self.datapath, reason=reason, desc=self.desc(name, config))

        class Event:
            pass

        ev = Event()
        ev.msg = msg  # type: ignore[attr-defined]
        self.app.on_port_status(ev)

    def add(self, name: str, number: int) -> None:
        self.ports[name] = [number, 0]
        self.status(name, ofp.OFPPR_ADD)

    def config(self, name: str) -> int:
        return self.ports[name][1] & GUARD


def mac(number: int) -> str:
    return f"02:00:00:00:{number >> 8:02x}:{number & 0xFF:02x}"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[TenetApp]:
    store = SqliteStore(tmp_path / "t.db")
    service = Service(store)
    service.create_tenant("red")
    service.create_tenant("blue")
    service.create_network("red", "db", encap="vxlan", segment=100, subnet="10.0.0.0/24")
    service.create_network("blue", "web", encap="vxlan", segment=200, subnet="10.0.0.0/24")
    service.register_node("node1", tunnel_ip="192.168.50.1")
    Runtime.service = service
    made = TenetApp()
    yield made
    for session in list(made.sessions.values()):
        session.close()
    Runtime.service = None
    store.close()


def settled(session: SwitchSession) -> None:
    """Until every task queued for the session so far has run (one thread, in order), and it is in sync."""
    done = threading.Event()
    session.submit(done.set)
    assert done.wait(10), "the session's work was not done within 10 s"
    wait_for(lambda: session.in_sync is True, timeout=10, what="the session in sync")


def adopted(app: TenetApp, ports: dict[str, int]) -> tuple[GuardingSwitch, SwitchSession]:
    """node1's switch with `ports`, connected and reconciled."""
    switch = GuardingSwitch(app, app.service.model.nodes["node1"].datapath_id, ports)
    app._adopt(switch.datapath)
    session = app.sessions[switch.dpid]
    settled(session)
    return switch, session


def held(session: SwitchSession) -> threading.Event:
    """Hold the session's thread until the event returned is set: what is queued meanwhile waits."""
    go, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        go.wait(10)

    session.submit(hold)
    assert started.wait(10)
    return go


def test_an_orphaned_pods_port_stays_guarded_when_its_number_goes_to_another_tenants_endpoint(app: TenetApp) -> None:
    service = app.service
    red = service.create_endpoint("red-db", network="red/db", node="node1")
    dpid = service.model.nodes["node1"].datapath_id
    switch = GuardingSwitch(app, dpid, {"tenet-tun": 1, red.port_name: red.ofport, "stray": 1500})
    app._adopt(switch.datapath)
    session = app.sessions[dpid]
    settled(session)
    assert switch.config("stray") == GUARD and switch.config(red.port_name) == 0 and switch.config("tenet-tun") == 0
    assert app.status("node1")["guarded_ports"] == ["stray"]

    # red's endpoint goes through the API while its pod's port stays on br-int: the port is guarded
    service.delete_endpoint("red-db")
    wait_for(lambda: switch.config(red.port_name) == GUARD, timeout=10, what="the orphaned port guarded")
    # blue's next endpoint on the node gets the same OpenFlow port number; the orphan stays guarded
    blue = service.create_endpoint("blue-web", network="blue/web", node="node1")
    assert blue.ofport == red.ofport
    settled(session)
    assert switch.config(red.port_name) == GUARD
    state = app._endpoint_state("node1", blue.port_name, blue.ofport, service.sequence)
    assert state == {
        "ready": False,
        "reason": f"port {blue.port_name} is not on the switch of node node1 yet",
        "ofport": None,
    }

    # the orphan goes; blue's port comes with the planned number and is never guarded
    del switch.ports[red.port_name]
    session.port_status(red.port_name, None, False)
    mods = len(switch.mods)
    switch.add(blue.port_name, blue.ofport)
    settled(session)
    assert switch.config(blue.port_name) == 0 and len(switch.mods) == mods
    assert app._endpoint_state("node1", blue.port_name, blue.ofport, service.sequence)["ready"] is True


def test_a_port_added_before_its_endpoint_is_guarded_until_the_endpoint_is_there(app: TenetApp) -> None:
    service = app.service
    switch, session = adopted(app, {"tenet-tun": 1})
    planned_number = service.model._ofports["node1"].peek()
    assert planned_number is not None
    switch.add("tnearly", planned_number)  # no endpoint has it yet
    wait_for(lambda: switch.config("tnearly") == GUARD, timeout=10, what="the early port guarded")
    ready = app._endpoint_state("node1", "tnearly", planned_number, service.sequence)
    assert ready["ready"] is False
    service.create_endpoint("early", network="blue/web", node="node1", port_name="tnearly")
    wait_for(lambda: switch.config("tnearly") == 0, timeout=10, what="the bound port opened")
    settled(session)
    assert app._endpoint_state("node1", "tnearly", planned_number, service.sequence)["ready"] is True


def test_a_port_mod_for_a_port_gone_meanwhile_does_not_put_the_switch_out_of_sync(app: TenetApp) -> None:
    switch, session = adopted(app, {"tenet-tun": 1})
    # the session still has "ghost", which the switch removed: its port status comes before the refusal
    session.port_status("ghost", 1600, True, config=0, hw_addr=mac(1600))
    assert [guard.name for guard in session.guard_ports({"tenet-tun": 1})] == ["ghost"]
    assert "ghost" not in session.ports and switch.mods[-1] == (1600, GUARD)
    assert session.in_sync is True and not session.resync_pending and session.error_count == 0
    # a refusal for a port the switch still has as it was is an error: a resync follows
    session.port_status("kept", 1700, True, config=0, hw_addr="02:00:00:00:00:99")  # not the MAC the switch has
    switch.ports["kept"] = [1700, 0]
    with pytest.raises(Exception, match="refused 1 port-mod"):
        session.guard_ports({"tenet-tun": 1})
    assert session.error_count == 1


def test_a_status_sent_before_a_port_mod_does_not_undo_what_the_port_mod_did(app: TenetApp) -> None:
    service = app.service
    switch, session = adopted(app, {"tenet-tun": 1})
    number = service.model._ofports["node1"].peek()
    assert number is not None
    switch.add("tnx", number)
    settled(session)
    assert switch.config("tnx") == GUARD
    service.create_endpoint("x", network="red/db", node="node1", port_name="tnx")
    settled(session)
    assert switch.config("tnx") == 0  # bound and opened
    # A MODIFY (its carrier, say) OVS sent before it read the opening says "guarded"; x goes through the API
    # before the check that status brings has run: the port, open on the switch, is guarded again.
    go = held(session)
    switch.status("tnx", ofp.OFPPR_MODIFY, config=GUARD)
    service.delete_endpoint("x")
    go.set()
    settled(session)
    assert switch.config("tnx") == GUARD and app.status("node1")["guarded_ports"] == ["tnx"]
    assert service.create_endpoint("y", network="blue/web", node="node1").ofport == number
    settled(session)
    assert switch.config("tnx") == GUARD
    # The other way round: a port guarded on the switch, a stale MODIFY saying "open", then its endpoint
    # before that status's check: the port is opened.
    service.delete_endpoint("y")
    go = held(session)
    switch.status("tnx", ofp.OFPPR_MODIFY, config=0)
    service.create_endpoint("x", network="red/db", node="node1", port_name="tnx")
    go.set()
    settled(session)
    assert switch.config("tnx") == 0 and app.status("node1")["guarded_ports"] == []
    assert app._endpoint_state("node1", "tnx", number, service.sequence)["ready"] is True


def test_a_bound_port_opens_only_after_the_change_sets_queued_before_it(app: TenetApp) -> None:
    service = app.service
    switch, session = adopted(app, {"tenet-tun": 1})
    number = service.model._ofports["node1"].peek()
    assert number is not None
    switch.add("tnx", number)
    settled(session)
    go = held(session)
    switch.status("tenet-tun", ofp.OFPPR_MODIFY)  # a check queued before the change that binds tnx
    switch.order.clear()
    service.create_endpoint("x", network="blue/web", node="node1", port_name="tnx")
    go.set()
    settled(session)
    assert switch.order == ["bundle commit", f"open {number}"]


def test_a_port_gone_while_its_guard_is_sent_is_skipped_without_an_error(app: TenetApp) -> None:
    switch, session = adopted(app, {"tenet-tun": 1})
    for name, number in (("x1", 1500), ("x2", 1501)):
        switch.ports[name] = [number, 0]
        session.port_status(name, number, True, config=0, hw_addr=mac(number))
    answer = switch.answer

    def delete_x2_first(msg: Any) -> None:  # os-ken's thread takes x2's DELETE while x1's guard is sent
        if isinstance(msg, parser.OFPPortMod) and msg.port_no == 1500 and "x2" in switch.ports:
            del switch.ports["x2"]
            session.port_status("x2", None, False)
        answer(msg)

    switch.datapath.answer = delete_x2_first
    assert [guard.name for guard in session.guard_ports({"tenet-tun": 1})] == ["x1"]
    assert session.in_sync is True and session.error_count == 0 and "x2" not in session.port_config


def test_the_bridges_local_port_is_never_guarded(app: TenetApp) -> None:
    switch, session = adopted(app, {"tenet-tun": 1})
    switch.ports["br-int"] = [ofp.OFPP_LOCAL, 0]
    switch.status("br-int", ofp.OFPPR_MODIFY)  # its MAC follows the lowest port MAC, say
    settled(session)
    assert switch.mods == [] and app.status("node1")["guarded_ports"] == [] and "br-int" not in session.ports


def test_a_guard_another_controller_clears_is_set_again(app: TenetApp) -> None:
    switch, session = adopted(app, {"tenet-tun": 1})
    switch.add("stray", 1600)
    settled(session)
    assert switch.config("stray") == GUARD
    switch.ports["stray"][1] = 0  # `ovs-ofctl mod-port br-int stray receive forward`, say
    switch.status("stray", ofp.OFPPR_MODIFY)
    settled(session)
    assert switch.config("stray") == GUARD and switch.mods == [(1600, GUARD), (1600, GUARD)]


def test_a_refused_port_mod_puts_the_switch_through_a_resync(app: TenetApp) -> None:
    switch, session = adopted(app, {"tenet-tun": 1})
    switch.ports["odd"] = [1700, 0]
    session.port_status("odd", 1700, True, config=0, hw_addr="02:00:00:00:00:99", added=True)  # not its MAC
    go = held(session)
    session.submit(lambda: app._guard(session))
    go.set()
    # refused (BAD_HW_ADDR, the port still there as the session knows it): the task fails, a resync follows,
    # whose dump reads the port's real MAC and guards it
    wait_for(lambda: session.resyncs >= 1 and switch.config("odd") == GUARD, timeout=10, what="a resync guarding it")
    settled(session)
    assert "OFPPMFC_BAD_HW_ADDR" in " ".join(session.errors)


def test_an_opening_wakes_the_readiness_waits_and_counts_once_the_switch_applied_it(app: TenetApp) -> None:
    service = app.service
    switch, session = adopted(app, {"tenet-tun": 1})
    number = service.model._ofports["node1"].peek()
    assert number is not None
    switch.add("tnx", number)
    settled(session)
    seen_while_opening: list[dict[str, Any]] = []
    answer = switch.answer

    def look_first(msg: Any) -> None:  # what readiness says while the opening is on its way to the switch
        if isinstance(msg, parser.OFPPortMod) and msg.config == 0:
            seen_while_opening.append(app._endpoint_state("node1", "tnx", number, service.sequence))
        answer(msg)

    switch.datapath.answer = look_first
    go = held(session)
    service.create_endpoint("x", network="blue/web", node="node1", port_name="tnx")
    sequence = service.sequence
    answers: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: answers.append(app.endpoint_ready("node1", "tnx", number, sequence, 30)))
    waiter.start()
    go.set()
    waiter.join(20)  # woken by the opening: well before its 30 s
    assert answers and answers[0]["ready"] is True, answers
    assert len(seen_while_opening) == 1 and seen_while_opening[0]["ready"] is False


def test_a_bound_port_opens_while_later_change_sets_keep_coming(app: TenetApp) -> None:
    service = app.service
    switch, session = adopted(app, {"tenet-tun": 1})
    number = service.model._ofports["node1"].peek()
    assert number is not None
    switch.add("tnx", number)
    settled(session)
    answer = switch.answer
    made: list[str] = []

    def another_endpoint_at_each_commit(msg: Any) -> None:  # a busy node: a change set queued during each push
        answer(msg)
        if isinstance(msg, parser.ONFBundleCtrlMsg) and msg.type == ofp.ONF_BCT_COMMIT_REQUEST and len(made) < 10:
            made.append(service.create_endpoint(f"e{len(made)}", network="blue/web", node="node1").id)

    switch.datapath.answer = another_endpoint_at_each_commit
    switch.order.clear()
    service.create_endpoint("x", network="blue/web", node="node1", port_name="tnx")
    wait_for(lambda: len(made) == 10, timeout=10, what="10 more change sets")
    settled(session)
    commits = [i for i, what in enumerate(switch.order) if what == "bundle commit"]
    assert len(commits) == 11 and switch.order.index(f"open {number}") < commits[2], (
        switch.order,
        list(session.errors),
    )
