"""The kernel refusing an nftables batch (here: a caller without CAP_NET_ADMIN) is an error at once, naming
what was refused, never a wait for an answer that does not come."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import netlink as netlink_module

ROOT = Path(__file__).resolve().parents[2]
CALL = (
    "import sys, time\n"
    "from agent import nft\n"
    "started = time.monotonic()\n"
    "try:\n"
    "    nft.{call}('tnnopriv0')\n"
    "except nft.NftError as error:\n"
    "    print(f'{{time.monotonic() - started:.3f}} {{error.errno}} {{error}}')\n"
    "    sys.exit(3)\n"
    "sys.exit(0)\n"
)


def unprivileged(call: str) -> subprocess.CompletedProcess[str]:
    command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
    return subprocess.run(
        [*command, CALL.format(call=call)], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )


def test_a_refused_batch_fails_at_once_naming_the_change() -> None:
    for call, doing in (("drop_ingress", "dropping ingress on tnnopriv0"), ("forget", "removing the ingress chain")):
        started = time.monotonic()
        done = unprivileged(call)
        assert done.returncode == 3, (done.stdout, done.stderr)
        took, errno_text, message = done.stdout.split(" ", 2)
        assert float(took) < 2.0 and int(errno_text) == 1  # EPERM, answered on the batch-begin message
        assert doing in message and "Operation not permitted" in message
        assert time.monotonic() - started < 15


def test_deleting_a_host_end_removes_an_ingress_chain_only_where_one_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    forgotten: list[str] = []

    def forget(name: str) -> bool:
        forgotten.append(name)
        return False

    monkeypatch.setattr(netlink_module.nft, "forget", forget)
    links = netlink_module.Netlink()
    name = f"tnnf{os.getpid() % 100000}"
    assert links.delete(name, ingress_chain=False) is False  # the kernel datapath: no chain, none asked for
    assert forgotten == []
    assert links.delete(name) is False  # the userspace datapath's host ends have one
    assert forgotten == [name]
