"""HTTPS for the API: the server's certificate verified by the client and tenetctl, mutual TLS, silent TLS
clients kept out of the way, and the controller's TLS settings checked before it starts."""

from __future__ import annotations

import inspect
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cheroot.server import HTTPConnection
from cheroot.workers import threadpool

from controller.api import ApiServer, Limits, TlsError, TlsFiles, Tokens, make_app, serve
from controller.cli import main as tenetctl
from controller.client import Client, ClientError, path
from controller.main import StartupError, api_options, load_settings, ofp_tls
from controller.service import Service
from tests.api.support import ADMIN, TOKENS
from tests.certs import self_signed
from tests.logs import Records


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    directory = tmp_path_factory.mktemp("pems")
    return {
        "api": self_signed(directory, "api", "subjectAltName=IP:127.0.0.1"),
        "client": self_signed(directory, "client"),
        "stranger": self_signed(directory, "stranger"),
    }


@pytest.fixture
def https(service: Service, pems: dict[str, tuple[Path, Path]]) -> Iterator[ApiServer]:
    cert, key = pems["api"]
    app = make_app(service, Tokens.from_dict(TOKENS))
    running = serve(
        app, "127.0.0.1", 0, limits=Limits(threads=4, ready_waits=2, timeout=1.0), tls=TlsFiles(str(cert), str(key))
    )
    yield running.start()
    running.stop(timeout=10)


@pytest.fixture
def mutual(service: Service, pems: dict[str, tuple[Path, Path]]) -> Iterator[ApiServer]:
    cert, key = pems["api"]
    tls = TlsFiles(str(cert), str(key), client_ca=str(pems["client"][0]))
    running = serve(make_app(service, Tokens.from_dict(TOKENS)), "127.0.0.1", 0, tls=tls).start()
    yield running
    running.stop(timeout=10)


def test_https_with_the_servers_ca(https: ApiServer, pems: dict[str, tuple[Path, Path]]) -> None:
    assert https.url.startswith("https://127.0.0.1:")
    admin = Client(https.url, ADMIN, ca_file=str(pems["api"][0]))
    assert admin.post(path("v1", "tenants"), {"name": "blue"})["name"] == "blue"
    assert [t["name"] for t in admin.get(path("v1", "tenants"))] == ["blue"]


def test_a_certificate_the_client_cannot_verify_is_refused(https: ApiServer, pems) -> None:
    with pytest.raises(ClientError, match="certificate verify failed"):
        Client(https.url, ADMIN).get(path("v1", "tenants"))  # the system's CAs do not know it
    with pytest.raises(ClientError, match="certificate verify failed"):
        Client(https.url, ADMIN, ca_file=str(pems["stranger"][0])).get(path("v1", "tenants"))
    with pytest.raises(ClientError, match="cannot reach the controller"):  # plain HTTP to the TLS port
        Client(https.url.replace("https:", "http:"), ADMIN).get(path("v1", "tenants"))
    with pytest.raises(ClientError, match=r"CA file /nonexistent\.pem"):
        Client(https.url, ADMIN, ca_file="/nonexistent.pem")


