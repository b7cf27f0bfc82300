"""The non-Kubernetes path: a CNI ADD whose CNI_ARGS name the pod (K8S_POD_NAMESPACE, K8S_POD_NAME), through
the real plugin, agent and controller, makes an endpoint in that namespace when the model has it in the
network's tenant, and in none otherwise."""

from __future__ import annotations

from pathlib import Path

from tests.functional.cni_support import start_cluster


def test_an_add_puts_the_endpoint_in_the_pods_namespace_when_its_tenant_has_it(tmp_path: Path) -> None:
    with start_cluster(tmp_path) as cluster:
        api, runtime = cluster.api, cluster.runtime
        api.post("/v1/namespaces", {"name": "shop", "tenant": "blue"})
        api.post("/v1/namespaces", {"name": "bank", "tenant": "red"})
        config = runtime.config("blue", "web", namespaces={"shop": "blue/web", "bank": "blue/web"})
        namespaces = {}
        for pod, namespace in (("p1", "shop"), ("p2", "bank"), ("p3", "plain")):
            args = f"K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}"
            netns = runtime.pod_netns(f"{pod}-{tmp_path.name[-8:]}")
            done = runtime.call("ADD", config, container=f"c-{pod}", netns=netns, env={"CNI_ARGS": args})
            assert done.code == 0, done
            [endpoint] = [e for e in api.get("/v1/endpoints") if e["id"] not in namespaces]
            namespaces[endpoint["id"]] = (pod, endpoint.get("namespace"))
        # bank is red's: the blue endpoint is in no namespace; plain is not in the model.
        assert sorted(namespaces.values()) == [("p1", "shop"), ("p2", None), ("p3", None)]
