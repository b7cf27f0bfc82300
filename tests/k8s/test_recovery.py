"""The watchers across outages: a change made while the API server was down, a relist after 410 Gone that
applies each change exactly once, backoff while the API server is away (the Service keeps serving), the
resync that releases endpoints of pods gone without a CNI DEL, and a deleted Node releasing its endpoints."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config

from controller.k8s.cluster import Kubernetes
from controller.service import Service
from tests.k8s.conftest import Lab, wait_for
from topology.errors import ValidationError

WEB = {"tenant": "blue", "encap": "vxlan", "subnet": "10.1.0.0/24", "namespaces": ["shop"]}


def endpoint_of(lab: Lab, cluster: Kubernetes, eid: str, namespace: str, pod: str, node: str) -> None:
    """What the endpoint route does for a CNI ADD in a cluster: the pod's network, the endpoint, the record.
    A CNI ADD comes from a node's kubelet, so after the node watcher has applied the node."""
    wait_for(lambda: node in lab.service.model.nodes, f"node {node} applied")
    network, obj = cluster.endpoint_network(namespace, pod)
    lab.service.create_endpoint(eid, network=network, node=node)
    cluster.record(eid, obj)


def test_a_change_made_while_the_api_server_is_down_is_applied_after_it_returns(lab: Lab) -> None:
    cluster = lab.watch()
    lab.node("n1", "192.168.50.1")
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    lab.create("networks", "blue-web", WEB)
    lab.create("networks", "blue-old", {**WEB, "subnet": "10.2.0.0/24", "namespaces": []})
    model = lab.service.model
    wait_for(lambda: {"blue/blue-web", "blue/blue-old"} <= set(model.networks) and "n1" in model.nodes, "applied")
    wait_for(lambda: "shop/web" in cluster.sync.known("pods"), "pod shop/web watched")
    networks = cluster.sync.informers["networks"]

    lab.server.stop()
    lab.api.rest_client.pool_manager.clear()  # close the kept-alive connections that hold the port
    wait_for(lambda: networks.failures >= 3, "three failed reconnects")
    # Meanwhile the controller serves: a CNI ADD of a known pod on a known network still works.
    endpoint_of(lab, cluster, "c1-eth0", "shop", "web", "n1")
    assert model.endpoints["c1-eth0"].network == "blue/blue-web"

    # A second API server over the same etcd takes changes while the first is down.
    with lab.new_server() as other:
        api = config.new_client_from_config(config_file=str(other.write_kubeconfig(lab.directory / "other")))
        lab.create(
            "networks", "blue-new", {**WEB, "subnet": "10.3.0.0/24", "namespaces": []}, client.CustomObjectsApi(api)
        )
        lab.delete("networks", "blue-old", client.CustomObjectsApi(api))
    assert "blue/blue-old" in model.networks and "blue/blue-new" not in model.networks

    lab.restart()
    wait_for(lambda: "blue/blue-new" in model.networks and "blue/blue-old" not in model.networks, "outage changes")
    wait_for(lambda: networks.failures == 0, "reconnected")
    assert networks.outages >= 3
    assert "c1-eth0" in model.endpoints  # the pod is still there: its endpoint stays


