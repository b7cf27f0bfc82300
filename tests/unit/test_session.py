"""A switch session against a scripted switch: errors of every kind, resync with backoff, port-status
messages that race the port dump. The real switch is in tests/functional/test_switch_errors.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.app import session as session_module
from controller.app.reconcile import Plan
from controller.app.session import SwitchError, SwitchSession
from controller.openflow.messages import OfflineDatapath
from controller.pipeline.ir import Flow, Group, Meter, Output, match
from lab.ovs import wait_for


class ScriptedSwitch(OfflineDatapath):
    """A datapath whose switch answers each message with what `answer(msg)` does (on the sending thread)."""

    def __init__(self, answer: Callable[[Any], None]) -> None:
        super().__init__(dpid=0x5E5)
        self.answer = answer
        self.send_q: object | None = object()
        self.is_active = True
        self.address = ("127.0.0.1", 40000)
        self.raw: list[bytes] = []

    def send_msg(self, msg: Any) -> bool:
        super().send_msg(msg)
        self.answer(msg)
        return True

    def send(self, buf: bytes) -> bool:
        self.raw.append(buf)
        return True


def reply(cls: type, request: Any, body: list[Any]) -> Any:
    msg = cls(request.datapath, body=body, flags=0)
    msg.xid = request.xid
    return msg


def error(request: Any, type_: int, code: int | None = None, **experimenter: int) -> Any:
    msg = parser.OFPErrorMsg(request.datapath, type_=type_, code=code, data=b"", **experimenter)
    msg.xid = request.xid
    return msg


def port(name: str, port_no: int, *, live: bool = True) -> Any:
    state = 0 if live else ofp.OFPPS_LINK_DOWN
    return parser.OFPPort(port_no, "00:00:00:00:00:01", name.encode(), 0, state, 0, 0, 0, 0, 0, 0)


EMPTY_REPLIES = {
    parser.OFPFlowStatsRequest: parser.OFPFlowStatsReply,
    parser.OFPGroupDescStatsRequest: parser.OFPGroupDescStatsReply,
    parser.OFPMeterConfigStatsRequest: parser.OFPMeterConfigStatsReply,
}


class Scripted:
    """A session and its switch; the switch answers barriers, bundle controls and empty dumps by default."""

    def __init__(self, special: Callable[[SwitchSession, Any], bool] = lambda s, m: False) -> None:
        self.datapath = ScriptedSwitch(self._answer)
        self.session = SwitchSession(self.datapath, "n1")
        self.special = special

    def _answer(self, msg: Any) -> None:
        if self.special(self.session, msg):
            return
        if type(msg) in EMPTY_REPLIES:
            self.session.deliver(reply(EMPTY_REPLIES[type(msg)], msg, []))
        elif isinstance(msg, parser.OFPBarrierRequest | parser.OFPEchoRequest | parser.ONFBundleCtrlMsg):
            answer = parser.OFPBarrierReply(msg.datapath)
            answer.xid = msg.xid
            self.session.deliver(answer)

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def scripted() -> Any:
    made: list[Scripted] = []

    def make(special: Callable[[SwitchSession, Any], bool] = lambda s, m: False) -> Scripted:
        made.append(Scripted(special))
        return made[-1]

    yield make
    for item in made:
        item.close()


FLOW = Flow("classify", 10, match(in_port=1), (Output(2),))


def test_a_refused_bundle_commit_fails_at_once_naming_the_commit(scripted: Any) -> None:
    def refuse_commit(session: SwitchSession, msg: Any) -> bool:
        if isinstance(msg, parser.ONFBundleCtrlMsg) and msg.type == ofp.ONF_BCT_COMMIT_REQUEST:
            session.error(error(msg, ofp.OFPET_EXPERIMENTER, exp_type=ofp.ONFERR_ET_FAILED, experimenter=0x4F4E4600))
            return True
        return False

    switch = scripted(refuse_commit)
    started = time.monotonic()
    with pytest.raises(SwitchError, match=r"ONFERR_ET_FAILED\(2313\) for bundle commit"):
        switch.session.execute(Plan(flow_adds=[FLOW]), round_=1)
    assert time.monotonic() - started < session_module.REPLY_TIMEOUT / 10  # the error answered it, no timeout
    assert switch.session.in_sync is False


def test_a_push_is_sent_as_it_is_encoded_and_a_flow_that_cannot_be_encoded_discards_the_bundle(scripted: Any) -> None:
    controls: list[int] = []

    def note(session: SwitchSession, msg: Any) -> bool:
        if isinstance(msg, parser.ONFBundleCtrlMsg):
            controls.append(msg.type)
        return False

    switch = scripted(note)
    flows = [Flow("classify", 10, match(in_port=n), (Output(2),)) for n in range(1, 3001)]
    switch.session.execute(Plan(flow_adds=flows), round_=1)
    assert controls == [ofp.ONF_BCT_OPEN_REQUEST, ofp.ONF_BCT_COMMIT_REQUEST]
    assert len(switch.datapath.raw) > 1  # several writes, each sent once encoded, not one after all are
    controls.clear()
    bad = Flow("no-such-table", 10, match(in_port=1), (Output(2),))
    with pytest.raises(KeyError):
        switch.session.execute(Plan(flow_adds=[*flows[:5], bad]), round_=1)
    assert controls == [ofp.ONF_BCT_OPEN_REQUEST, ofp.ONF_BCT_DISCARD_REQUEST]


@pytest.mark.parametrize(
    ("plan", "refused", "type_", "code", "named"),
    [
        (
            Plan(group_adds=[Group(7, ((Output(1),),))]),
            parser.OFPGroupMod,
            ofp.OFPET_GROUP_MOD_FAILED,
            ofp.OFPGMFC_GROUP_EXISTS,
            "error OFPET_GROUP_MOD_FAILED(6) OFPGMFC_GROUP_EXISTS(0) for group 7",
        ),
        (
            Plan(meter_adds=[Meter(9, 1000, 100)]),
            parser.OFPMeterMod,
            ofp.OFPET_METER_MOD_FAILED,
            ofp.OFPMMFC_OUT_OF_METERS,
            "error OFPET_METER_MOD_FAILED(12) OFPMMFC_OUT_OF_METERS(10) for meter 9",
        ),
    ],
)
def test_a_refused_group_or_meter_mod_fails_the_plan_and_names_it(
    scripted: Any, plan: Plan, refused: type, type_: int, code: int, named: str
) -> None:
    def refuse(session: SwitchSession, msg: Any) -> bool:
        if isinstance(msg, refused):
            session.error(error(msg, type_, code))
            return True
        return False

    switch = scripted(refuse)
    with pytest.raises(SwitchError, match="refused 1 message"):
        switch.session.execute(plan, round_=1)
    assert list(switch.session.errors) == [named]
    assert switch.session.in_sync is False


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (lambda dp: parser.OFPBarrierRequest(dp), "OFPBarrierRequest"),
        (lambda dp: parser.OFPPortDescStatsRequest(dp, 0), "OFPPortDescStatsRequest"),
        (lambda dp: parser.ONFBundleCtrlMsg(dp, 5, ofp.ONF_BCT_OPEN_REQUEST, 0, []), "bundle open"),
    ],
)
def test_an_error_answering_any_request_fails_it_at_once(scripted: Any, request_: Callable, named: str) -> None:
    def refuse(session: SwitchSession, msg: Any) -> bool:
        session.error(error(msg, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE))
        return True

    switch = scripted(refuse)
    with pytest.raises(SwitchError, match=f"OFPBRC_BAD_TYPE.* for {named}"):
        switch.session.request(request_(switch.session.dp))


def test_an_error_for_an_unknown_xid_is_recorded_not_raised(scripted: Any) -> None:
    switch = scripted()
    barrier = parser.OFPBarrierRequest(switch.session.dp)
    barrier.xid = 123456
    switch.session.error(error(barrier, ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS))
    assert switch.session.errors[-1] == (
        "error OFPET_METER_MOD_FAILED(12) OFPMMFC_OUT_OF_METERS(10) for a message (xid 123456)"
    )


def test_a_failed_task_is_followed_by_resyncs_with_growing_delays_until_one_succeeds(scripted: Any) -> None:
    session = scripted().session
    calls: list[float] = []

    def resync() -> None:
        calls.append(time.monotonic())
        if len(calls) < 4:
            raise SwitchError(f"still refused ({len(calls)})")
        session.mark_in_sync()

    session.resync = resync
    failed_at = time.monotonic()

    def fail() -> None:
        raise SwitchError("refused")

    session.submit(fail)
    wait_for(lambda: session.in_sync, "the session to be in sync again", timeout=10)
    assert len(calls) == 4 and session.resyncs == 4 and not session.resync_pending
    gaps = [b - a for a, b in zip([failed_at, *calls], calls, strict=False)]
    for gap, want in zip(gaps, [0.1, 0.2, 0.4, 0.8], strict=True):
        assert gap >= want * 0.9, gaps
    assert list(session.errors) == ["refused", "still refused (1)", "still refused (2)", "still refused (3)"]


def test_backoff_is_bounded() -> None:
    delays = []
    backoff = session_module.BACKOFF_FIRST
    for _ in range(12):
        delays.append(backoff)
        backoff = min(backoff * 2, session_module.BACKOFF_MAX)
    assert max(delays) == session_module.BACKOFF_MAX == 5.0 and delays[0] == 0.1


def test_port_status_racing_the_port_dump_is_kept(scripted: Any) -> None:
    def ports_with_status_around_the_reply(session: SwitchSession, msg: Any) -> bool:
        if not isinstance(msg, parser.OFPPortDescStatsRequest):
            return False
        session.port_status("early", 3, True)  # before the reply, which shows it too
        session.deliver(reply(parser.OFPPortDescStatsReply, msg, [port("p1", 1), port("early", 3), port("gone", 4)]))
        # After the reply, while the session thread builds the port table from it: newer than the reply.
        session.port_status("late", 5, True)
        session.port_status("gone", None, False)
        session.port_status("p1", 1, False)
        return True

    session = scripted(ports_with_status_around_the_reply).session
    session.ports = {"stale": 9}
    session.dump()
    assert session.ports == {"p1": 1, "early": 3, "late": 5}
    assert session.port_up == {"p1": False, "early": True, "late": True}
    session.port_status("after", 6, True)  # once the dump is over, applied directly
    assert session.ports["after"] == 6 and session.port_up["after"] is True


def test_port_status_while_the_dump_builds_the_port_table_is_kept(
    scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window after the reply is read and before the new table is in place: a port-status there is
    replayed onto the new table, not written to the old one and then overwritten."""

    def ports(session: SwitchSession, msg: Any) -> bool:
        if not isinstance(msg, parser.OFPPortDescStatsRequest):
            return False
        session.deliver(reply(parser.OFPPortDescStatsReply, msg, [port("tenet-tun", 1)]))
        return True

    session = scripted(ports).session
    real = session_module.port_live
    fired: list[bool] = []

    def racing(desc: Any, ofproto: Any) -> bool:
        if not fired:  # os-ken's event thread delivers a port-status now, while the table is being built
            fired.append(True)
            session.port_status("tnnewpod", 1000, True)
        return real(desc, ofproto)

    monkeypatch.setattr(session_module, "port_live", racing)
    session.dump()
    assert fired
    assert session.ports == {"tenet-tun": 1, "tnnewpod": 1000}
    assert session.port_up == {"tenet-tun": True, "tnnewpod": True}


def test_a_closed_session_fails_requests_at_once(scripted: Any) -> None:
    switch = scripted(lambda s, m: True)  # a switch that never answers
    switch.session.close()
    with pytest.raises(SwitchError, match="disconnected"):
        switch.session.request(parser.OFPBarrierRequest(switch.session.dp))
    assert not switch.session.alive()


def test_an_echo_probe_tells_a_switch_that_answers_from_a_silent_one(scripted: Any) -> None:
    assert scripted().session.answers(1.0)
    silent = scripted(lambda s, m: True)
    started = time.monotonic()
    assert not silent.session.answers(0.2)
    assert time.monotonic() - started < 1.0


def test_an_error_that_fails_no_task_brings_a_resync_too(scripted: Any) -> None:
    session = scripted().session
    resyncs: list[int] = []

    def resync() -> None:
        resyncs.append(1)
        session.mark_in_sync()

    session.resync = resync
    session.mark_in_sync()
    late = parser.OFPEchoRequest(session.dp)  # a request that timed out already: no task waits for its answer
    late.xid = 4242
    session.error(error(late, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE))
    wait_for(lambda: resyncs and session.in_sync, "a resync setting the switch right", timeout=10)
    assert session.resyncs == 1 and not session.resync_pending
