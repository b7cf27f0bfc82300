"""The HTTP server under the API: cheroot, with a bounded thread pool, per-connection timeouts and optional TLS.

    server = serve(app, "127.0.0.1", 8780, limits=Limits(threads=16), tls=TlsFiles(cert, key)).start()
    ...
    server.stop()

Why cheroot (CherryPy's server): a pure-Python WSGI server, kept up to date, with a fixed pool of worker
threads and a bounded accept queue (a connection over the bound gets 503 at once), a socket timeout on every
accepted connection (idle keep-alive connections and clients that stop sending mid-request are closed after
it), and TLS built in. Waitress would also do, but has no TLS of its own.

A worker thread answers one request at a time, and `GET /v1/endpoints/{id}/ready?wait=S` keeps its thread
for up to S seconds. `ReadyWaits` caps how many such waits run at once below the thread count, so the
remaining threads always serve every other request; tenant tokens hold at most half of them, each tenant at
most a quarter of that half (at least 1); a wait over a cap answers 503 with `Retry-After`, unless the
endpoint is ready already.

cheroot performs the TLS handshake in its accept loop, where a client that connects and stays silent would
hold up every later connection for the whole timeout: here the handshake is deferred to the worker thread
that serves the connection's first request.

cheroot writes its own messages (a socket error mid-request, with its traceback) bare to stderr; here they
go to the controller's log at their level, and a client that went away mid-request is one line at info.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cheroot import wsgi  # 10.x and 11.x (setup.cfg): `_Server` uses its connection manager
from cheroot.makefile import StreamReader, StreamWriter
from cheroot.server import HTTPConnection
from cheroot.ssl import Adapter

from controller.api.http import HttpError

log = logging.getLogger(__name__)
RETRY_AFTER = 1  # seconds a client is told to wait when every readiness wait slot is taken

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# (node, port name, planned ofport, change sequence, seconds to wait) -> readiness; see controller.api.routes
Readiness = Callable[[str, str, int, int, float], dict[str, Any]]


class ServeError(OSError):
    """The API cannot listen where it was told to (the port is taken, the address is not ours)."""


class TlsError(ValueError):
    """A TLS file is missing or unusable; the message names the setting and the file."""


@dataclass(frozen=True)
class Limits:
    """How much the server takes on: `threads` workers (requests served at once), of which at most
    `ready_waits` wait for endpoint readiness; `timeout` seconds a connection may sit idle or take for one
    read or write before it is closed; `queue` accepted connections waiting for a worker before new ones get
    503."""

    threads: int = 16
    ready_waits: int = 8
    timeout: float = 10.0
    queue: int = 64

    def check(self) -> None:
        """Raise ValueError naming the setting when the numbers cannot work together."""
        if self.threads < 2:
            raise ValueError(f"api_threads: want at least 2, got {self.threads}")
        if not 0 <= self.ready_waits < self.threads:
            raise ValueError(
                f"api_ready_waits: {self.ready_waits} is outside 0..{self.threads - 1} "
                f"(below api_threads, so other requests always find a thread)"
            )
        if self.timeout <= 0:
            raise ValueError(f"api_timeout: want a positive number of seconds, got {self.timeout:g}")


@dataclass(frozen=True)
class TlsFiles:
    """The server's PEM certificate (chain) and key; `client_ca`, when given, makes TLS mutual: clients must
    show a certificate that CA signed."""

    cert: str
    key: str
    client_ca: str | None = None

    def context(self) -> ssl.SSLContext:
        """A server context, TLS 1.2 or later; raises TlsError naming the setting that is wrong."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        for setting, path in (("api_tls_cert", self.cert), ("api_tls_key", self.key)):
            if not Path(path).is_file():
                raise TlsError(f"{setting}: {path} is not a readable file")
        try:
            context.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as error:
            raise TlsError(f"api_tls_cert/api_tls_key: cannot use {self.cert} with {self.key}: {error}") from None
        if self.client_ca:
            try:
                context.load_verify_locations(cafile=self.client_ca)
            except (ssl.SSLError, OSError) as error:
                raise TlsError(f"api_tls_client_ca: cannot use {self.client_ca}: {error}") from None
            context.verify_mode = ssl.CERT_REQUIRED
        return context


