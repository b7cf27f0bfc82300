"""The OpenFlow listener logs every connection that fails (controller/app/openflow_listener.py): real TLS
handshakes against os-ken's listener set up as os-ken's `server_loop` sets it up, with certificates from the
openssl command."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from os_ken.base import app_manager  # noqa: F401  (imported first: os_ken.controller.controller needs it)
from os_ken.controller import controller
from os_ken.lib import hub

from controller.app import openflow_listener, osken_fixes
from controller.app.openflow_listener import (
    OSKEN_LOGGER,
    OSKEN_SESSION_ERROR,
    DropOsKenSessionError,
    LoggingStreamServer,
    Repeats,
    tls_reason,
)
from tests.certs import self_signed
from tests.logs import Records

LOGGER = "controller.app.openflow_listener"
Handle = Callable[[Any, Any], None]


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("pems")
    return {name: self_signed(directory, name) for name in ("controller", "switch", "stranger")}


def quiet(sock: Any, address: Any) -> None:
    """A session that reads until the switch goes, however it goes (as os-ken's receive loop does)."""
    with sock, contextlib.suppress(OSError):
        while sock.recv(64):
            pass


@pytest.fixture
def listen(pems: dict[str, tuple[Path, Path]]) -> Iterator[Callable[..., tuple[LoggingStreamServer, Any]]]:
    """listen(handle, tls=True): a served listener and its address; what it started is gone after the test."""
    started: list[tuple[LoggingStreamServer, threading.Thread]] = []
    _EARLIER.clear()
    _EARLIER.update(threading.enumerate())

    def make(handle: Handle = quiet, *, tls: bool = True) -> tuple[LoggingStreamServer, Any]:
        (cert, key), (switch_ca, _) = pems["controller"], pems["switch"]
        ssl_args: dict[str, Any] = {}
        if tls:  # as os_ken.controller.controller.OpenFlowController.server_loop passes them
            ssl_args = {"keyfile": str(key), "certfile": str(cert), "cert_reqs": ssl.CERT_REQUIRED,
                        "ca_certs": str(switch_ca), "ssl_ctx": ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)}  # fmt: skip
        server = LoggingStreamServer(("127.0.0.1", 0), handle, **ssl_args)
        thread = threading.Thread(target=serve, args=(server,), daemon=True)
        thread.start()
        started.append((server, thread))
        return server, server.server.getsockname()

    yield make
    for server, thread in started:
        server.server.shutdown(socket.SHUT_RDWR)  # wakes its accept()
        server.server.close()
        thread.join(10)
    settle()


def serve(server: LoggingStreamServer) -> None:
    with contextlib.suppress(OSError):  # the test closed it
        server.serve_forever()


_EARLIER: set[threading.Thread] = set()  # threads the test found running: not its to wait for


def settle() -> None:
    """Wait until every connection's thread the test started has ended, so all it logs is logged."""
    for thread in threading.enumerate():
        if isinstance(thread, hub.HubThread) and thread not in _EARLIER:
            thread.join(10)
            assert not thread.is_alive(), "a connection's thread did not end"


