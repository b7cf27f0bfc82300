"""The os-ken internals Tenet relies on, checked against the installed os-ken.

Tenet reaches past os-ken's public API in a few places: `controller/app/osken_fixes.py` (the send thread
of a disconnected switch, the OpenFlow listener's logging), `controller/openflow/flow_stats.py` (multipart
replies kept as bytes), `controller/openflow/decode.py` (`OFPMatch._fields2`) and the session (error and
echo messages, a `Datapath`'s `is_active`, `send_q`, `address`, `close`). setup.cfg pins the os-ken versions
these checks passed on; each check fails naming what changed, so a new os-ken is checked before the pin is widened.
"""

from __future__ import annotations

import configparser
import inspect
import operator
import re
import struct
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from os_ken.base import app_manager  # noqa: F401  (imported first: os_ken.controller.controller needs it)
from os_ken.controller import controller, ofp_event
from os_ken.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
from os_ken.lib import hub
from os_ken.ofproto import ofproto_parser, ofproto_v1_3, ofproto_v1_3_parser

from controller.app import osken_fixes
from controller.app.openflow_listener import LoggingStreamServer
from controller.openflow import flow_stats

ROOT = Path(__file__).resolve().parents[2]


def os_ken_pin() -> list[tuple[str, tuple[int, ...]]]:
    """setup.cfg's os-ken requirement as (operator, version) pairs, e.g. [(">=", (4, 2, 2)), ("<", (4, 3))]."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.split("#")[0].strip() for line in config["options"]["install_requires"].splitlines()]
    spec = next(line for line in lines if line.startswith("os-ken"))[len("os-ken") :]
    pairs = [re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\d.]+)\s*", part) for part in spec.split(",") if part.strip()]
    assert all(pairs), f"setup.cfg: cannot read the os-ken range {spec!r}"
    return [(m.group(1), version(m.group(2))) for m in pairs if m]


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


COMPARE = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}


def test_the_installed_os_ken_is_one_these_checks_passed_on() -> None:
    pin, installed = os_ken_pin(), metadata.version("os-ken")
    assert any(op == "<" or op == "<=" or op == "==" for op, _ in pin), "setup.cfg: os-ken has no upper bound"
    assert all(COMPARE[op](version(installed), bound) for op, bound in pin), (
        f"os-ken {installed} is outside setup.cfg's checked range {pin}: run this file against it and "
        "widen the pin only if every check passes"
    )


def params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


def require(condition: bool, what: str) -> None:
    if not condition:
        pytest.fail(f"os-ken changed: {what}", pytrace=False)


# --- osken_fixes: waking the send thread of a connection whose receive loop ended --------------------------


def test_datapath_still_has_the_loops_and_queue_the_fix_patches() -> None:
    datapath = controller.Datapath
    for name in ("_recv_loop", "_send_loop", "serve", "send", "send_msg", "set_xid", "close"):
        require(
            callable(getattr(datapath, name, None)), f"Datapath.{name} is gone (osken_fixes and the session use it)"
        )
    require(params(osken_fixes._original_recv_loop) == ["self"], "Datapath._recv_loop takes other arguments")
    init = inspect.getsource(datapath.__init__)
    for attribute in ("self.send_q = hub.Queue(", "self._send_q_sem = hub.BoundedSemaphore(", "self.is_active"):
        require(attribute in init, f"Datapath.__init__ no longer sets {attribute.split(' =')[0]}")
    serve = inspect.getsource(datapath.serve)
    require(
        "self._recv_loop()" in serve and "joinall" in serve and "self._send_loop" in serve,
        "Datapath.serve no longer runs _recv_loop and then joins the send thread: osken_fixes may be moot or wrong",
    )
    send_loop = inspect.getsource(datapath._send_loop)
    for piece in ("self.send_q.get()", "self._send_q_sem.release()", "if close_socket:", "self.send_q = None"):
        require(piece in send_loop, f"Datapath._send_loop no longer does `{piece}`")
    require(hub.Queue is not None and hub.BoundedSemaphore is not None, "os_ken.lib.hub has no Queue/BoundedSemaphore")


class _EndedSocket:
    """A socket whose peer has closed: `recv` gives b""; what is written is kept."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def recv(self, size: int) -> bytes:
        return b""

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise OSError(9, "Bad file descriptor")
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def shutdown(self, how: int) -> None:
        pass


