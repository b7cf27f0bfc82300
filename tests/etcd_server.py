"""Start and stop a real, private etcd for tests.

`EtcdServer` runs the `etcd` binary (Debian package `etcd-server`) on free loopback ports with its own data
directory, waits until `/health` says it has a leader, and stops it by pid. `kill()` simulates a crash
(SIGKILL, data kept) so a test can `start()` the same member again on the same data.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from lab.ovs import free_ports

INSTALL_HINT = "install the Debian package etcd-server (apt-get install etcd-server)"

# etcd 3.4 refuses to start on architectures it does not "support" unless told so; amd64 and ppc64le are fine.
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm", "i686": "386", "i386": "386"}
_SUPPORTED_ARCHES = {"amd64", "ppc64le"}


def find_etcd() -> str:
    """The etcd binary, or a RuntimeError that says how to get it (tests must fail, not skip, without it)."""
    found = shutil.which("etcd")
    if found is None:
        raise RuntimeError(f"the etcd binary is not on PATH: {INSTALL_HINT}")
    return found


def free_port() -> int:
    """A TCP port free now (`lab.ovs.free_ports`, which gives several distinct ones at once)."""
    return free_ports(1)[0]


def _etcd_environment() -> dict[str, str]:
    # etcd reads every ETCD_* variable as a flag; inherited ones must not reconfigure the test member.
    env = {name: value for name, value in os.environ.items() if not name.startswith("ETCD_")}
    machine = platform.machine().lower()
    goarch = _GOARCH.get(machine, machine)
    if goarch not in _SUPPORTED_ARCHES:
        env["ETCD_UNSUPPORTED_ARCH"] = goarch
    return env


class EtcdServer:
    """One single-member etcd cluster on 127.0.0.1; a context manager."""

    def __init__(self, *, startup_timeout: float = 30.0, stop_timeout: float = 10.0) -> None:
        self.binary = find_etcd()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.client_port, self.peer_port = free_ports(2)
        self._workdir = Path(tempfile.mkdtemp(prefix="tenet-etcd-"))
        self.data_dir = self._workdir / "data"
        self.log_path = self._workdir / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        return [
            self.binary,
            "--name=test",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster=test={self.peer_url}",
            "--initial-cluster-state=new",
            "--initial-cluster-token=tenet-test",
            # A short election timeout: a single member elects itself in well under a second.
            "--heartbeat-interval=20",
            "--election-timeout=200",
            "--logger=zap",
            "--log-outputs=stderr",
        ]

    def start(self) -> None:
        """Start etcd (again, on the same data, after `kill`) and wait until it serves requests."""
        if self._process is not None:
            raise RuntimeError(f"etcd (pid {self._process.pid}) is already running")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_etcd_environment(),
            )
        try:
            self._wait_healthy()
        except BaseException:
            self._halt(signal.SIGKILL)
            raise

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise RuntimeError(f"etcd exited with status {code} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.client_url}/health", timeout=1.0) as response:
                    body = json.loads(response.read())
                if body.get("health") == "true":
                    return
                last_error = f"/health answered {body}"
            except (OSError, ValueError) as error:  # URLError and refused connections are OSErrors
                last_error = str(error)
            time.sleep(0.02)  # poll interval, bounded by the deadline above
        raise RuntimeError(
            f"etcd at {self.client_url} not healthy after {self.startup_timeout:.0f} s ({last_error}):\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _halt(self, sig: signal.Signals) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_timeout)

    def kill(self) -> None:
        """SIGKILL etcd, as a crash would; the data directory stays for the next `start`."""
        self._halt(signal.SIGKILL)

    def stop(self) -> None:
        """Terminate etcd (SIGKILL if it does not exit in time) and remove its data."""
        self._halt(signal.SIGTERM)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        try:
            self.start()
        except BaseException:
            self.stop()  # `__exit__` does not run when `__enter__` fails; the data directory must still go
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