def switch(
    address: Any, pems: dict[str, tuple[Path, Path]], cert: str | None = "switch", trust: str = "controller"
) -> None:
    """A TLS client with certificate `cert` (None: none) trusting `trust`'s certificate: it shakes hands, says
    hello, waits for the server's first byte or end (a refusal), and goes."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(str(pems[trust][0]))
    if cert is not None:
        context.load_cert_chain(*(str(p) for p in pems[cert]))
    try:
        with context.wrap_socket(socket.create_connection(address, timeout=10)) as tls:
            tls.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")  # an OpenFlow 1.3 hello
            tls.recv(1)  # TLS 1.3: a refused client certificate comes back as an alert here
    except (ssl.SSLError, OSError):
        pass


def lines(records: Records) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in records.caught]


def test_a_switch_of_the_ca_is_served_and_nothing_is_logged(listen, pems) -> None:
    def handle(sock: Any, address: Any) -> None:
        sock.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")  # hello back: the session began
        quiet(sock, address)

    _, address = listen(handle)
    with Records(LOGGER, logging.DEBUG) as records:
        switch(address, pems)
        settle()
    assert lines(records) == []


@pytest.mark.parametrize(
    ("cert", "trust", "reason"),
    [
        ("stranger", "controller", "certificate verify failed: self-signed certificate"),
        (None, "controller", "peer did not return a certificate"),
        ("switch", "stranger", "tlsv1 alert unknown ca (sent by the peer: it refused the controller's certificate)"),
    ],
    ids=["another CA signed it", "no certificate", "the switch trusts another CA"],
)
def test_a_failed_handshake_is_a_warning_with_the_peer_and_the_reason(
    listen, pems, cert: str | None, trust: str, reason: str
) -> None:
    _, address = listen()
    with Records(LOGGER) as records:
        switch(address, pems, cert, trust)
        assert records.wait(10), "nothing was logged"
        settle()
    [(level, line)] = lines(records)
    assert level == logging.WARNING
    assert line.startswith("OpenFlow: TLS handshake with 127.0.0.1:") and line.endswith(f" failed: {reason}"), line


def test_a_peer_that_does_not_speak_tls_gets_a_hint(listen) -> None:
    _, address = listen()
    with Records(LOGGER) as records:
        with socket.create_connection(address, timeout=10) as plain:
            plain.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01" * 8)  # OpenFlow hellos, as a tcp: switch sends
            with contextlib.suppress(OSError):  # reset or closed: the server ends it either way
                plain.recv(64)
        assert records.wait(10)
        settle()
    [(level, line)] = lines(records)
    assert level == logging.WARNING
    assert line.endswith(
        " failed: wrong version number (the peer does not speak TLS: a switch set to tcp: rather than ssl:?)"
    )


def test_a_connection_closed_during_the_handshake_is_info(listen) -> None:
    _, address = listen()
    with Records(LOGGER) as records:
        socket.create_connection(address, timeout=10).close()  # a port probe
        assert records.wait(10)
        settle()
    [(level, line)] = lines(records)
    assert level == logging.INFO
    assert line.startswith("OpenFlow: 127.0.0.1:") and " closed the connection during the TLS handshake: " in line


def test_a_peer_that_says_nothing_is_let_go_after_the_handshake_timeout(listen, monkeypatch) -> None:
    monkeypatch.setattr(openflow_listener, "HANDSHAKE_TIMEOUT", 0.2)
    _, address = listen()
    with Records(LOGGER) as records, socket.create_connection(address, timeout=10) as silent:
        port = silent.getsockname()[1]
        assert records.wait(10)
        assert silent.recv(64) == b""  # closed by the listener
        settle()
    said = f"OpenFlow: 127.0.0.1:{port} did not complete the TLS handshake within 0.2 s"
    assert lines(records) == [(logging.INFO, said)]


def test_the_same_failure_from_the_same_host_is_logged_once_per_interval(listen, pems) -> None:
    server, address = listen()
    now = [1000.0]
    server.repeats.clock = lambda: now[0]
    with Records(LOGGER) as records:
        for _ in range(3):  # a switch retrying
            switch(address, pems, "stranger")
            settle()
        switch(address, pems, None)  # another reason: logged
        settle()
        now[0] += server.repeats.interval
        switch(address, pems, "stranger")
        settle()
    got = [line.split(" failed: ", 1)[1] for _, line in lines(records)]
    assert got == [
        "certificate verify failed: self-signed certificate",
        "peer did not return a certificate",
        "certificate verify failed: self-signed certificate (2 more like it from this host since the last such line)",
    ]


@pytest.mark.parametrize(
    "raised",
    [ValueError("os-ken could not parse it"), ssl.SSLError(1, "bad record mac"), ConnectionResetError(104, "reset")],
    ids=["ValueError", "SSLError", "ConnectionResetError"],
)
@pytest.mark.parametrize("tls", [True, False], ids=["TLS", "plain TCP"])
def test_a_session_that_ends_in_an_exception_is_logged_with_its_traceback(
    listen, pems, tls: bool, raised: Exception
) -> None:
    """Whatever the session raises, even an error of the kinds the handshake raises, it is the session's."""

    def handle(sock: Any, address: Any) -> None:
        sock.close()
        raise raised

    _, address = listen(handle, tls=tls)
    with Records(LOGGER) as records:
        if tls:
            switch(address, pems)
        else:
            socket.create_connection(address, timeout=10).close()
        assert records.wait(10)
        settle()
    [record] = records.caught
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("OpenFlow: the session of 127.0.0.1:")
    assert record.getMessage().endswith(" ended with an error")
    assert record.exc_info is not None and record.exc_info[1] is raised