def test_the_patched_receive_loop_lets_the_send_loop_end_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller.Datapath, "_recv_loop", osken_fixes._original_recv_loop)
    osken_fixes.apply()
    dp = controller.Datapath.__new__(controller.Datapath)  # no socket setup: only what the loops touch
    dp.socket, dp.state, dp.address, dp.ofp_brick = _EndedSocket(), MAIN_DISPATCHER, ("127.0.0.1", 6653), None
    dp.send_q, dp._send_q_sem = hub.Queue(16), hub.BoundedSemaphore(16)
    dp._recv_loop()
    require(dp.socket.closed, "Datapath._recv_loop no longer closes the socket when the peer goes")
    failures: list[BaseException] = []

    def send_loop() -> None:
        try:
            dp._send_loop()
        except BaseException as error:  # the loop must end by the marker, not by an exception
            failures.append(error)

    thread = threading.Thread(target=send_loop, daemon=True)
    thread.start()
    thread.join(5)
    require(not thread.is_alive(), "Datapath._send_loop does not stop on the close marker (b'', True)")
    assert not failures, f"os-ken changed: Datapath._send_loop raised {failures[0]!r} on the close marker"
    require(dp.send_q is None, "Datapath._send_loop no longer clears send_q when it stops")


# --- osken_fixes: the OpenFlow listener logs a connection that ends in an exception -------------------------


def test_the_listener_is_the_stream_server_name_server_loop_looks_up() -> None:
    require(
        "StreamServer" in controller.OpenFlowController.server_loop.__code__.co_names,
        "OpenFlowController.server_loop no longer listens with the module's StreamServer name",
    )
    require(controller.StreamServer in (hub.StreamServer, LoggingStreamServer), "StreamServer moved")
    init, serve = inspect.getsource(hub.StreamServer.__init__), inspect.getsource(hub.StreamServer.serve_forever)
    require("self.handle =" in init and "self.handle" in serve, "hub.StreamServer no longer serves through .handle")
    require("ctx.wrap_socket(sock" in init, "hub.StreamServer no longer does the TLS handshake in its handle")
    require(hub.TaskExit is Exception, "the native hub no longer drops every exception: openflow_listener may be moot")
    require(  # the listener's handshake timeout stays on the raw socket: the session must set its own first
        "self.socket.settimeout(CONF.socket_timeout)" in inspect.getsource(controller.Datapath.__init__),
        "Datapath.__init__ no longer sets the session socket's timeout (openflow_listener's would remain)",
    )


# --- flow_stats: multipart replies with their bodies kept as bytes ----------------------------------------


def test_the_multipart_parser_table_and_the_pieces_flow_stats_calls_are_there() -> None:
    parsers = ofproto_v1_3_parser._MSG_PARSERS
    require(ofproto_v1_3.OFPT_MULTIPART_REPLY in parsers, "ofproto_v1_3_parser._MSG_PARSERS has no multipart reply")
    base = inspect.getattr_static(ofproto_parser.MsgBase, "parser")
    require(isinstance(base, classmethod), "MsgBase.parser is no longer a classmethod")
    wanted = ["cls", "datapath", "version", "msg_type", "msg_len", "xid", "buf"]
    require(params(base.__func__) == wanted, f"MsgBase.parser's parameters are {params(base.__func__)}")
    for entry in (ofproto_v1_3_parser.OFPFlowStats, ofproto_v1_3_parser.OFPGroupDescStats):
        require(params(entry.parser) == ["buf", "offset"], f"{entry.__name__}.parser takes {params(entry.parser)}")
    for constant in ("OFP_MULTIPART_REPLY_PACK_STR", "OFP_MULTIPART_REPLY_SIZE", "OFPMP_FLOW", "OFPMP_GROUP_DESC"):
        require(hasattr(ofproto_v1_3, constant), f"ofproto_v1_3.{constant} is gone")
    require(
        all(hasattr(oxm, "type") and hasattr(oxm, "num") and hasattr(oxm, "name") for oxm in ofproto_v1_3.oxm_types),
        "ofproto_v1_3.oxm_types entries lost .type/.num/.name",
    )


