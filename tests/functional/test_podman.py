"""podman as a real CNI caller: containers on a Tenet network, attached and detached by podman through the
installed `tenet-cni`, the real agent, the real controller and a real br-int (root, userspace OVS).

Podman keeps everything of its own in a temporary directory: storage (vfs), run and temporary directories, file
locks, its configuration (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF); what crun and libcni make outside it
anyway (/run/crun, libcni's cache in /var/lib/cni) goes when the test ends. Its CNI config directory holds only the
conflist `cni.install` writes (the system's /etc/cni/net.d holds podman's own bridge network) and its CNI bin
directory the `tenet` launcher beside Debian's plugins. It runs in a mount namespace of its own, held open by a
small process for the whole test:

- every mount in it is made private, so what podman mounts stays there, except /run/netns, which stays shared
  with the host: the agent, in the node's namespace, opens the network namespace path podman passes as CNI_NETNS;
- on a host with the hybrid cgroup layout (v1 controllers and a cgroup2 `unified` mount) crun refuses to run, so
  there `unified` is unmounted from that namespace's view. Containers get no cgroups (`--cgroups=disabled`), so
  nothing is left under /sys/fs/cgroup either.

The containers' root filesystem is ping and sleep with their libraries, copied from the host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.service import endpoint_id
from cni.install import install
from lab.ovs import sh, wait_for
from tests.functional.cni_support import Cluster  # the `cluster` fixture (conftest): tenants blue and red

NETWORK = "tenet-podman"  # the conflist's name: podman's name for the network
SUBNET = ipaddress.ip_network("10.1.0.0/24")  # blue/web in the cluster fixture's networks
DEBIAN_PLUGINS = Path("/usr/lib/cni")
NETNS_DIR = "/run/netns"  # where rootful podman puts its containers' network namespaces
RUN_OPTIONS = (
    "--cgroups=disabled",
    "--ulimit=nofile=1024:1024",  # podman's default (1048576) may be above the hard limit, which root may not raise
    "--ulimit=nproc=1024:1024",
)

# The process holding podman's mount namespace: runs under `unshare --mount --propagation unchanged`.
_HOLDER = r"""
import ctypes, re, sys
libc = ctypes.CDLL(None, use_errno=True)
MS_PRIVATE = 1 << 18
keep = sys.argv[1]
def mounts():
    for line in open("/proc/self/mountinfo"):
        fields = line.split()
        target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        yield target, fields[6:fields.index("-")], fields[fields.index("-") + 1]
table = list(mounts())
for target, _, _ in table:
    if target != keep and not target.startswith(keep + "/"):
        libc.mount(b"none", target.encode(), None, MS_PRIVATE, None)  # a mount hidden by another may refuse
if not any(target == keep and any(o.startswith("shared:") for o in optional) for target, optional, _ in table):
    sys.exit(f"{keep} is not a shared mount: the agent would not see podman's network namespaces")
types = {target: kind for target, _, kind in table}
if types.get("/sys/fs/cgroup") != "cgroup2" and types.get("/sys/fs/cgroup/unified") == "cgroup2":
    if libc.umount2(b"/sys/fs/cgroup/unified", 0) != 0:
        sys.exit("unmounting /sys/fs/cgroup/unified: errno %d" % ctypes.get_errno())
