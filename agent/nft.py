"""An nftables `netdev` ingress chain with policy drop on a pod's host end: the node's stack sees nothing of it.

On the userspace datapath OVS reads a host end through an AF_PACKET socket, which the kernel serves before its
ingress hooks (net/core/dev.c, __netif_receive_skb_core: taps, then tc, then netfilter ingress), so a chain
that drops every frame there leaves OVS forwarding as before while the node's IP stack never gets a frame
from the pod, whatever its addresses (even IPv4 from 0.0.0.0 to a broadcast address, which no sysctl stops).

What `nft add table netdev tenet; nft add chain netdev tenet HOST_END '{ type filter hook ingress device
HOST_END priority 0; policy drop; }'` does, as one nfnetlink batch on a socket of the calling thread's
namespace (the agent's); nothing to install. One chain per host end, named after it, in table `tenet`.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWTABLE, NFT_MSG_NEWCHAIN, NFT_MSG_DELCHAIN = 0, 3, 5
NFPROTO_NETDEV = 5
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME, NFTA_CHAIN_HOOK, NFTA_CHAIN_POLICY, NFTA_CHAIN_TYPE = 1, 3, 4, 5, 7
NFTA_HOOK_HOOKNUM, NFTA_HOOK_PRIORITY, NFTA_HOOK_DEV = 1, 2, 3
NF_NETDEV_INGRESS = 0
NF_DROP = 0
NLA_F_NESTED = 0x8000
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2
TABLE = "tenet"


class NftError(OSError):
    """The kernel refused a change; errno and the object are in the message."""


def drop_ingress(device: str) -> None:
    """Every frame arriving on `device` dropped at its netfilter ingress hook (table and chain made if
    missing; the same call again is a no-op). Raises NftError."""
    chain = [
        _attr(NFTA_CHAIN_TABLE, _text(TABLE)),
        _attr(NFTA_CHAIN_NAME, _text(device)),
        _attr(
            NFTA_CHAIN_HOOK | NLA_F_NESTED,
            _attr(NFTA_HOOK_HOOKNUM, struct.pack("!I", NF_NETDEV_INGRESS))
            + _attr(NFTA_HOOK_PRIORITY, struct.pack("!i", 0))
            + _attr(NFTA_HOOK_DEV, _text(device)),
        ),
        _attr(NFTA_CHAIN_POLICY, struct.pack("!I", NF_DROP)),
        _attr(NFTA_CHAIN_TYPE, _text("filter")),
    ]
    _batch(
        [
            (NFT_MSG_NEWTABLE, NLM_F_CREATE, _attr(NFTA_TABLE_NAME, _text(TABLE))),
            (NFT_MSG_NEWCHAIN, NLM_F_CREATE, b"".join(chain)),
        ],
        f"dropping ingress on {device}",
    )


def forget(device: str) -> bool:
    """Remove `device`'s chain; False if there was none (the kernel may have removed it with the device)."""
    body = _attr(NFTA_CHAIN_TABLE, _text(TABLE)) + _attr(NFTA_CHAIN_NAME, _text(device))
    try:
        _batch([(NFT_MSG_DELCHAIN, 0, body)], f"removing the ingress chain of {device}")
    except NftError as error:
        if error.errno == errno.ENOENT:
            return False
        raise
    return True


def _batch(messages: list[tuple[int, int, bytes]], doing: str) -> None:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sequence = 1
        parts = [_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, sequence, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES)]
        waiting = set()
        for kind, flags, body in messages:
            sequence += 1
            waiting.add(sequence)
            header = _message(
                (NFNL_SUBSYS_NFTABLES << 8) | kind, NLM_F_REQUEST | NLM_F_ACK | flags, sequence, NFPROTO_NETDEV, 0
            )
            parts.append(_with_length(header + body))
        parts.append(_message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, sequence + 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES))
        sock.send(b"".join(parts))
        while waiting:
            data = sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind, _flags, number, _pid = struct.unpack_from("=IHHII", data, offset)
                if kind == NLMSG_ERROR and number in waiting:
                    code = -struct.unpack_from("=i", data, offset + 16)[0]
                    if code:
                        raise NftError(code, f"{doing}: {os.strerror(code)}")
                    waiting.discard(number)
                offset += (length + 3) & ~3 if length else len(data)


def _message(kind: int, flags: int, sequence: int, family: int, res_id: int) -> bytes:
    """nlmsghdr (length filled in by _with_length) and nfgenmsg (family, version 0, res_id)."""
    return _with_length(struct.pack("=IHHII", 0, kind, flags, sequence, 0) + struct.pack("!BBH", family, 0, res_id))


def _with_length(message: bytes) -> bytes:
    return struct.pack("=I", len(message)) + message[4:]


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _text(value: str) -> bytes:
    return value.encode() + b"\0"
