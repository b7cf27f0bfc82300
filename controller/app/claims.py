"""Who may hold a node's datapath id on the OpenFlow port.

OpenFlow authenticates nothing: over plain TCP, anyone who reaches the port can send a FEATURES_REPLY with any
datapath id, so the port must be reachable from the nodes only (README, "TLS for OpenFlow and HTTPS for the
API"). Two rules make a takeover hard even so. A connection claiming the datapath id of a switch that has a
session takes it over only once that holder's connection is gone or the holder missed PROBES echo requests in
a row (at least PROBES * PROBE_TIMEOUT s): one slow reply loses nothing. And with OpenFlow over TLS the
switch's certificate must name the node whose datapath id it claims, so a certificate of one node (or any
other the switch CA signed) cannot claim another node's switch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

PROBE_TIMEOUT = 1.0  # s an echo request may take before it counts as missed
PROBES = 3  # consecutive echo requests a switch holding a datapath id must miss before another takes it over


class Holder(Protocol):
    """What `holder_gone` asks of a session (controller.app.session.SwitchSession)."""

    def alive(self) -> bool: ...

    def answers(self, timeout: float) -> bool: ...


def holder_gone(
    session: Holder,
    *,
    probes: int = PROBES,
    timeout: float = PROBE_TIMEOUT,
    sleep: Callable[[float], Any] = time.sleep,
) -> bool:
    """Whether the switch holding a datapath id has lost it: its connection is closed, or it missed `probes`
    echo requests in a row, each given `timeout` s (a probe that fails sooner still takes `timeout` s, so
    losing takes at least probes * timeout s). False as soon as one is answered. Blocks; call off os-ken's
    event thread (the replies come through it)."""
    for _ in range(probes):
        if not session.alive():
            return True
        started = time.monotonic()
        if session.answers(timeout):
            return False
        sleep(max(0.0, timeout - (time.monotonic() - started)))
    return True


def certificate_problem(dp: Any, node: str) -> str | None:
    """Why a switch connected over TLS may not claim node `node`'s datapath id, or None (also for plain TCP,
    where OpenFlow authenticates nothing). The subject CN of its certificate must name the node: `node`, or
    "`node` id:UUID" as `ovs-pki req+sign NODE switch` writes it (without --unique)."""
    getpeercert = getattr(getattr(dp, "socket", None), "getpeercert", None)
    if getpeercert is None:
        return None
    try:
        certificate = getpeercert() or {}
    except ValueError:  # the handshake is not done: cannot happen after FEATURES_REPLY
        certificate = {}
    names = [value for rdn in certificate.get("subject", ()) for key, value in rdn if key == "commonName"]
    if any(name == node or name.startswith(f"{node} id:") for name in names):
        return None
    found = f"subject CN {names[0]!r}" if names else "no subject CN"
    return f"its certificate has {found}, which does not name node {node} (ovs-pki req+sign {node} switch)"
