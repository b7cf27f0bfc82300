"""Serving the stand-in API server with cheroot, and the kubeconfig that points kubectl and clients at it."""

from __future__ import annotations

import base64
import ipaddress
import logging
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from controller.api.server import LoggedErrors
from lab.apiserver.app import Application
from lab.apiserver.objects import NAMESPACES, Registry
from lab.apiserver.store import EtcdStore

log = logging.getLogger(__name__)
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public")
CERT_DAYS = 365
SWEEP_INTERVAL = 0.2  # seconds between looks for Terminating namespaces


def make_certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed P-256 certificate and key for `host` (and localhost, 127.0.0.1, ::1) in `directory`,
    made with the openssl command unless both files are there already; returns (cert, key).

    Raises RuntimeError with openssl's message when it fails."""
    cert, key = directory / "apiserver.crt", directory / "apiserver.key"
    if cert.is_file() and key.is_file():
        return cert, key
    directory.mkdir(parents=True, exist_ok=True)
    names = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
    if host not in ("localhost", "127.0.0.1", "::1", "0.0.0.0", "::"):
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.append(f"DNS:{host}")
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", str(CERT_DAYS), "-subj", "/CN=tenet-apiserver",
        "-addext", "subjectAltName=" + ",".join(names),
    ]  # fmt: skip
    if shutil.which("openssl") is None:
        raise RuntimeError("the openssl command is not on PATH: install the Debian package openssl")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl could not make the server certificate: {done.stderr.strip()}")
    key.chmod(0o600)
    return cert, key


class _Server(LoggedErrors, wsgi.Server):
    """cheroot's WSGI server binding with SO_REUSEADDR, as Go's listeners (and so kube-apiserver) do: a
    restart binds its port again at once, though connections of the last run still linger in TIME_WAIT. Its
    messages go to the log, as the controller's API server's do (a watch client gone at once is one line)."""

    error_logger = log
    error_prefix = "Kubernetes API stand-in"

    @classmethod
    def prepare_socket(cls, *args: Any, **kwargs: Any) -> socket.socket:
        sock = super().prepare_socket(*args, **kwargs)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock


class StandInApiServer:
    """The stand-in Kubernetes API server on `host:port` (0: a free port) over the etcd at `etcd_url`.

        with StandInApiServer("http://127.0.0.1:2379") as server:
            server.write_kubeconfig("/tmp/kubeconfig")

    `token`: the bearer token clients must send (random when None). `prefix`: the etcd key prefix, so
    several servers can share one etcd. `bookmark_interval`: seconds between watch BOOKMARK events.
    `threads`: cheroot worker threads, each serving one request (a watch holds one for its lifetime).
    `cert_dir`: where the self-signed serving certificate and key live (made there when missing, so a
    restart keeps them and the kubeconfigs written before it); None: a temporary directory removed by
    `stop()`. `network_policy_checks`: NetworkPolicies validated (422 Invalid) and their `policyTypes`
    defaulted, as kube-apiserver does (`validation.network_policy`); False stores them as sent, for tests of a
    client's own refusal of what an API server let through. `namespace_cleanup`: seconds a deleted
    namespace stays Terminating before what it holds and itself are removed (kube-apiserver's namespace
    controller takes a moment too; `kubectl delete -f DIR` deletes a namespace before the objects in it,
    and would find them gone were it emptied at once).
    Clients send bearer tokens only over TLS, so the server speaks HTTPS only.
    `start()` raises OSError when the port cannot be had and etcd3gw's errors when etcd cannot be reached.
    """

    def __init__(
        self,
        etcd_url: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        prefix: str = "/tenet-apiserver",
        bookmark_interval: float = 60.0,
        threads: int = 32,
        cert_dir: str | Path | None = None,
        namespace_cleanup: float = 1.0,
        network_policy_checks: bool = True,
    ) -> None:
        self.store = EtcdStore(etcd_url, prefix)
        self.registry = Registry(self.store, network_policy_checks=network_policy_checks)
        self.token = token or secrets.token_urlsafe(24)
        self.app = Application(self.registry, self.token, bookmark_interval)
        self._temporary = cert_dir is None
        self.cert_dir = Path(cert_dir) if cert_dir else Path(tempfile.mkdtemp(prefix="tenet-apiserver-"))
        try:
            self.cert, key = make_certificate(self.cert_dir, host)
        except BaseException:
            if self._temporary:
                shutil.rmtree(self.cert_dir, ignore_errors=True)
            raise
        self._server = _Server((host, port), self.app, numthreads=threads, server_name="tenet-apiserver")
        self._server.ssl_adapter = BuiltinSSLAdapter(str(self.cert), str(key))
        self._server.shutdown_timeout = 2
        self._thread: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self.namespace_cleanup = namespace_cleanup

    @property
    def url(self) -> str:
        """https://host:port, valid once started."""
        host, port = self._server.bind_addr[:2]
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    def start(self) -> StandInApiServer:
        """Make the initial namespaces (default, kube-system, kube-public) if missing, bind, and serve from
        a thread. Raises etcd3gw's errors when etcd cannot be reached, OSError when the address cannot be
        had; either way the temporary certificate directory is removed."""
        try:
            for name in INITIAL_NAMESPACES:
                if self.store.get(self.registry.key(NAMESPACES, None, name)) is None:
                    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                    self.registry.create(NAMESPACES, None, body, False)
            self.app.stopping.clear()
            self._server.prepare()
        except BaseException:
            if self._temporary:
                shutil.rmtree(self.cert_dir, ignore_errors=True)
            raise
        self._thread = threading.Thread(target=self._server.serve, name="tenet-apiserver", daemon=True)
        self._thread.start()
        self._sweeper = threading.Thread(target=self._sweep, name="tenet-apiserver namespaces", daemon=True)
        self._sweeper.start()
        log.info("stand-in API server listening on %s", self.url)
        return self

    def _sweep(self) -> None:
        """Remove Terminating namespaces (`Registry.sweep`) until the server stops."""
        while not self.app.stopping.wait(SWEEP_INTERVAL):
            try:
                self.registry.sweep(self.namespace_cleanup)
            except Exception:  # etcd away for a moment: the next round tries again
                log.exception("removing terminating namespaces failed")

    def stop(self) -> None:
        """End open watches, stop serving and wait for the serving and namespace threads."""
        self.app.stopping.set()
        self._server.stop()
        for thread in (self._thread, self._sweeper):
            if thread is not None:
                thread.join(timeout=10)
        self._thread = self._sweeper = None
        if self._temporary:
            shutil.rmtree(self.cert_dir, ignore_errors=True)

    def kubeconfig(self, name: str = "tenet-lab") -> dict:
        """A kubeconfig (clusters, users, contexts) for this server and token, as a dict."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": name,
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(self.cert.read_bytes()).decode(),
                    },
                }
            ],
            "users": [{"name": name, "user": {"token": self.token}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
            "current-context": name,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write `kubeconfig()` as YAML to `path` (mode 0600, it holds the token); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(mode=0o600, exist_ok=True)
        target.write_text(yaml.safe_dump(self.kubeconfig(), sort_keys=False))
        return target

    def __enter__(self) -> StandInApiServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