def test_other_multipart_replies_still_parse_through_the_replaced_entry() -> None:
    flow_stats.keep_stats_raw()

    class Datapath:
        ofproto, ofproto_parser = ofproto_v1_3, ofproto_v1_3_parser

    port = struct.pack(ofproto_v1_3.OFP_PORT_PACK_STR, 3, b"\x02" * 6, b"p3", 0, 0, 0, 0, 0, 0, 0, 0)
    length = ofproto_v1_3.OFP_MULTIPART_REPLY_SIZE + len(port)
    buf = bytearray(ofproto_v1_3.OFP_MULTIPART_REPLY_SIZE)
    struct.pack_into(ofproto_v1_3.OFP_HEADER_PACK_STR, buf, 0, 4, ofproto_v1_3.OFPT_MULTIPART_REPLY, length, 7)
    struct.pack_into(
        ofproto_v1_3.OFP_MULTIPART_REPLY_PACK_STR, buf, ofproto_v1_3.OFP_HEADER_SIZE, ofproto_v1_3.OFPMP_PORT_DESC, 0
    )
    msg = ofproto_parser.msg(Datapath(), 4, ofproto_v1_3.OFPT_MULTIPART_REPLY, length, 7, bytes(buf) + port)
    require(
        isinstance(msg, ofproto_v1_3_parser.OFPPortDescStatsReply) and [p.port_no for p in msg.body] == [3],
        "a port-desc reply no longer parses through the multipart entry flow_stats wraps",
    )


# --- the session: errors, echo, a connection's state ---------------------------------------------------------


def test_error_messages_carry_what_the_session_reads() -> None:
    error = ofproto_v1_3_parser.OFPErrorMsg(
        None, type_=ofproto_v1_3.OFPET_EXPERIMENTER, exp_type=ofproto_v1_3.ONFERR_ET_FAILED, experimenter=0x4F4E4600
    )
    require((error.exp_type, error.experimenter) == (2313, 0x4F4E4600), "OFPErrorMsg experimenter fields moved")
    require(
        ofproto_v1_3.ofp_error_type_to_str(5) == "OFPET_FLOW_MOD_FAILED(5)"
        and ofproto_v1_3.ofp_error_code_to_str(5, 1) == "OFPFMFC_TABLE_FULL(1)",
        "ofproto_v1_3.ofp_error_type_to_str / ofp_error_code_to_str changed",
    )
    for name in ("EventOFPErrorMsg", "EventOFPEchoReply", "EventONFBundleCtrlMsg", "EventOFPPortStatus"):
        require(hasattr(ofp_event, name), f"ofp_event.{name} is gone")
    close = inspect.getsource(controller.Datapath.close)
    require("DEAD_DISPATCHER" in close and "_close_write" in close, "Datapath.close no longer ends the connection")
    require(DEAD_DISPATCHER == "dead", "DEAD_DISPATCHER changed")


def test_match_fields_are_read_as_decode_reads_them() -> None:
    match = ofproto_v1_3_parser.OFPMatch(in_port=1, eth_dst=("00:00:00:00:00:01", "ff:ff:ff:ff:ff:ff"))
    require(
        getattr(match, "_fields2", None) == [("in_port", 1), ("eth_dst", ("00:00:00:00:00:01", "ff:ff:ff:ff:ff:ff"))],
        "OFPMatch._fields2 (read by controller/openflow/decode.py) changed",
    )