def test_tenetctl_over_https(https: ApiServer, pems, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    connection = ["--server", https.url, "--token", ADMIN]
    assert tenetctl(["tenant", "create", "blue", *connection, "--ca-file", str(pems["api"][0])]) == 0
    monkeypatch.setenv("TENET_CA_FILE", str(pems["api"][0]))
    assert tenetctl(["tenant", "ls", "--json", *connection]) == 0
    assert '"blue"' in capsys.readouterr().out
    monkeypatch.delenv("TENET_CA_FILE")
    assert tenetctl(["tenant", "ls", *connection]) == 1
    assert "certificate verify failed" in capsys.readouterr().err


def test_mutual_tls_wants_a_client_certificate_its_ca_signed(mutual: ApiServer, pems) -> None:
    ca = str(pems["api"][0])
    client_cert, client_key = (str(p) for p in pems["client"])
    assert Client(mutual.url, ADMIN, ca_file=ca, cert_file=client_cert, key_file=client_key).get("/v1/nodes") == []
    with pytest.raises(ClientError, match="cannot reach the controller"):
        Client(mutual.url, ADMIN, ca_file=ca).get("/v1/nodes")
    stranger_cert, stranger_key = (str(p) for p in pems["stranger"])
    with pytest.raises(ClientError, match="cannot reach the controller"):
        Client(mutual.url, ADMIN, ca_file=ca, cert_file=stranger_cert, key_file=stranger_key).get("/v1/nodes")


def test_silent_tls_clients_do_not_hold_up_others(https: ApiServer, pems) -> None:
    """cheroot shakes hands in its accept loop; here a client that never starts the handshake waits aside."""
    host, port = https.server_address
    silent = [socket.create_connection((host, port), timeout=10) for _ in range(12)]
    try:
        started = time.monotonic()
        assert Client(https.url, ADMIN, ca_file=str(pems["api"][0]), timeout=3).get("/v1/health")["ok"] is True
        assert time.monotonic() - started < 1.0
        for sock in silent:
            assert sock.recv(1024) == b""  # closed by the server after its timeout
    finally:
        for sock in silent:
            sock.close()


def test_a_client_gone_mid_request_is_one_line_of_the_log(https: ApiServer, capfd: pytest.CaptureFixture[str]) -> None:
    """cheroot reports a TLS client gone mid-request from within the `except` of its read ("socket.error 8",
    a traceback) and again when its 500 answer fails; the server logs it once, at info, with the address.
    (Which of a gone client's reads sees the end first is a race, so cheroot's calls are made here.)"""

    class Connection:
        remote_addr, remote_port = "192.0.2.7", 40412

    server = https._server
    worker = threading.Thread(target=lambda: None)
    worker.conn = Connection()  # type: ignore[attr-defined]  # as cheroot's WorkerThread has it

    def cheroot_meets_a_gone_client() -> None:
        for message, level in (("socket.error 8", logging.WARNING), ("Unhandled error ...", logging.ERROR)):
            try:
                raise ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
            except ssl.SSLError:
                server.error_log(message, level=level, traceback=True)

    worker.run = cheroot_meets_a_gone_client  # type: ignore[method-assign]
    with Records("controller.api.server") as records:
        worker.start()
        worker.join()
        try:
            raise ValueError("a bug")
        except ValueError:
            server.error_log("ValueError('a bug')", level=logging.ERROR, traceback=True)
    gone, other = records.caught
    assert (gone.levelno, gone.getMessage(), gone.exc_info) == (
        logging.INFO, "API: client 192.0.2.7:40412 went away mid-request: EOF occurred in violation of protocol", None
    )  # fmt: skip
    assert (other.levelno, other.getMessage()) == (logging.ERROR, "API server: ValueError('a bug')")
    assert other.exc_info is not None and str(other.exc_info[1]) == "a bug"
    assert capfd.readouterr().err == ""


def test_cheroot_still_reports_a_gone_client_as_the_server_expects() -> None:
    """What `_Server.error_log` relies on, in the installed cheroot: its worker thread holds the connection it
    serves as `.conn`, and its connection reports a socket error from within the `except` that caught it."""
    process = threadpool.WorkerThread._process_connections_until_interrupted  # type: ignore[attr-defined]  # private
    worker = inspect.getsource(process)
    assert "self.conn = conn" in worker, "cheroot's WorkerThread no longer keeps its connection as .conn"
    communicate = inspect.getsource(HTTPConnection.communicate)
    assert "except socket.error" in communicate, "cheroot's connection no longer catches socket errors"
    handler = communicate.split("except socket.error", 1)[1].split("except (KeyboardInterrupt", 1)[0]
    assert "self.server.error_log(" in handler, "cheroot no longer logs a socket error from within its except"


def test_unusable_tls_files_name_the_setting(tmp_path: Path, pems: dict[str, tuple[Path, Path]]) -> None:
    cert, key = (str(p) for p in pems["api"])
    with pytest.raises(TlsError, match="api_tls_key: /nonexistent is not a readable file"):
        TlsFiles(cert, "/nonexistent").context()
    with pytest.raises(TlsError, match="api_tls_cert/api_tls_key: cannot use"):
        TlsFiles(cert, str(pems["client"][1])).context()  # a key of another certificate
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsError, match="api_tls_client_ca: cannot use"):
        TlsFiles(cert, key, client_ca=str(garbage)).context()


def test_controller_tls_settings(pems: dict[str, tuple[Path, Path]], monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = (str(p) for p in pems["api"])
    limits, tls = api_options(load_settings(["--api-tls-cert", cert, "--api-tls-key", key, "--api-threads", "12"]))
    assert (limits.threads, tls) == (12, TlsFiles(cert, key, None))
    monkeypatch.setenv("TENET_API_TLS_CLIENT_CA", cert)
    tls = api_options(load_settings(["--api-tls-cert", cert, "--api-tls-key", key]))[1]
    assert tls is not None and tls.client_ca == cert
    with pytest.raises(StartupError, match="api_tls_client_ca needs api_tls_cert and api_tls_key"):
        api_options(load_settings([]))
    monkeypatch.delenv("TENET_API_TLS_CLIENT_CA")
    with pytest.raises(StartupError, match="api_tls_key is required with api_tls_cert"):
        api_options(load_settings(["--api-tls-cert", cert]))
    with pytest.raises(StartupError, match=r"api_ready_waits: 8 is outside 0\.\.7"):
        api_options(load_settings(["--api-threads", "8", "--api-ready-waits", "8"]))
    assert ofp_tls(load_settings([])) is False
    assert ofp_tls(load_settings(["--ofp-tls-cert", cert, "--ofp-tls-key", key, "--ofp-tls-ca", cert])) is True
    with pytest.raises(StartupError, match="ofp_tls_ca is required for OpenFlow over TLS"):
        ofp_tls(load_settings(["--ofp-tls-cert", cert, "--ofp-tls-key", key]))
    with pytest.raises(StartupError, match="ofp_tls_key: /nonexistent is not a readable file"):
        ofp_tls(load_settings(["--ofp-tls-cert", cert, "--ofp-tls-key", "/nonexistent", "--ofp-tls-ca", cert]))
