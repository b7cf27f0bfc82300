"""A real etcd, a stand-in API server with Tenet's CRDs on it, the official client, and an in-process
Service over SQLite with the Kubernetes watchers of `controller.k8s` driving it."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from controller.k8s.cluster import Kubernetes
from controller.service import Service
from controller.store.sqlite import SqliteStore
from lab.apiserver import StandInApiServer
from tests.etcd_server import EtcdServer

ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0  # seconds a test waits for a condition before it fails
GROUP, VERSION = "tenet.io", "v1alpha1"
_prefixes = itertools.count()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def document(answer: object) -> dict[str, Any]:
    """A custom object as the client answers it (typed `object`): its JSON document."""
    assert isinstance(answer, dict), answer
    return answer


def create_network_policy(networking: client.NetworkingV1Api, namespace: str, doc: dict[str, Any]) -> None:
    """Create a NetworkPolicy from its JSON document, as kubectl users write one. The client types the body as
    V1NetworkPolicy but validates a plain dict into one."""
    networking.create_namespaced_network_policy(namespace, doc)  # type: ignore[arg-type]  # a dict, see above


class Lab:
    """One test's world: a stand-in API server with its own etcd prefix, clients, a Service, the watchers."""

    def __init__(self, etcd: EtcdServer, directory: Path, certs: Path) -> None:
        self.etcd, self.directory, self.certs = etcd, directory, certs
        self.prefix = f"/k8s-{os.getpid()}-{next(_prefixes)}"
        self.server = self.new_server().start()
        self.port = self.server._server.bind_addr[1]
        self.kubeconfig = self.server.write_kubeconfig(directory / "kubeconfig")
        self.api = config.new_client_from_config(config_file=str(self.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        extensions = client.ApiextensionsV1Api(self.api)
        for crd in yaml.safe_load_all((ROOT / "deploy" / "10-crds.yaml").read_text()):
            extensions.create_custom_resource_definition(crd)
        self.store = SqliteStore(directory / "tenet.db")
        self.service = Service(self.store)
        self.cluster: Kubernetes | None = None

    def new_server(self, port: int = 0) -> StandInApiServer:
        """A stand-in API server over this lab's etcd prefix (the same token and certificate)."""
        current: StandInApiServer | None = getattr(self, "server", None)  # None while __init__ makes the first
        token = current.token if current else None
        return StandInApiServer(
            self.etcd.client_url,
            prefix=self.prefix,
            port=port,
            token=token,
            bookmark_interval=0.3,
            cert_dir=self.certs,
            network_policy_checks=False,  # invalid policies reach the controller, whose own checks refuse them
        )

    def restart(self) -> None:
        """Start the API server again on its port (stopped before by `self.server.stop()`)."""

        def started() -> StandInApiServer | None:
            try:
                return self.new_server(port=self.port).start()
            except OSError:  # the port is still held by connections of the last server being closed
                return None

        self.server = wait_for(started, f"the API server back on port {self.port}")

    def watch(self, **options: Any) -> Kubernetes:
        """Start the watchers (short backoff, `resync_s` as given, else long) on the lab's Service."""
        options = {"backoff_s": 0.05, "max_backoff_s": 0.4, **options}
        self.cluster = Kubernetes(self.service, self.api, **options).start()
        return self.cluster

    def stop_watching(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None

    # --- objects -------------------------------------------------------------------------------

    def create(
        self, plural: str, name: str, spec: dict[str, Any], custom: client.CustomObjectsApi | None = None
    ) -> dict[str, Any]:
        kind = {"tenants": "Tenant", "networks": "Network", "qosprofiles": "QosProfile"}[plural]
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec}
        return document((custom or self.custom).create_cluster_custom_object(GROUP, VERSION, plural, body))

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return document(self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name))

    def delete(self, plural: str, name: str, custom: client.CustomObjectsApi | None = None) -> None:
        (custom or self.custom).delete_cluster_custom_object(GROUP, VERSION, plural, name)

    def namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))

    def pod(
        self,
        namespace: str,
        name: str,
        *,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        node: str | None = None,
        core: client.CoreV1Api | None = None,
    ) -> None:
        ports = [client.V1ContainerPort(container_port=80, name="http")]
        body = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, labels=labels, annotations=annotations),
            spec=client.V1PodSpec(
                node_name=node, containers=[client.V1Container(name="c", image="busybox", ports=ports)]
            ),
        )
        (core or self.core).create_namespaced_pod(namespace, body)

    def node(self, name: str, ip: str, core: client.CoreV1Api | None = None) -> None:
        body = client.V1Node(
            metadata=client.V1ObjectMeta(name=name),
            status=client.V1NodeStatus(addresses=[client.V1NodeAddress(type="InternalIP", address=ip)]),
        )
        (core or self.core).create_node(body)

    def close(self) -> None:
        self.stop_watching()
        self.server.stop()
        self.store.close()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("apiserver-certs")


@pytest.fixture
def lab(etcd: EtcdServer, certs: Path, tmp_path: Path) -> Iterator[Lab]:
    world = Lab(etcd, tmp_path, certs)
    try:
        yield world
    finally:
        world.close()