class ReadyWaits:
    """`readiness` with at most `slots` calls that wait (wait > 0) running at once.

    Tenant tokens together hold at most `tenant_slots` of them (half, rounded down), so the node agents'
    waits (a pod's CNI ADD) and the admin's always find the rest: no tenant can block pod creation by
    holding every slot. Within that share each tenant holds at most `per_tenant` (a quarter of the share,
    at least 1: with the default 8 slots, 1 each, so at least four tenants wait at once and none can take
    the share from the others). A tenant's waits are counted by the tenant of the endpoint waited for. A
    call over any of these caps asks without waiting: a ready endpoint is answered at once, otherwise
    HttpError 503 with `Retry-After` naming the cap. Calls with wait 0 never take a slot.
    """

    def __init__(self, readiness: Readiness, slots: int) -> None:
        self.readiness = readiness
        self.slots = slots
        self.tenant_slots = slots // 2
        self.per_tenant = max(1, self.tenant_slots // 4)
        self._lock = threading.Lock()
        self._busy = 0  # waits in progress, every token's
        self._by_tenants = 0  # of which tenant tokens'
        self._by_tenant: dict[str, int] = {}  # tenant -> its waits in progress (absent: none)

    def __call__(self, node: str, port: str, ofport: int, sequence: int, wait: float) -> dict[str, Any]:
        return self.limited(node, port, ofport, sequence, wait, tenant=None)

    def limited(
        self, node: str, port: str, ofport: int, sequence: int, wait: float, *, tenant: str | None
    ) -> dict[str, Any]:
        """As `readiness`; `tenant`: the tenant a tenant token waits for (its endpoint's), held to
        `per_tenant` and with the other tenants to `tenant_slots`; None for the admin's and node tokens."""
        if wait <= 0:
            return self.readiness(node, port, ofport, sequence, 0.0)
        refusal = self._take(tenant)
        if refusal is not None:
            state = self.readiness(node, port, ofport, sequence, 0.0)
            if state.get("ready"):
                return state
            raise HttpError(
                503,
                f"{refusal}; ask again in {RETRY_AFTER} s",
                field="wait",
                headers={"Retry-After": str(RETRY_AFTER)},
            )
        try:
            return self.readiness(node, port, ofport, sequence, wait)
        finally:
            self._give_back(tenant)

    def _take(self, tenant: str | None) -> str | None:
        """Take a slot (and one of `tenant`'s); the cap that is full, in words, when none is free."""
        with self._lock:
            if tenant is not None:
                held = self._by_tenant.get(tenant, 0)
                if held >= self.per_tenant:
                    return (
                        f"tenant {tenant!r} already holds {held} readiness wait(s), the per-tenant limit "
                        "(the most one tenant may hold at once)"
                    )
                if self._by_tenants >= self.tenant_slots:
                    return (
                        f"{self.tenant_slots} readiness waits are in progress by tenant tokens, the most "
                        "tenant tokens may hold at once"
                    )
            if self._busy >= self.slots:
                return f"{self.slots} readiness waits are in progress, the most this controller serves at once"
            self._busy += 1
            if tenant is not None:
                self._by_tenants += 1
                self._by_tenant[tenant] = self._by_tenant.get(tenant, 0) + 1
            return None

    def _give_back(self, tenant: str | None) -> None:
        with self._lock:
            self._busy -= 1
            if tenant is not None:
                self._by_tenants -= 1
                left = self._by_tenant.pop(tenant) - 1
                if left:
                    self._by_tenant[tenant] = left


# --- cheroot -------------------------------------------------------------------------------------------


class _DeferredHandshake(Adapter):
    """TLS for cheroot with the handshake left to the worker thread (see `_TlsConnection`)."""

    def __init__(self, context: ssl.SSLContext) -> None:  # the base class wants file names; a context will do
        self.context = context

    def bind(self, sock: socket.socket) -> socket.socket:
        return sock

    def wrap(self, sock: socket.socket) -> tuple[ssl.SSLSocket, dict[str, str]]:
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, {"HTTPS": "on"}

    def get_environ(self) -> dict[str, str]:
        return {"HTTPS": "on"}

    def makefile(self, sock: socket.socket, mode: str = "r", bufsize: int = -1) -> Any:
        return (StreamReader if "r" in mode else StreamWriter)(sock, mode, bufsize)


class _TlsConnection(HTTPConnection):
    """Completes the TLS handshake (within the server's timeout) before reading the first request."""

    handshaken = False

    def communicate(self) -> bool:
        if not self.handshaken and isinstance(self.socket, ssl.SSLSocket):
            try:
                self.socket.do_handshake()
            except (ssl.SSLError, OSError) as error:
                log.info("TLS handshake with %s failed: %s", _client(self), error)
                return False
            self.handshaken = True
        return super().communicate()


class LoggedErrors:
    """For a cheroot server class (listed before `wsgi.Server`): cheroot's own messages go to `error_logger`
    at their level, where cheroot writes them bare to stderr, and a client gone mid-request, which cheroot
    reports with tracebacks ("socket.error 8"), is one info line per connection."""

    error_logger = log
    error_prefix = "API"  # the lines begin "API: " and "API server: "

    def error_log(self, msg: str = "", level: int = logging.INFO, traceback: bool = False) -> None:
        error = sys.exc_info()[1]
        gone = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionResetError, BrokenPipeError)
        if isinstance(error, gone) and level < logging.CRITICAL:  # CRITICAL: cheroot itself gives up
            # cheroot says it twice: "socket.error 8" on the read, then its 500 answer fails on the write.
            conn = getattr(threading.current_thread(), "conn", None)  # the connection cheroot's worker serves
            if conn is None or not getattr(conn, "gone_logged", False):
                if conn is not None:
                    conn.gone_logged = True
                client = _client(conn)
                self.error_logger.info("%s: client %s went away mid-request: %s", self.error_prefix, client, error)
            return
        self.error_logger.log(level, "%s server: %s", self.error_prefix, msg, exc_info=traceback)


