"""The OpenFlow listener: os-ken's, with every connection that fails logged.

os-ken's native hub runs each accepted connection in a thread whose `TaskExit` is `Exception`, so whatever
the connection raises is dropped without a word: alone, os-ken says nothing of a switch whose TLS handshake
fails, and only the switch's own log tells why. `LoggingStreamServer`, which `osken_fixes.apply()` puts in
place of os-ken's listener, logs:

- a failed TLS handshake as a warning with the peer and the TLS library's reason, e.g. `OpenFlow: TLS
  handshake with 10.0.0.12:40412 failed: certificate verify failed: unable to get local issuer certificate`
  (a certificate no CA of the controller's signed). An alert the peer sent is marked as such (`tlsv1 alert
  unknown ca (sent by the peer: it refused the controller's certificate)`), and a peer that does not speak
  TLS gets a hint;
- a connection closed during the handshake (a port probe, a health check), or that has not completed it
  within `HANDSHAKE_TIMEOUT` s (a peer that says nothing would otherwise hold its thread for ever), at info;
- on a plain TCP listener, a peer that speaks TLS (a switch set to `ssl:`) as a warning with a hint;
- a switch session that ends in any other exception, with its traceback, at error.

A switch retries for ever (every 8 s at most, by default), and a health check comes back as often: the same
kind of line from the same host is logged once per `REPEAT_INTERVAL` s, with how many were left out since.
os-ken's own line before the end of a session that failed before the switch gave its datapath id, "Error in
the datapath None from (...)", says less, with no limit: `DropOsKenSessionError`, which `apply()` puts on
os-ken's logger, leaves it out (and keeps the line of a session that had a datapath id, which names it).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from os_ken.exception import OFPUnknownVersion
from os_ken.lib import hub

log = logging.getLogger(__name__)

REPEAT_INTERVAL = 300.0  # s between two lines for one peer host and one reason
HANDSHAKE_TIMEOUT = 10.0  # s; os-ken's Datapath sets its own timeout on the session's socket
Handle = Callable[[Any, Any], None]  # (socket, address) -> None, as os-ken's StreamServer calls it
OSKEN_LOGGER = "os_ken.controller.controller"  # the logger of os-ken's datapath_connection_factory
OSKEN_SESSION_ERROR = "Error in the datapath %s from %s"  # what it logs before re-raising a session's error


class LoggingStreamServer(hub.StreamServer):
    """os-ken's listener (`hub.StreamServer`, same arguments), logging each connection that fails (see the
    module docstring)."""

    def __init__(self, listen_info: Any, handle: Handle | None = None, *args: Any, **kwargs: Any) -> None:
        self.repeats = Repeats(REPEAT_INTERVAL)
        super().__init__(listen_info, _session_logged(handle, self.repeats) if handle else None, *args, **kwargs)
        if self.handle is not None:  # TLS: the handshake, then the session; plain TCP: the session alone
            self.handle: Any = _handshake_logged(self.handle, self.repeats)


class Repeats:
    """Which of many like events to log: the first of each key, then at most one per `interval` s, telling
    how many were left out since. Thread-safe. It keeps the `size` keys seen last: a key pushed out (by
    `size` others seen since) is logged anew, without the count it had."""

    def __init__(self, interval: float, size: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval, self.size, self.clock = interval, size, clock
        self._seen: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()  # key -> (last logged, left out)
        self._lock = threading.Lock()

    def admit(self, key: Hashable) -> int | None:
        """None: leave this one out. Else log it, with the number of those left out since the last logged."""
        with self._lock:
            now = self.clock()
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.interval:
                self._seen[key] = (last[0], last[1] + 1)
                self._seen.move_to_end(key)
                return None
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return last[1] if last is not None else 0


def tls_reason(error: ssl.SSLError) -> str:
    """What failed, in words: "certificate verify failed: unable to get local issuer certificate", "peer did
    not return a certificate", "tlsv1 alert unknown ca (sent by the peer: ...)", "wrong version number
    (the peer does not speak TLS: ...)"; the error's own text when OpenSSL gave no reason code."""
    code = getattr(error, "reason", None)  # set by OpenSSL's errors only
    if not code:
        return str(error)
    text = code.lower().replace("_", " ")
    detail = getattr(error, "verify_message", None)
    if detail:
        return f"{text}: {detail}"
    if "_ALERT_" in code:  # the peer's alert: the peer refused the handshake, not the controller
        why = ": it refused the controller's certificate" if "CERTIFICATE" in code or "UNKNOWN_CA" in code else ""
        return f"{text} (sent by the peer{why})"
    if code == "HTTP_REQUEST":
        return f"{text} (the peer speaks HTTP, not TLS)"
    if code in ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL"):
        return f"{text} (the peer does not speak TLS: a switch set to tcp: rather than ssl:?)"
    return text


