"""cni.install: the launcher a runtime executes and the conflist it reads."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cni.config import SUPPORTED_VERSIONS
from cni.install import CFLAGS, PLUGIN_SOURCE, c_string, compiler, conflist_version, describe, install

PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
DEBIAN_LOOPBACK = Path("/usr/lib/cni/loopback")


def settings(**overrides: Any) -> dict[str, Any]:
    return {
        "socket_path": "/run/tenet/test.sock",
        "tenant": "acme",
        "network": "web",
        "namespaces": None,
        "python": PYTHON,
    } | overrides


def execute(launcher: Path, command: str, config: dict[str, Any], **variables: str) -> tuple[int, Any]:
    done = subprocess.run(
        [str(launcher)],
        input=json.dumps(config).encode(),
        capture_output=True,
        timeout=30,
        env={"CNI_COMMAND": command, **variables},
    )
    assert done.stderr == b""
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


def plugin_config(conflist: dict[str, Any], index: int) -> dict[str, Any]:
    """What a runtime feeds plugin `index` of a conflist: its entry plus the list's name and cniVersion."""
    return conflist["plugins"][index] | {"name": conflist["name"], "cniVersion": conflist["cniVersion"]}


def fake_loopback(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "loopback").write_text(f"#!/bin/sh\n{script}\n")
    (bin_dir / "loopback").chmod(0o755)


def test_install_writes_a_launcher_that_runs_the_plugin(tmp_path: Path) -> None:
    launcher, _ = install(tmp_path / "bin", tmp_path / "net.d", **settings(), compiled=False)
    assert launcher == tmp_path / "bin" / "tenet" and describe(launcher) == "Python launcher"
    assert stat.S_IMODE(launcher.stat().st_mode) == 0o755
    assert launcher.read_text().splitlines()[0] == f"#!{PYTHON} -IS"  # one argument: the kernel passes one
    status, output = execute(launcher, "VERSION", {"cniVersion": "1.0.0"})
    assert (status, output) == (0, {"cniVersion": "1.0.0", "supportedVersions": list(SUPPORTED_VERSIONS)})


def test_install_compiles_the_plugin_when_a_compiler_is_there(tmp_path: Path) -> None:
    assert compiler(), "gcc is missing: ./dev installs it"
    plugin, _ = install(tmp_path / "bin", tmp_path / "net.d", **settings())
    assert describe(plugin) == "compiled" and stat.S_IMODE(plugin.stat().st_mode) == 0o755
    # VERSION needs no agent: the compiled plugin hands it to cni.plugin, which answers as the launcher does
    status, output = execute(plugin, "VERSION", {"cniVersion": "0.4.0"})
    assert (status, output) == (0, {"cniVersion": "0.4.0", "supportedVersions": list(SUPPORTED_VERSIONS)})
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["tenet"]  # no temporary left


def test_without_a_compiler_install_writes_the_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, no gcc
    plugin, _ = install(tmp_path / "bin", tmp_path / "net.d", **settings())
    assert describe(plugin) == "Python launcher"
    assert execute(plugin, "VERSION", {})[0] == 0
    with pytest.raises(ValueError, match="no C compiler"):
        install(tmp_path / "bin2", tmp_path / "net.d", **settings(), compiled=True)


def test_the_plugin_source_compiles_without_a_warning(tmp_path: Path) -> None:
    cc = compiler()
    assert cc, "gcc is missing: ./dev installs it"
    defines = [f"-DTENET_PYTHON={c_string(PYTHON)}", f"-DTENET_FALLBACK={c_string('import sys')}"]
    done = subprocess.run(
        [cc, *CFLAGS, "-Wpedantic", "-Werror", *defines, "-o", str(tmp_path / "tenet"), str(PLUGIN_SOURCE)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and not done.stderr, done.stderr


@pytest.mark.parametrize("text", ['/opt/a "b"\\c', "/tmp/??/x", "/tmp/é\n\t"])
def test_paths_are_built_into_the_plugin_byte_for_byte(tmp_path: Path, text: str) -> None:
    cc = compiler()
    assert cc, "gcc is missing: ./dev installs it"
    source = tmp_path / "show.c"
    source.write_text(f"#include <stdio.h>\nint main(void) {{ fputs({c_string(text)}, stdout); return 0; }}\n")
    subprocess.run([cc, *CFLAGS, "-o", str(tmp_path / "show"), str(source)], check=True)
    assert subprocess.run([str(tmp_path / "show")], capture_output=True, check=True).stdout == text.encode()


def test_install_writes_a_conflist_of_loopback_then_tenet(tmp_path: Path) -> None:
    namespaces = {"shop": "acme/shop"}
    _, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings(namespaces=namespaces), name="tenant-net")
    assert conf == tmp_path / "net.d" / "10-tenet.conflist"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    conflist = json.loads(conf.read_text())
    assert conflist == {
        "cniVersion": "1.1.0",  # no loopback in this bin directory to disagree
        "name": "tenant-net",
        "plugins": [
            {"type": "loopback"},
            {
                "type": "tenet",
                "agentSocket": "/run/tenet/test.sock",
                "capabilities": {"ips": True},  # runtimeConfig.ips: a requested address (CNI CONVENTIONS.md)
                "tenant": "acme",
                "network": "web",
                "namespaces": namespaces,
            },
        ],
    }


def test_install_for_kubernetes_marks_the_plugin_config(tmp_path: Path) -> None:
    _, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings(), kubernetes=True)
    plugin = json.loads(conf.read_text())["plugins"][1]
    assert plugin["kubernetes"] is True and (plugin["tenant"], plugin["network"]) == (
        settings()["tenant"],
        settings()["network"],
    )
    _, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings())
    assert "kubernetes" not in json.loads(conf.read_text())["plugins"][1]


