"""The agent reads the kernel's netlink acks and errors from the raw reply (struct nlmsgerr, linux/netlink.h)."""

from __future__ import annotations

import struct

import pytest
from pyroute2.netlink import NLM_F_ACK_TLVS, NLM_F_CAPPED, NLMSG_DONE, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError as KernelError

from agent.netlink import _raise_error, _reason

REQUEST = struct.pack("=IHHII", 16 + 8, 16, 0x405, 7, 0) + b"\x01\x02\x03\x04\x05\x06\x07\x08"  # a request


def reply(kind: int, errno: int, flags: int = 0, *, echo: bytes = REQUEST, tlvs: bytes = b"") -> bytes:
    body = struct.pack("=i", -errno) + echo + tlvs
    return struct.pack("=IHHII", 16 + len(body), kind, flags, 7, 0) + body


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)


def test_an_ack_raises_nothing() -> None:
    _raise_error(reply(NLMSG_ERROR, 0, echo=REQUEST[:16]))
    _raise_error(reply(NLMSG_DONE, 0, echo=b""))


@pytest.mark.parametrize("capped", [False, True])
def test_an_error_raises_its_errno_and_the_kernels_words(capped: bool) -> None:
    words = tlv(1, b"Nexthop has invalid gateway\0")
    flags = NLM_F_ACK_TLVS | (NLM_F_CAPPED if capped else 0)
    echo = REQUEST[:16] if capped else REQUEST
    with pytest.raises(KernelError) as raised:
        _raise_error(reply(NLMSG_ERROR, 101, flags, echo=echo, tlvs=tlv(3, b"\0\0\0\0") + words))
    assert raised.value.code == 101
    assert _reason(raised.value) == "Network is unreachable (Nexthop has invalid gateway)"


def test_an_error_without_words_raises_its_errno_alone() -> None:
    with pytest.raises(KernelError) as raised:
        _raise_error(reply(NLMSG_ERROR, 17))
    assert raised.value.code == 17 and _reason(raised.value) == "File exists"
    with pytest.raises(KernelError) as raised:  # a dump that failed: its NLMSG_DONE carries the errno
        _raise_error(reply(NLMSG_DONE, 16, echo=b""))
    assert raised.value.code == 16


def test_a_failed_dump_raises_the_kernels_words_too() -> None:
    # NLMSG_DONE echoes no request: its attributes follow the errno (net/netlink/af_netlink.c netlink_dump_done)
    words = tlv(1, b"Invalid values in header for FIB dump request\0")
    with pytest.raises(KernelError) as raised:
        _raise_error(reply(NLMSG_DONE, 22, NLM_F_ACK_TLVS, echo=b"", tlvs=words))
    assert _reason(raised.value) == "Invalid argument (Invalid values in header for FIB dump request)"
