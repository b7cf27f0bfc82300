"""The controller's Kubernetes side: clients from a kubeconfig or the in-cluster config, one informer per
watched resource, and the pod-to-network lookup the endpoint route uses for a CNI ADD in a cluster.

    cluster = Kubernetes.connect(service, kubeconfig="/etc/tenet/kubeconfig")   # or in_cluster=True
    cluster.start()
    ...
    cluster.stop()
"""

from __future__ import annotations

import copy
import functools
import logging
import threading
from typing import TYPE_CHECKING, Any

from kubernetes import client, config

from controller.k8s.events import Recorder
from controller.k8s.informer import Informer
from controller.k8s.namespaces import SwitchSequence
from controller.k8s.sync import GROUP, VERSION, Object, Sync

if TYPE_CHECKING:
    from controller.service import Service

log = logging.getLogger(__name__)
# Applied in this order at start: what later kinds refer to first.
CUSTOM = ("tenants", "qosprofiles", "networks")
CORE = ("nodes", "namespaces", "pods")
BACKGROUND_S = 0.2  # seconds between rounds of Events, realized NetworkPolicies and Network statuses


class Kubernetes:
    """Watches Nodes, Namespaces, Pods, NetworkPolicies and Tenet's CRDs and applies them to `service`.

    `api`: a `kubernetes.client.ApiClient`. `resync_s`: seconds between full relists (deletions missed
    while disconnected are applied then); `backoff_s`, `max_backoff_s`: reconnect waits in seconds.
    `cluster_network`: the TENANT/NAME of namespaces no Network claims. `switch_sequence(node)`: the last
    change (`Service.sequence`) the node's switch holds, None without a switch in sync (see `switches`);
    without it no NetworkPolicy is reported realized."""

    def __init__(
        self,
        service: Service,
        api: client.ApiClient,
        *,
        resync_s: float = 300.0,
        backoff_s: float = 0.2,
        max_backoff_s: float = 30.0,
        cluster_network: str = "default/pods",
        switch_sequence: SwitchSequence | None = None,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        # Single GETs answer or fail within their timeout: no urllib3 retries stretching it.
        lookups = copy.copy(api.configuration)
        lookups.retries = False
        self.lookup = client.CoreV1Api(client.ApiClient(lookups))
        self.networking = client.NetworkingV1Api(api)
        self.events = Recorder(self.core)
        self.sync = Sync(
            service,
            self.custom,
            cluster_network=cluster_network,
            events=self.events,
            switch_sequence=switch_sequence,
            core=self.lookup,
        )
        self.stopping = threading.Event()
        self._background: threading.Thread | None = None
        calls: dict[str, Any] = {
            name: functools.partial(self.custom.list_cluster_custom_object, GROUP, VERSION, name) for name in CUSTOM
        }
        calls.update(
            nodes=self.core.list_node,
            namespaces=self.core.list_namespace,
            pods=self.core.list_pod_for_all_namespaces,
            networkpolicies=self.networking.list_network_policy_for_all_namespaces,
        )
        for kind, call in calls.items():
            self.sync.informers[kind] = Informer(
                kind, call, self.sync, resync_s=resync_s, backoff_s=backoff_s, max_backoff_s=max_backoff_s
            )

    @classmethod
    def connect(
        cls, service: Service, *, kubeconfig: str | None = None, in_cluster: bool = False, **options: Any
    ) -> Kubernetes:
        """Clients from the in-cluster service account (`in_cluster`) or a kubeconfig file. Raises
        `kubernetes.config.ConfigException` when the configuration cannot be loaded."""
        if in_cluster:
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api = client.ApiClient(configuration)
        else:
            api = config.new_client_from_config(config_file=kubeconfig)
        return cls(service, api, **options)

    def start(self) -> Kubernetes:
        for informer in self.sync.informers.values():
            informer.start()
        self.stopping = threading.Event()
        self._background = threading.Thread(target=self._run, args=(self.stopping,), name="k8s-events", daemon=True)
        self._background.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for informer in self.sync.informers.values():
            informer.stopping.set()
        for informer in self.sync.informers.values():
            informer.stop()
        if self._background is not None:
            self._background.join(10)
        self.sync.write_statuses()
        self.events.flush()

    def _run(self, stopping: threading.Event) -> None:
        """Off the watchers' threads and the Service's lock: realized NetworkPolicies, Network statuses
        (computed under the lock, written after it), then queued Events."""
        while not stopping.wait(BACKGROUND_S):
            try:
                self.sync.check_realized()
                self.sync.refresh_statuses()
                self.sync.write_statuses()
            except Exception:
                log.exception("checking realized NetworkPolicies and Network statuses failed")
            self.events.flush()

    # --- CNI ADD in a cluster (the endpoint route) ------------------------------------------------

    def endpoint_network(self, namespace: str, pod: str) -> tuple[str, Object]:
        """(TENANT/NAME, pod) for the endpoint of pod NAMESPACE/POD; raises ValidationError naming what is
        missing (`endpoint.k8s`, or the pod's `tenet.io/network` annotation)."""
        return self.sync.network_for(namespace, pod, self.lookup)

    def endpoint_attributes(self, network: str, pod: Object) -> dict[str, Any]:
        """`namespace`, `labels`, `ports` of the pod's endpoint on `network` (`Sync.endpoint_attributes`)."""
        return self.sync.endpoint_attributes(network, pod, self.lookup)

    def record(self, endpoint_id: str, pod: Object) -> None:
        self.sync.record(endpoint_id, pod)

    def forget(self, endpoint_id: str) -> None:
        self.sync.forget(endpoint_id)


def switches(app: Any) -> SwitchSequence:
    """`switch_sequence` over the OpenFlow app's sessions (`controller.app.osken_app`): the change a node's
    switch holds, None when it is not connected or reported errors (the rule of endpoint readiness)."""

    def sequence(node: str) -> int | None:
        for session in list(app.sessions.values()):
            if session.node == node and session.in_sync is not False:
                return int(session.synced_sequence)
        return None

    return sequence