class DropOsKenSessionError(logging.Filter):
    """Leaves out os-ken's "Error in the datapath None from (...)" (`datapath_connection_factory`, at error,
    at each retry of a switch that fails before it gives its datapath id, without the exception): for an
    accepted connection the listener logs that very session's end itself, with the exception or a hint,
    once per REPEAT_INTERVAL for each host and kind of line (module docstring). The line of a session that
    had a datapath id is kept: it is the one that names it. (os-ken's outgoing connections,
    `ofp_switch_address_list`, which Tenet does not use, do not go through the listener.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.msg == OSKEN_SESSION_ERROR and isinstance(record.args, tuple) and record.args[:1] == ("None",)
        )


def peer(address: Any) -> str:
    """host:port, [host]:port for IPv6; anything else as it is ("?" for nothing: a unix socket's peer)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) or "?"


def _say(repeats: Repeats, level: int, address: Any, kind: str, text: str, *, exc_info: bool = False) -> None:
    """Log `text` unless a line of this kind from this host was logged less than the interval ago."""
    host = address[0] if isinstance(address, tuple) and address else address
    left_out = repeats.admit((host, kind))
    if left_out is None:
        return
    also = f" ({left_out} more like it from this host since the last such line)" if left_out else ""
    log.log(level, "OpenFlow: %s%s", text, also, exc_info=exc_info)


def _session_logged(handle: Handle, repeats: Repeats) -> Handle:
    def run_session(sock: Any, address: Any) -> None:
        try:
            handle(sock, address)
        except OFPUnknownVersion as error:  # its first byte: a TLS handshake record is 0x16
            if error.kwargs.get("version") != 0x16:
                raise
            text = (
                f"{peer(address)} speaks TLS, but this listener serves plain TCP "
                "(a switch set to ssl: while the controller has no --ofp-tls-* settings?)"
            )
            _say(repeats, logging.WARNING, address, "TLS to plain TCP", text)

    def run_session_logged(sock: Any, address: Any) -> None:
        try:
            run_session(sock, address)
        except Exception as error:  # the hub would drop it; os-ken's own line says less (DropOsKenSessionError)
            text = f"the session of {peer(address)} ended with an error"
            _say(repeats, logging.ERROR, address, f"{type(error).__name__}: {error}", text, exc_info=True)

    return run_session_logged


def _handshake_logged(handle: Handle, repeats: Repeats) -> Handle:
    def run_connection(sock: Any, address: Any) -> None:
        try:
            # For the TLS handshake: os-ken's Datapath sets its own timeout on the session's socket first thing.
            sock.settimeout(HANDSHAKE_TIMEOUT)
            handle(sock, address)  # the session logs its own end: what is left comes from the handshake
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError) as error:
            text = f"{peer(address)} closed the connection during the TLS handshake: {error}"
            _say(repeats, logging.INFO, address, "closed", text)
        except TimeoutError:
            text = f"{peer(address)} did not complete the TLS handshake within {HANDSHAKE_TIMEOUT:g} s"
            _say(repeats, logging.INFO, address, "timeout", text)
        except ssl.SSLError as error:
            reason = tls_reason(error)
            _say(repeats, logging.WARNING, address, reason, f"TLS handshake with {peer(address)} failed: {reason}")
        except Exception as error:  # what no one foresaw
            text = f"the TLS handshake with {peer(address)} failed"
            _say(repeats, logging.ERROR, address, f"{type(error).__name__}: {error}", text, exc_info=True)

    return run_connection