def test_a_switch_set_to_ssl_on_a_plain_tcp_listener_gets_a_hint(listen, pems, monkeypatch) -> None:
    monkeypatch.setattr(controller.Datapath, "_recv_loop", osken_fixes._recv_loop_then_wake_sender)  # it ends
    _, address = listen(controller.datapath_connection_factory, tls=False)  # os-ken's own session
    with Records(LOGGER) as records:
        for _ in range(2):  # the second is left out
            switch(address, pems)
            settle()
    [(level, line)] = lines(records)
    assert level == logging.WARNING
    assert line.startswith("OpenFlow: 127.0.0.1:") and line.endswith(
        " speaks TLS, but this listener serves plain TCP "
        "(a switch set to ssl: while the controller has no --ofp-tls-* settings?)"
    ), line


@pytest.mark.parametrize("dropped", [False, True], ids=["os-ken alone", "with the filter"])
def test_os_ken_s_own_line_about_a_failed_session_is_left_out(listen, pems, monkeypatch, dropped: bool) -> None:
    """os-ken says "Error in the datapath None from (...)" at each retry, without a limit; the listener's
    own line replaces it. Without the filter the line comes: its text is still what the filter knows."""
    monkeypatch.setattr(controller.Datapath, "_recv_loop", osken_fixes._recv_loop_then_wake_sender)  # it ends
    osken_log = logging.getLogger(OSKEN_LOGGER)
    monkeypatch.setattr(osken_log, "filters", [DropOsKenSessionError()] if dropped else [])
    _, address = listen(controller.datapath_connection_factory, tls=False)
    with Records(OSKEN_LOGGER) as records, Records(LOGGER) as ours:
        switch(address, pems)  # a switch set to ssl: on a plain TCP listener
        assert ours.wait(10)
        settle()
    said = [record.getMessage() for record in records.caught if record.levelno >= logging.ERROR]
    if dropped:
        assert said == []
    else:
        [record] = [record for record in records.caught if record.levelno >= logging.ERROR]
        assert record.msg == OSKEN_SESSION_ERROR and isinstance(record.args, tuple), (record.msg, record.args)
        assert record.args[0] == "None", (record.msg, record.args)
    assert len(ours.caught) == 1


def test_os_ken_s_line_naming_a_datapath_id_is_kept() -> None:
    def record(*args: object) -> logging.LogRecord:
        return logging.LogRecord(OSKEN_LOGGER, logging.ERROR, "controller.py", 555, OSKEN_SESSION_ERROR, args, None)

    dropping = DropOsKenSessionError()
    assert not dropping.filter(record("None", ("10.0.0.12", 40412)))
    assert dropping.filter(record("000000000000002a", ("10.0.0.12", 40412)))
    other = logging.LogRecord(OSKEN_LOGGER, logging.ERROR, "controller.py", 1, "something else: %s", ("None",), None)
    assert dropping.filter(other)


def test_apply_puts_the_listener_where_os_ken_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controller, "StreamServer", hub.StreamServer)
    monkeypatch.setattr(controller.Datapath, "_recv_loop", osken_fixes._original_recv_loop)
    osken_log = logging.getLogger(OSKEN_LOGGER)
    monkeypatch.setattr(osken_log, "filters", [])
    osken_fixes.apply()
    osken_fixes.apply()  # once is enough: the filter is not added twice
    assert controller.StreamServer is LoggingStreamServer
    assert [type(known) for known in osken_log.filters] == [DropOsKenSessionError]


def test_reasons_without_an_openssl_code() -> None:
    made = ssl.SSLError(1, "made in Python")  # no .reason: only OpenSSL's errors carry one
    assert tls_reason(made) == str(made) and "made in Python" in str(made)


def test_repeats_keeps_the_keys_seen_last() -> None:
    now = [0.0]
    repeats = Repeats(10.0, size=2, clock=lambda: now[0])
    assert [repeats.admit(key) for key in ("a", "b", "a", "c")] == [0, 0, None, 0]  # the second "a": left out
    assert repeats.admit("a") is None  # "c" pushed out "b", seen before the last "a"
    assert repeats.admit("b") == 0  # forgotten: logged anew (and "c" goes)
    now[0] = 10.0
    assert repeats.admit("a") == 2
