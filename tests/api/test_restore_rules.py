"""A stored model that breaks a rule made later (a tenant's networks of different MTUs) stops the controller
with one line naming the record, instead of a traceback or a black hole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from controller import records
from controller.store.base import Put
from controller.store.sqlite import SqliteStore
from lab.ovs import free_ports
from topology.model import Model


def test_networks_of_one_tenant_stored_with_two_mtus_stop_the_controller(tmp_path: Path) -> None:
    model = Model()
    model.add_tenant("blue")
    model.add_network("blue", "web", encap="vxlan", segment=5001, subnet="10.1.0.0/24")
    legacy = {**records.network_doc(model.networks["blue/web"]), "name": "db", "encap": "vlan", "segment": 101}
    legacy.update(subnet="10.1.1.0/24", gateway="10.1.1.1", mtu=1500, id=2)  # VLAN's old default
    store = SqliteStore(tmp_path / "tenet.db")
    store.commit([Put(k, doc) for k, doc in records.all_records(model)])
    store.commit([Put(records.key("networks", "blue/db"), legacy)])
    store.close()
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"admin": ["s3cret"], "tenants": {}}))
    args = ["--store", f"sqlite:///{tmp_path}/tenet.db", "--token-file", str(tokens), "--api-host", "127.0.0.1"]
    api_port, ofp_port = free_ports(2)
    args += ["--api-port", str(api_port), "--ofp-host", "127.0.0.1", "--ofp-port", str(ofp_port)]
    done = subprocess.run(
        [sys.executable, "-m", "controller.main", *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tenet-controller: the stored model breaks a rule: /tenet/networks/blue/db.mtu: "), last
    assert "MTU 1500 differs from 1450, the MTU of network 'blue/web'" in last