print("ready", flush=True)
sys.stdin.read()
"""


class Podman:
    """podman with its state in a temporary directory, in a mount namespace of its own (see the module docstring).

    `close` removes every container, stops what podman left running and removes what it made outside `state`.
    """

    # Made by crun and libcni outside `state` whatever podman is told; removed by `close` if new and empty.
    SYSTEM_DIRS = ("/run/crun", "/var/lib/cni/results", "/var/lib/cni")

    def __init__(self, cni_conf_dir: Path, cni_bin_dir: Path) -> None:
        self.state = Path(tempfile.mkdtemp(prefix="tenet-podman-"))  # short: podman refuses a runroot over 50 chars
        self.cni_conf_dir, self.cni_bin_dir = cni_conf_dir, cni_bin_dir
        self.holder: subprocess.Popen | None = None
        self._new_dirs = [d for d in self.SYSTEM_DIRS if not os.path.lexists(d)]
        self._netns_before = set(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else set()
        self._started = time.time() - 1  # for the files podman makes from now on

    def start(self) -> Podman:
        (self.state / "containers.conf").write_text(  # what no command-line option sets; read by every podman
            f'[engine]\nlock_type = "file"\n[network]\ncni_plugin_dirs = ["{self.cni_bin_dir}"]\n'
        )  # file locks in --tmpdir, not the default shared memory segment in /dev/shm
        (self.state / "storage.conf").write_text(  # not the system's, whose options would apply too
            f'[storage]\ndriver = "vfs"\nrunroot = "{self.state}/runroot"\ngraphroot = "{self.state}/root"\n'
        )
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "unchanged", sys.executable, "-I", "-S", "-c", _HOLDER, NETNS_DIR],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "ready":
            self.holder.wait(timeout=10)
            raise RuntimeError(f"podman's mount namespace: {self.holder.stderr.read() if self.holder.stderr else ''}")
        return self

    def command(self, *args: str) -> list[str]:
        assert self.holder is not None
        return [
            "nsenter", f"--mount=/proc/{self.holder.pid}/ns/mnt", "podman",
            "--root", f"{self.state}/root",
            "--runroot", f"{self.state}/runroot",
            "--tmpdir", f"{self.state}/tmp",
            "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "none",
            "--network-backend", "cni",
            "--network-config-dir", str(self.cni_conf_dir),
            *args,
        ]  # fmt: skip

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CONTAINERS_CONF": f"{self.state}/containers.conf",
            "CONTAINERS_STORAGE_CONF": f"{self.state}/storage.conf",
        }

    def __call__(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        done = subprocess.run(
            self.command(*args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def run(self, name: str, rootfs: Path, *command: str, detach: bool = False) -> subprocess.CompletedProcess:
        """`podman run` on the Tenet network; `--rootfs DIR` comes last, the command after it."""
        mode = ("--detach",) if detach else ("--rm",)
        return self("run", *mode, "--name", name, "--network", NETWORK, *RUN_OPTIONS, "--rootfs", str(rootfs), *command,
                    check=False)  # fmt: skip

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]

    def close(self) -> None:
        try:
            if self.holder is not None and self.holder.poll() is None:
                self("rm", "--all", "--force", "--time", "0", check=False)
        finally:
            self._kill_strays()
            if self.holder is not None:
                if self.holder.stdin is not None:
                    self.holder.stdin.close()  # the holder exits on end of input
                try:
                    self.holder.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.holder.kill()
                    self.holder.wait(timeout=10)
            self._remove_leftovers()
            shutil.rmtree(self.state, ignore_errors=True)

    def _kill_strays(self) -> None:
        """Wait for conmon and the `podman container cleanup` it runs to finish; kill what remains after 10 s.

        They are the processes naming this podman's state directory; a container's own processes, children of a
        conmon, are killed first (they remain only if podman failed to remove their container).
        """
        table = _processes(str(self.state))
        for pid, (parent, ours) in table.items():
            if not ours and table.get(parent, (0, False))[1]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        try:
            wait_for(lambda: not self._podman_processes(), "conmon and podman's cleanup to exit", timeout=10)
        except TimeoutError:
            for pid in self._podman_processes():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _podman_processes(self) -> list[int]:
        return [pid for pid, (_, ours) in _processes(str(self.state)).items() if ours]

    def new_netns(self) -> list[str]:
        """Network namespaces podman made (named netns-UUID) that are still there."""
        now = set(os.listdir(NETNS_DIR)) if os.path.isdir(NETNS_DIR) else set()
        return sorted(name for name in now - self._netns_before if name.startswith("netns-"))

    def _remove_leftovers(self) -> None:
        """Whatever podman would have removed had it not failed, and the directories it made outside `state`."""
        for name in self.new_netns():
            sh("umount", f"{NETNS_DIR}/{name}", check=False)
            Path(f"{NETNS_DIR}/{name}").unlink(missing_ok=True)
        for cached in Path("/var/lib/cni/results").glob(f"{NETWORK}-*"):  # libcni's, kept when a DEL failed
            with contextlib.suppress(OSError):
                if cached.stat().st_mtime >= self._started:
                    cached.unlink()
        for directory in self._new_dirs:
            with contextlib.suppress(OSError):  # not there, or something else put files in it since
                os.rmdir(directory)


def _processes(mark: str) -> dict[int, tuple[int, bool]]:
    """pid -> (parent pid, whether `mark` is in its command line), for every process not gone."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()
                if fields[0] != "Z":
                    ours = mark in Path(f"/proc/{entry}/cmdline").read_text(errors="replace")
                    found[int(entry)] = (int(fields[1]), ours)
    return found


def make_rootfs(root: Path, *programs: str) -> Path:
    """A root filesystem holding `programs` and the libraries they load, laid out as on the host (usrmerge)."""
    root.mkdir(parents=True)
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{top}"):
            (root / top).symlink_to(os.readlink(f"/{top}"))
    for program in programs:
        found = shutil.which(program)
        assert found, f"{program} is not installed"
        libraries = re.findall(r"(/\S+) \(0x", sh("ldd", found))
        for path in (found, *libraries):
            _copy_in(root, path)
    for directory in ("etc", "proc", "sys", "dev", "tmp"):
        (root / directory).mkdir(exist_ok=True)
    return root


def _copy_in(root: Path, path: str) -> None:
    """Copy `path` to the same place under `root`, with the symlinks met on the way to it."""
    here = Path("/")
    parts = Path(path).parts[1:]
    for index, part in enumerate(parts):
        here /= part
        if here.is_symlink():
            inside = root / here.relative_to("/")
            if not inside.is_symlink():
                inside.parent.mkdir(parents=True, exist_ok=True)
                inside.symlink_to(os.readlink(here))
            target = Path(os.path.normpath(here.parent / os.readlink(here)))
            return _copy_in(root, str(target.joinpath(*parts[index + 1 :])))
    inside = root / Path(path).relative_to("/")
    if not inside.exists():
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, inside)


