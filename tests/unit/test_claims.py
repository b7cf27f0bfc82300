"""Who may hold a datapath id: the echo probes a holder must miss, and the certificate's CN over TLS."""

from __future__ import annotations

from types import SimpleNamespace

from controller.app.claims import PROBE_TIMEOUT, PROBES, certificate_problem, holder_gone


class Holder:
    """A session whose echo replies follow `replies` (True: answered), counting the probes."""

    def __init__(self, replies: list[bool], *, alive: bool = True) -> None:
        self.replies, self.probes, self.is_alive = list(replies), 0, alive

    def alive(self) -> bool:
        return self.is_alive

    def answers(self, timeout: float) -> bool:
        assert timeout == PROBE_TIMEOUT
        self.probes += 1
        return self.replies.pop(0)


def test_one_missed_echo_loses_nothing() -> None:
    waited: list[float] = []
    holder = Holder([False, False, True])
    assert PROBES == 3
    assert holder_gone(holder, sleep=waited.append) is False
    assert holder.probes == 3


def test_the_holder_loses_after_missing_every_probe_over_at_least_three_seconds() -> None:
    waited: list[float] = []
    holder = Holder([False, False, False, True])
    assert holder_gone(holder, sleep=waited.append) is True
    assert holder.probes == PROBES
    assert sum(waited) >= PROBES * PROBE_TIMEOUT - 0.05  # probes that fail at once still take their second


def test_a_closed_connection_loses_at_once() -> None:
    holder = Holder([], alive=False)
    assert holder_gone(holder, sleep=lambda _: None) is True
    assert holder.probes == 0


def _dp(common_name: str | None) -> SimpleNamespace:
    subject: tuple[tuple[tuple[str, str]], ...] = ((("organizationName", "Open vSwitch"),),)
    if common_name is not None:
        subject += ((("commonName", common_name),),)
    return SimpleNamespace(socket=SimpleNamespace(getpeercert=lambda: {"subject": subject}))


def test_the_certificate_must_name_the_node() -> None:
    assert certificate_problem(_dp("node1 id:4f6c1e0a-2d1b-4a57-9d0e-1f1f2f3f4f5f"), "node1") is None
    assert certificate_problem(_dp("node1"), "node1") is None  # ovs-pki --unique
    problem = certificate_problem(_dp("node2 id:4f6c"), "node1") or ""
    assert "subject CN 'node2 id:4f6c'" in problem and "does not name node node1" in problem
    assert certificate_problem(_dp("node10 id:x"), "node1") is not None
    assert "no subject CN" in (certificate_problem(_dp(None), "node1") or "")


def test_plain_tcp_has_no_certificate_to_check() -> None:
    assert certificate_problem(SimpleNamespace(socket=object()), "node1") is None