def test_the_installed_conflist_drives_the_installed_plugin(tmp_path: Path) -> None:
    launcher, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings(socket_path=str(tmp_path / "no.sock")))
    status, error = execute(launcher, "STATUS", plugin_config(json.loads(conf.read_text()), 1))
    assert status == 1
    assert error["code"] == 50 and str(tmp_path / "no.sock") in error["details"]


def test_reinstalling_replaces_the_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    install(tmp_path / "bin", tmp_path / "net.d", **settings())
    launcher, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings(tenant="other", network="db"))
    assert json.loads(conf.read_text())["plugins"][1]["tenant"] == "other"
    assert sorted(p.name for p in (tmp_path / "bin").iterdir()) == ["tenet"]
    assert sorted(p.name for p in (tmp_path / "net.d").iterdir()) == ["10-tenet.conflist"]
    assert execute(launcher, "VERSION", {})[0] == 0


def test_the_conflist_speaks_the_newest_version_loopback_speaks(tmp_path: Path) -> None:
    fake_loopback(tmp_path / "bin", """echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'""")
    _, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings())
    assert json.loads(conf.read_text())["cniVersion"] == "1.0.0"


@pytest.mark.parametrize("script", ["exit 1", "echo not-json", """echo '{"supportedVersions": ["0.2.0"]}'"""])
def test_a_loopback_that_will_not_say_leaves_the_latest_version(tmp_path: Path, script: str) -> None:
    fake_loopback(tmp_path / "bin", script)
    _, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings())
    assert json.loads(conf.read_text())["cniVersion"] == "1.1.0"


def test_the_version_can_be_pinned(tmp_path: Path) -> None:
    fake_loopback(tmp_path / "bin", """echo '{"supportedVersions":["1.0.0"]}'""")
    _, conf = install(tmp_path / "bin", tmp_path / "net.d", **settings(), cni_version="0.4.0")
    assert json.loads(conf.read_text())["cniVersion"] == "0.4.0"


def test_debian_loopback_gets_a_version_it_accepts() -> None:
    assert DEBIAN_LOOPBACK.exists(), "containernetworking-plugins is missing: ./dev installs it"
    done = subprocess.run([str(DEBIAN_LOOPBACK)], input=b"{}", capture_output=True, env={"CNI_COMMAND": "VERSION"})
    assert conflist_version(DEBIAN_LOOPBACK) in json.loads(done.stdout)["supportedVersions"]


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        ({"tenant": None, "network": None}, "tenant and network"),
        ({"network": None}, "network"),
        ({"namespaces": {"shop": "acme"}}, 'namespaces["shop"]'),
        ({"socket_path": ""}, "agentSocket"),
        ({"python": "python3"}, "absolute"),
        ({"python": "/usr/bin/env python3"}, "absolute"),
        ({"name": "not a name"}, "name"),
        ({"cni_version": "0.2.0"}, "0.2.0"),
    ],
)
def test_settings_the_plugin_would_refuse_are_not_installed(
    tmp_path: Path, overrides: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(ValueError) as raised:
        install(tmp_path / "bin", tmp_path / "net.d", **(settings() | overrides))
    assert complaint in str(raised.value)
    assert not (tmp_path / "bin" / "tenet").exists() and not (tmp_path / "net.d").exists()


def test_the_agent_command_installs_and_refuses_half_settings(tmp_path) -> None:
    import subprocess
    import sys

    def agent(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "agent.main", "install-cni", "--bin-dir", str(tmp_path / "bin"), *args]
        return subprocess.run([*command, "--conf-dir", str(tmp_path / "conf")], capture_output=True, text=True)

    done = agent("--tenant", "blue", "--network", "web", "--socket", "/run/x.sock")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bin" / "tenet").exists() and (tmp_path / "conf" / "10-tenet.conflist").exists()
    for bad in (["--tenant", "blue"], [], ["--namespace-map", "not json"], ["--namespace-map", '["a"]']):
        refused = agent(*bad)
        assert refused.returncode == 1 and refused.stderr.startswith("tenet-agent: "), (bad, refused.stderr)
        assert "Traceback" not in refused.stderr
