"""The OpenFlow listener: os-ken's, with every connection that fails logged.

os-ken's native hub runs each accepted connection in a thread whose `TaskExit` is `Exception`, so whatever
the connection raises is dropped without a word: alone, os-ken says nothing of a switch whose TLS handshake
fails, and only the switch's own log tells why. `LoggingStreamServer`, which `osken_fixes.apply()` puts in
place of os-ken's listener, logs:

- a failed TLS handshake as a warning with the peer and the TLS library's reason, e.g. `OpenFlow: TLS
  handshake with 10.0.0.12:40412 failed: certificate verify failed: unable to get local issuer certificate`
  (a certificate no CA of the controller's signed). An alert the switch sent is marked as such (`tlsv1
  alert unknown ca (sent by the switch: it refused the controller's certificate)`), and a peer that does
  not speak TLS gets a hint. A switch retries for ever (every 8 s at most, by default), so the same reason
  from the same host is logged once per `REPEAT_INTERVAL` s, with how many were left out;
- a connection closed during the handshake (a port probe, a health check), or that has not completed it
  within `HANDSHAKE_TIMEOUT` s (a peer that says nothing would otherwise hold its thread for ever), at info;
- a switch session that ends in an exception, with its traceback, at error.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from os_ken.lib import hub

log = logging.getLogger(__name__)

REPEAT_INTERVAL = 300.0  # s between two lines for one peer host and one reason
HANDSHAKE_TIMEOUT = 10.0  # s; os-ken's Datapath sets its own timeout on the session's socket
Handle = Callable[[Any, Any], None]  # (socket, address) -> None, as os-ken's StreamServer calls it


class LoggingStreamServer(hub.StreamServer):
    """os-ken's listener (`hub.StreamServer`, same arguments), logging each connection that fails (see the
    module docstring)."""

    def __init__(self, listen_info: Any, handle: Handle | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(listen_info, _session_logged(handle) if handle else None, *args, **kwargs)
        self.repeats = Repeats(REPEAT_INTERVAL)
        if self.handle is not None:  # TLS: the handshake, then the session; plain TCP: the session
            self.handle: Any = _handshake_logged(self.handle, self.repeats)


class Repeats:
    """Which of many like events to log: the first of each key, then at most one per `interval` s, telling
    how many were left out since. Thread-safe; keeps the newest `size` keys."""

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
                return None
            self._seen[key] = (now, 0)
            self._seen.move_to_end(key)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return last[1] if last is not None else 0


def tls_reason(error: ssl.SSLError) -> str:
    """What failed, in words: "certificate verify failed: unable to get local issuer certificate", "peer did
    not return a certificate", "tlsv1 alert unknown ca (sent by the switch: ...)", "wrong version number
    (the peer does not speak TLS: ...)"; the error's own text when OpenSSL gave no reason code."""
    code = getattr(error, "reason", None)  # set by OpenSSL's errors only
    if not code:
        return str(error)
    text = code.lower().replace("_", " ")
    detail = getattr(error, "verify_message", None)
    if detail:
        return f"{text}: {detail}"
    if "_ALERT_" in code:  # the peer's alert: it refused the handshake, not the controller
        why = ": it refused the controller's certificate" if "CERTIFICATE" in code or "UNKNOWN_CA" in code else ""
        return f"{text} (sent by the switch{why})"
    if code in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL"):
        return f"{text} (the peer does not speak TLS: a switch set to tcp: rather than ssl:?)"
    return text


def peer(address: Any) -> str:
    """host:port, [host]:port for IPv6; anything else as it is."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)


def _session_logged(handle: Handle) -> Handle:
    def run_session(sock: Any, address: Any) -> None:
        try:
            handle(sock, address)
        except Exception:  # the hub would drop it; os-ken has logged "Error in the datapath" at most
            log.exception("OpenFlow: the session of %s ended with an error", peer(address))

    return run_session


def _handshake_logged(handle: Handle, repeats: Repeats) -> Handle:
    def run_connection(sock: Any, address: Any) -> None:
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT)
            handle(sock, address)  # the session logs its own end: what is left comes from the handshake
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError, ConnectionError) as error:
            log.info("OpenFlow: %s closed the connection during the TLS handshake: %s", peer(address), error)
        except TimeoutError:
            log.info("OpenFlow: %s did not complete the TLS handshake within %g s", peer(address), HANDSHAKE_TIMEOUT)
        except ssl.SSLError as error:
            reason = tls_reason(error)
            left_out = repeats.admit((address[0] if isinstance(address, tuple) else address, reason))
            if left_out is None:
                return
            also = f" ({left_out} more from this host since the last such line)" if left_out else ""
            log.warning("OpenFlow: TLS handshake with %s failed: %s%s", peer(address), reason, also)
        except Exception:  # a timeout, or what no one foresaw
            log.exception("OpenFlow: the TLS handshake with %s failed", peer(address))

    return run_connection