@pytest.fixture
def podman(cluster: Cluster, tmp_path: Path) -> Iterator[Podman]:
    bin_dir, conf_dir = tmp_path / "podman-cni" / "bin", tmp_path / "podman-cni" / "net.d"
    bin_dir.mkdir(parents=True)
    for plugin in DEBIAN_PLUGINS.iterdir():
        (bin_dir / plugin.name).symlink_to(plugin)
    install(
        bin_dir, conf_dir, socket_path=cluster.agent.socket, tenant="blue", network="web", namespaces=None,
        name=NETWORK,
    )  # fmt: skip
    runner = Podman(conf_dir, bin_dir)
    try:
        yield runner.start()
    finally:
        runner.close()


def _names_port(flow: str, ofport: int) -> bool:
    numbers = re.findall(r"in_port=(\d+)|output:(\d+)|reg3=(0x[0-9a-f]+)|load:(0x[0-9a-f]+)->NXM_NX_REG3", flow)
    return any(int(value, 0) == ofport for found in numbers for value in found if value)


def test_podman_attaches_containers_that_ping_pods_and_detaches_them(
    cluster: Cluster,
    podman: Podman,
    tmp_path: Path,
) -> None:
    rootfs = make_rootfs(tmp_path / "rootfs", "ping", "sleep")
    pod = cluster.pod("pm1", cluster.runtime.add("pm1", "blue", "web"))
    before = cluster.leftovers()

    def endpoints() -> set[str]:
        return {e["id"] for e in cluster.api.get("/v1/endpoints")}

    # A long-running container: podman's ADD gives it an address of blue/web, an endpoint and a port on br-int.
    started = podman.run("pm-c1", rootfs, "sleep", "600", detach=True)
    assert started.returncode == 0, started.stdout + started.stderr
    info = podman.inspect("pm-c1")
    attached = info["NetworkSettings"]["Networks"][NETWORK]
    ip = attached["IPAddress"]
    assert ipaddress.ip_address(ip) in SUBNET and ip != pod.ip, attached
    endpoint = cluster.api.get(f"/v1/endpoints/{endpoint_id(info['Id'], 'eth0')}")
    shown = (attached["MacAddress"], attached["IPPrefixLen"], attached["Gateway"])
    assert (endpoint["ip"], endpoint["mac"], endpoint["prefix_len"], endpoint["gateway"]) == (ip, *shown)
    port = cluster.node.vsctl("--format=json", "--columns=external_ids", "list", "interface", endpoint["port_name"])
    ids = dict(json.loads(port)["data"][0][0][1])
    assert ids["tenet-container"] == info["Id"] and ids["tenet-pod"] == "/pm-c1", ids
    assert ids["tenet-netns"] == info["NetworkSettings"]["SandboxKey"], ids
    assert endpoints() == {*before["endpoints"], endpoint["id"]}

    # The container and a pod the harness made reach each other.
    pinged = podman("exec", "pm-c1", "ping", "-c", "3", "-W", "2", pod.ip, check=False)
    assert pinged.returncode == 0, pinged.stdout + pinged.stderr
    assert pod.ping(ip)

    # `podman run --rm` in the foreground: a second container pings the first, exits 0 and is gone, DEL done.
    second = podman.run("pm-c2", rootfs, "ping", "-c", "3", "-W", "2", ip)
    assert second.returncode == 0, second.stdout + second.stderr
    assert " 3 received" in second.stdout, second.stdout
    assert endpoints() == {*before["endpoints"], endpoint["id"]}

    # A detached container whose command ends: conmon runs `podman container cleanup`, which sends the DEL.
    assert podman.run("pm-c3", rootfs, "ping", "-c", "1", "-W", "2", pod.ip, detach=True).returncode == 0
    third = endpoint_id(podman.inspect("pm-c3")["Id"], "eth0")
    assert podman("wait", "pm-c3").stdout.strip() == "0", podman("logs", "pm-c3", check=False).stdout
    wait_for(lambda: third not in endpoints(), "the DEL of the container that exited")
    podman("rm", "pm-c3")

    # `podman rm --force` of the running one: everything its ADD made is gone; the harness's pod keeps its own.
    podman("rm", "--force", "--time", "0", "pm-c1")
    assert podman("ps", "--all", "--quiet").stdout.strip() == ""
    left = cluster.leftovers()
    kept = ("ports", "links", "endpoints")
    assert {key: left[key] for key in kept} == {key: before[key] for key in kept}
    assert not [flow for flow in left["flows"] if _names_port(flow, endpoint["ofport"])], left["flows"]
    assert len(left["flows"]) == len(before["flows"]), left["flows"]
    assert not podman.new_netns(), "podman left a network namespace behind"
