"""What the image carries: the Containerfile copies files that exist, the CNI installer puts a plugin on the
"node" that runs with the node's own Python, and the controller's probe passes only a live, authenticated API."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from configparser import ConfigParser
from pathlib import Path

import pytest

from cni.install import describe
from controller.api import ApiServer, Tokens, make_app, serve
from controller.service import Service
from controller.store.sqlite import SqliteStore
from tests.deploy.support import DEPLOY, ROOT

VENV_BIN = Path(sys.executable).parent
HOST_PYTHON = "/usr/bin/python3"  # what the launcher's #! names: the node's interpreter


def instructions() -> list[tuple[str, list[str]]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split()[0].upper(), line.split()[1:]) for line in lines]


def test_the_containerfile_copies_what_exists() -> None:
    stages = [args for op, args in instructions() if op == "FROM"]
    assert all(args[0].endswith("debian:12-slim") for args in stages)
    copied: list[str] = []
    for op, args in instructions():
        if op == "COPY" and not any(a.startswith("--from") for a in args):
            sources = args[:-1]
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            copied += sources
    setup = ConfigParser()
    setup.read(ROOT / "setup.cfg")
    packages = setup["options.packages.find"]["include"].split()
    assert {p.rstrip("*") for p in packages} <= set(copied), "pip install needs every package of the distribution"
    assert {"setup.cfg", "pyproject.toml", "README.md"} <= set(copied)
    assert {"deploy/install-cni.sh", "deploy/health.py"} <= set(copied)
    runs = " ".join(" ".join(args) for op, args in instructions() if op == "RUN")
    for package in ("python3", "ethtool", "iproute2", "openvswitch-common"):  # the agent runs ovs-appctl, ovs-ofctl
        assert re.search(rf"apt-get install .*\b{package}\b", runs), package
    assert "pip install --no-cache-dir /src" in runs
    assert os.access(DEPLOY / "install-cni.sh", os.X_OK), "the DaemonSet runs it as the command"


def test_install_cni_puts_a_working_plugin_on_the_node(tmp_path: Path) -> None:
    config = tmp_path / "controller.yaml"
    config.write_text("store: sqlite:///var/lib/tenet/tenet.db\ncluster_network: default/pods\n")
    env = {
        "PATH": f"{VENV_BIN}:/usr/sbin:/usr/bin:/sbin:/bin",
        "TENET_CNI_LIB": str(tmp_path / "lib"),
        "CNI_BIN_DIR": str(tmp_path / "bin"),
        "CNI_CONF_DIR": str(tmp_path / "net.d"),
        "TENET_CONFIG": str(config),
        "TENET_SOCKET": "/var/run/tenet/agent.sock",
    }
    for _ in range(2):  # a second run (an agent pod restarted) replaces the copy in place
        done = subprocess.run(
            [str(DEPLOY / "install-cni.sh")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    copies = sorted(p.name for p in (tmp_path / "lib").iterdir())
    assert len(copies) == 2 and copies[0] == "cni", copies  # the current copy and its symlink, no older one
    assert (tmp_path / "lib" / "cni").readlink() == Path(copies[1])
    launcher = tmp_path / "bin" / "tenet"
    if describe(launcher) == "compiled":  # a node with a C compiler; the image has none: the Python launcher
        assert str(tmp_path / "lib").encode() in launcher.read_bytes(), "the plugin must fall back to the node's copy"
    else:
        assert launcher.read_text().splitlines()[0] == f"#!{HOST_PYTHON} -IS"
        assert repr(str(tmp_path / "lib")) in launcher.read_text(), "the launcher must run the node's copy"
    conflist = json.loads((tmp_path / "net.d" / "10-tenet.conflist").read_text())
    assert conflist["plugins"][-1] == {
        "type": "tenet",
        "agentSocket": "/var/run/tenet/agent.sock",
        "capabilities": {"ips": True},  # runtimeConfig.ips: an address a runtime asks for
        "tenant": "default",
        "network": "pods",
        "kubernetes": True,  # a pod's network is the controller's to pick, by namespace and pod
    }
    # The plugin answers VERSION from the copy alone: the node's Python, no virtualenv, no source tree.
    answer = subprocess.run(
        [str(launcher)],
        input=json.dumps({"cniVersion": conflist["cniVersion"]}),
        env={"CNI_COMMAND": "VERSION", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 0, answer.stderr
    assert conflist["cniVersion"] in json.loads(answer.stdout)["supportedVersions"]


def test_install_cni_refuses_a_bad_cluster_network(tmp_path: Path) -> None:
    config = tmp_path / "controller.yaml"
    config.write_text("cluster_network: pods\n")
    env = {
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "TENET_CNI_LIB": str(tmp_path / "lib"),
        "CNI_BIN_DIR": str(tmp_path / "bin"),
        "CNI_CONF_DIR": str(tmp_path / "net.d"),
        "TENET_CONFIG": str(config),
    }
    done = subprocess.run([str(DEPLOY / "install-cni.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "cluster_network: want TENANT/NETWORK, got 'pods'" in done.stderr
    assert not (tmp_path / "bin").exists() and not (tmp_path / "lib").exists(), "nothing installed"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiServer]:
    store = SqliteStore(tmp_path / "tenet.db")
    server = serve(make_app(Service(store), Tokens.from_dict({"admin": ["s3cret"]})), "127.0.0.1", 0).start()
    yield server
    server.stop()
    store.close()


def probe(url: str, token_file: Path) -> subprocess.CompletedProcess[str]:
    command = [HOST_PYTHON, str(DEPLOY / "health.py"), "--url", url, "--token-file", str(token_file)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def test_the_health_probe(api: ApiServer, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"admin": ["s3cret"], "tenants": {"blue": ["b"]}}))
    url = api.url + "/v1/health"
    assert probe(url, tokens).returncode == 0
    tokens.write_text(json.dumps({"admin": ["wrong"]}))
    failed = probe(url, tokens)
    assert failed.returncode == 1 and "answered 401" in failed.stderr
    tokens.write_text(json.dumps({"tenants": {}}))
    failed = probe(url, tokens)
    assert failed.returncode == 1 and "admin: want a list" in failed.stderr
    tokens.write_text(json.dumps({"admin": ["s3cret"]}))
    api.stop()
    failed = probe(url, tokens)
    assert failed.returncode == 1 and "Connection refused" in failed.stderr