def _client(conn: Any) -> str:
    """A cheroot connection's peer: host:port, [host]:port for IPv6."""
    host, port = getattr(conn, "remote_addr", None) or "?", getattr(conn, "remote_port", None) or "?"
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class _Server(LoggedErrors, wsgi.Server):
    """cheroot's WSGI server, except that a new connection with nothing to read yet waits in the connection
    manager's selector (as an idle keep-alive connection does, closed after the timeout) instead of holding a
    worker thread while its client says nothing, and that its messages go to the log (`LoggedErrors`)."""

    def process_conn(self, conn: HTTPConnection) -> None:
        if not getattr(conn, "seen", False):
            conn.seen = True  # type: ignore[attr-defined]  # our own mark on cheroot's connection
            poll = select.poll()  # not select.select: descriptors above 1023
            poll.register(conn.socket.fileno(), select.POLLIN)
            if not poll.poll(0) and self.ready:
                self._connections.put(conn)  # type: ignore[attr-defined]  # set in prepare(), not in the stubs
                return
        super().process_conn(conn)


class ApiServer:
    """A bound, not yet serving API server; `start()` serves from a thread, `stop()` ends it.

    `serve_forever()`/`shutdown()`/`server_close()` serve from the caller's thread instead, as the standard
    library's servers do.
    """

    def __init__(self, server: wsgi.Server, scheme: str) -> None:
        self._server = server
        self.scheme = scheme
        self.thread: threading.Thread | None = None

    @property
    def server_address(self) -> tuple[str, int]:
        host, port = self._server.bind_addr[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.server_address
        return f"{self.scheme}://[{host}]:{port}" if ":" in host else f"{self.scheme}://{host}:{port}"

    def serve_forever(self) -> None:
        """Serve until `shutdown()`."""
        self._server.serve()

    def start(self) -> ApiServer:
        """Serve from a background thread."""
        self.thread = threading.Thread(target=self.serve_forever, name="tenet-api", daemon=True)
        self.thread.start()
        log.info("northbound API listening on %s", self.url)
        return self

    def shutdown(self) -> None:
        """Stop accepting and serving; waits for the workers' current requests (a readiness wait may take up
        to its `wait`)."""
        self._server.stop()

    def server_close(self) -> None:
        """Nothing left to release once `shutdown()` returned; for the standard library's interface."""

    def stop(self, timeout: float | None = None) -> None:
        """`shutdown()`, waiting at most `timeout` seconds (None: as long as it takes)."""
        stopping = threading.Thread(target=self.shutdown, name="tenet-api-stop", daemon=True)
        stopping.start()
        stopping.join(timeout)
        if self.thread is not None:
            self.thread.join(timeout)


def serve(
    app: WsgiApp, host: str, port: int, *, limits: Limits | None = None, tls: TlsFiles | None = None
) -> ApiServer:
    """Listen on host:port (0: any free port) for `app`; raises ServeError when the address cannot be had,
    TlsError when a TLS file is unusable, ValueError when `limits` do not add up."""
    limits = limits or Limits()
    limits.check()
    context = tls.context() if tls else None
    server = _Server(
        (host, port),
        app,
        numthreads=limits.threads,
        max=limits.threads,
        request_queue_size=limits.queue,
        timeout=limits.timeout,  # type: ignore[arg-type]  # a socket timeout: any float; the stubs say int
        shutdown_timeout=1,
        accepted_queue_size=limits.queue,
        accepted_queue_timeout=0,  # a full queue answers 503 at once instead of holding up the accept loop
    )
    server.max_request_header_size = 64 * 1024
    # How often the connection manager looks for expired idle connections, and how long `stop` may wait for it.
    server.expiration_interval = 0.1
    if context is not None:
        server.ssl_adapter = _DeferredHandshake(context)
        server.ConnectionClass = _TlsConnection
    try:
        server.prepare()
    except OSError as error:
        # cheroot folds the errors of every address it tried into one message: "... [Errno 98] ..."
        in_use = error.errno == errno.EADDRINUSE or f"[Errno {errno.EADDRINUSE}]" in str(error)
        why = "the port is already in use" if in_use else (error.strerror or str(error))
        raise ServeError(
            errno.EADDRINUSE if in_use else error.errno, f"cannot serve the API on {host}:{port}: {why}"
        ) from None
    return ApiServer(server, "https" if context is not None else "http")