def test_a_relist_after_410_gone_applies_each_change_exactly_once(lab: Lab) -> None:
    cluster = lab.watch()
    for n in range(1, 4):
        lab.node(f"n{n}", f"192.168.50.{n}")
    lab.namespace("shop")
    lab.pod("shop", "web", node="n2")
    lab.create("networks", "blue-web", WEB)
    model = lab.service.model
    wait_for(lambda: {"n1", "n2", "n3"} <= set(model.nodes) and "blue/blue-web" in model.networks, "applied")
    wait_for(lambda: "shop/web" in cluster.sync.known("pods"), "pod shop/web watched")
    endpoint_of(lab, cluster, "c1-eth0", "shop", "web", "n2")
    nodes = cluster.sync.informers["nodes"]
    cluster.stop()
    relists = nodes.relists

    lab.node("n4", "192.168.50.4")
    lab.core.patch_node("n1", {"metadata": {"annotations": {"tenet.io/tunnel-ip": "192.168.60.1"}}})
    lab.core.delete_node("n2")
    lab.server.store.compact(lab.server.store.revision())

    seen: list[tuple[str, str, str, str]] = []
    sync = cluster.sync
    upsert, delete = sync.upsert, sync.delete

    def counted_upsert(kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
        seen.append(("upsert", kind, obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
        return upsert(kind, obj, old)  # False: refused, and the informer retries it on its next relist

    def counted_delete(kind: str, old: dict[str, Any]) -> None:
        seen.append(("delete", kind, old["metadata"]["name"], old["metadata"]["resourceVersion"]))
        delete(kind, old)

    sync.upsert, sync.delete = counted_upsert, counted_delete  # type: ignore[method-assign]
    cluster.start()
    wait_for(
        lambda: "n4" in model.nodes and "c1-eth0" not in model.endpoints and "c1-eth0" not in sync.pods_of,
        "changes after 410 applied",
    )
    wait_for(lambda: nodes.relists > relists and nodes.failures == 0, "relisted")
    assert str(model.nodes["n1"].tunnel_ip) == "192.168.60.1"
    node_events = sorted((what, name) for what, kind, name, _ in seen if kind == "nodes")
    assert node_events == [("delete", "n2"), ("upsert", "n1"), ("upsert", "n4")]
    assert len(seen) == len(set(seen)), seen
    assert "c1-eth0" not in sync.pods_of


def test_the_resync_releases_the_endpoints_of_pods_gone_without_a_cni_del(lab: Lab) -> None:
    cluster = lab.watch(resync_s=0.5)
    lab.node("n1", "192.168.50.1")
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    lab.create("networks", "blue-web", WEB)
    model = lab.service.model
    wait_for(lambda: "blue/blue-web" in model.networks and "shop/web" in cluster.sync.known("pods"), "applied")
    endpoint_of(lab, cluster, "c1-eth0", "shop", "web", "n1")
    # A pod the watch never reported deleted (its node died, no DEL came): only a resync can tell.
    ghost = {"metadata": {"namespace": "shop", "name": "ghost"}, "spec": {}}
    lab.service.create_endpoint("c2-eth0", network="blue/blue-web", node="n1")
    cluster.record("c2-eth0", ghost)
    pods = cluster.sync.informers["pods"]
    relists = pods.relists
    wait_for(lambda: "c2-eth0" not in cluster.sync.pods_of, "ghost's endpoint released by a resync")
    assert "c2-eth0" not in model.endpoints and "c1-eth0" in model.endpoints and pods.relists > relists
    assert lab.store.get("/tenet/k8s/endpoints/c2-eth0") is None

    # The controller stops; the pod is deleted meanwhile; the next controller's first list releases it.
    lab.stop_watching()
    lab.core.delete_namespaced_pod("web", "shop")
    restarted = Service(lab.store)
    restarted.restore()
    assert "c1-eth0" in restarted.model.endpoints
    later = Kubernetes(restarted, lab.api).start()
    try:
        wait_for(lambda: "c1-eth0" not in later.sync.pods_of, "endpoint of the pod deleted while down")
        assert "c1-eth0" not in restarted.model.endpoints
        assert lab.store.get("/tenet/k8s/endpoints/c1-eth0") is None
    finally:
        later.stop()


def test_a_deleted_node_releases_its_endpoints(lab: Lab) -> None:
    cluster = lab.watch()
    lab.node("n1", "192.168.50.1")
    lab.node("n2", "192.168.50.2")
    lab.namespace("shop")
    lab.pod("shop", "a", node="n1")
    lab.pod("shop", "b", node="n2")
    lab.create("networks", "blue-web", WEB)
    model = lab.service.model
    wait_for(lambda: "blue/blue-web" in model.networks and len(cluster.sync.known("pods")) == 2, "applied")
    endpoint_of(lab, cluster, "a-eth0", "shop", "a", "n1")
    endpoint_of(lab, cluster, "b-eth0", "shop", "b", "n2")
    lab.core.delete_node("n1")
    wait_for(lambda: "a-eth0" not in model.endpoints and "a-eth0" not in cluster.sync.pods_of, "n1's released")
    assert "b-eth0" in model.endpoints and "b-eth0" in cluster.sync.pods_of


def test_a_pod_made_while_a_list_is_answered_keeps_its_endpoint(lab: Lab) -> None:
    cluster = lab.watch()
    lab.node("n1", "192.168.50.1")
    lab.namespace("shop")
    lab.create("networks", "blue-web", WEB)
    model = lab.service.model
    wait_for(lambda: "blue/blue-web" in model.networks and "n1" in model.nodes, "applied")
    pods = cluster.sync.informers["pods"]
    wait_for(lambda: pods.relists > 0, "pods listed")
    cluster.stop()
    listing = pods.list_call

    def list_then_add(**kwargs: Any) -> Any:
        """The list is answered; then the pod is made and its CNI ADD handled (the pod GET fallback)."""
        answer = listing(**kwargs)
        lab.pod("shop", "late", node="n1")
        endpoint_of(lab, cluster, "late-eth0", "shop", "late", "n1")
        return answer

    pods.list_call = list_then_add
    pods.relist()
    assert "shop/late" not in pods.known  # the list did not have it
    assert "late-eth0" in model.endpoints and "late-eth0" in cluster.sync.pods_of

    # A later list has it: nothing changes. A record older than a list without the pod, whose pod is gone, goes.
    pods.list_call = listing
    pods.relist()
    assert "late-eth0" in model.endpoints and "shop/late" in pods.known
    lab.core.delete_namespaced_pod("late", "shop")
    pods.relist()
    assert "late-eth0" not in model.endpoints and "late-eth0" not in cluster.sync.pods_of


def test_a_pod_made_again_with_the_same_name_keeps_only_its_own_endpoint(lab: Lab) -> None:
    cluster = lab.watch()
    lab.node("n1", "192.168.50.1")
    lab.node("n2", "192.168.50.2")
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    lab.pod("shop", "db", node="n1")
    lab.create("networks", "blue-web", WEB)
    model, sync = lab.service.model, cluster.sync
    wait_for(lambda: "blue/blue-web" in model.networks and len(sync.known("pods")) == 2, "applied")
    endpoint_of(lab, cluster, "web-1", "shop", "web", "n1")
    endpoint_of(lab, cluster, "db-1", "shop", "db", "n1")
    pods = sync.informers["pods"]
    cluster.stop()

    # web is deleted and made again; the later pod's CNI ADD comes before the earlier pod's DELETED event.
    earlier = pods.known["shop/web"]
    lab.core.delete_namespaced_pod("web", "shop")
    lab.pod("shop", "web", node="n2")
    later = lab.api.sanitize_for_serialization(lab.core.read_namespaced_pod("web", "shop"))
    lab.service.create_endpoint("web-2", network="blue/blue-web", node="n2")
    cluster.record("web-2", later)
    sync.delete("pods", earlier)
    assert "web-2" in model.endpoints and "web-2" in sync.pods_of
    assert "web-1" not in model.endpoints and "web-1" not in sync.pods_of

    # A CNI ADD for the later pod resolved from a stale watch (the earlier pod's uid), on its node, after it
    # was made: the later pod's event keeps the endpoint and corrects the uid.
    later_uid = later["metadata"]["uid"]
    lab.service.create_endpoint("web-3", network="blue/blue-web", node="n2")
    cluster.record("web-3", earlier)
    sync.upsert("pods", later, earlier)
    assert "web-3" in model.endpoints and sync.pods_of["web-3"]["uid"] == later_uid
    assert "web-2" in model.endpoints

    # db is deleted and made again on another node while the watch is away; a relist (410) sees it changed.
    lab.core.delete_namespaced_pod("db", "shop")
    lab.pod("shop", "db", node="n2")
    pods.resource_version = None
    cluster.start()
    wait_for(lambda: "db-1" not in sync.pods_of, "the earlier db pod's endpoint released")
    assert "db-1" not in model.endpoints and "web-2" in model.endpoints


def test_a_relist_deletes_first_and_retries_what_was_refused(lab: Lab) -> None:
    cluster = lab.watch()
    lab.create("networks", "blue-web", {**WEB, "vni": 100})
    model, sync = lab.service.model, cluster.sync
    wait_for(lambda: "blue/blue-web" in model.networks, "blue-web applied")
    networks = sync.informers["networks"]
    cluster.stop()

    # While the watch is away blue-web goes and a-new takes its VNI; a relist (410) must free it first.
    lab.delete("networks", "blue-web")
    lab.create("networks", "a-new", {**WEB, "vni": 100, "subnet": "10.5.0.0/24", "namespaces": []})
    networks.resource_version = None
    networks.relist()
    assert "blue/a-new" in model.networks and "blue/blue-web" not in model.networks
    assert model.networks["blue/a-new"].segment == 100

    # A Network refused (VNI taken) is applied by the next relist once what refused it is gone.
    lab.create("networks", "c-dup", {**WEB, "vni": 100, "subnet": "10.6.0.0/24", "namespaces": []})
    networks.relist()
    assert "blue/c-dup" not in model.networks and "c-dup" in networks.refused
    lab.delete("networks", "a-new")
    networks.relist()
    assert "blue/c-dup" in model.networks and "blue/a-new" not in model.networks and not networks.refused


def test_a_network_deleted_with_endpoints_leaves_the_model_with_its_last_endpoint(lab: Lab) -> None:
    cluster = lab.watch()
    lab.node("n1", "192.168.50.1")
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    lab.create("networks", "blue-web", WEB)
    lab.create("networks", "blue-db", {**WEB, "subnet": "10.2.0.0/24", "namespaces": []})
    model, sync = lab.service.model, cluster.sync
    wait_for(lambda: {"blue/blue-web", "blue/blue-db"} <= set(model.networks), "applied")
    wait_for(lambda: "shop/web" in sync.known("pods"), "pod shop/web watched")
    endpoint_of(lab, cluster, "web-eth0", "shop", "web", "n1")

    lab.delete("networks", "blue-web")
    warned = wait_for(
        lambda: [e for e in cluster.events.history if e["reason"] == "DeletionPending"], "a DeletionPending Event"
    )
    assert warned and warned[0]["involvedObject"]["name"] == "blue-web" and warned[0]["type"] == "Warning"
    assert "blue/blue-web" in model.networks  # kept while it has an endpoint
    # Meanwhile no new pod joins it, by annotation or by its namespace.
    lab.pod("shop", "late", node="n1", annotations={"tenet.io/network": "blue/blue-web"})
    lab.pod("shop", "other", node="n1")
    wait_for(lambda: {"shop/late", "shop/other"} <= set(sync.known("pods")), "pods watched")
    for pod in ("late", "other"):
        with pytest.raises(ValidationError):
            cluster.endpoint_network("shop", pod)

    lab.core.delete_namespaced_pod("web", "shop")
    wait_for(
        lambda: "blue/blue-web" not in model.networks and "blue/blue-web" not in sync.deleting,
        "blue-web deleted with its last endpoint",
    )
    assert "blue/blue-db" in model.networks


def test_a_network_waiting_for_deletion_is_deleted_by_a_restarted_controller(lab: Lab) -> None:
    cluster = lab.watch()
    lab.node("n1", "192.168.50.1")
    lab.namespace("shop")
    lab.pod("shop", "web", node="n1")
    lab.create("networks", "blue-web", WEB)
    model = lab.service.model
    wait_for(lambda: "blue/blue-web" in model.networks and "shop/web" in cluster.sync.known("pods"), "applied")
    endpoint_of(lab, cluster, "web-eth0", "shop", "web", "n1")
    lab.delete("networks", "blue-web")
    wait_for(lambda: lab.store.get("/tenet/k8s/deleting/blue/blue-web") is not None, "the deletion remembered")
    lab.stop_watching()

    lab.core.delete_namespaced_pod("web", "shop")
    restarted = Service(lab.store)
    restarted.restore()
    assert "blue/blue-web" in restarted.model.networks
    later = Kubernetes(restarted, lab.api).start()
    try:
        # The network leaves the model, then the record of its pending deletion leaves the store (a crash
        # in between is met by the first branch of retry_deletions): wait for both.
        wait_for(
            lambda: (
                "blue/blue-web" not in restarted.model.networks
                and lab.store.get("/tenet/k8s/deleting/blue/blue-web") is None
            ),
            "blue-web and its pending deletion deleted by the next controller",
        )
        assert "web-eth0" not in restarted.model.endpoints
    finally:
        later.stop()
