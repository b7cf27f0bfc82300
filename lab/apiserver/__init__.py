"""A stand-in Kubernetes API server for tests and the lab, where no kube-apiserver can be installed.

    python -m lab.apiserver --etcd http://127.0.0.1:2379 --port 6443 --kubeconfig-out /tmp/kubeconfig \
        --token="$TOKEN" --cert-dir /tmp/apiserver      # the same port, token and certificate at every start
    kubectl --kubeconfig /tmp/kubeconfig apply -f deploy/

A kubeconfig names the URL, the token and the certificate: it stays valid across a restart only when the
restart is given the same `--port`, `--token` and `--cert-dir` (without `--token` each start picks a new random
token, and clients holding the old kubeconfig get 401 until they load the new one; `tenet-lab` keeps all three).

    with StandInApiServer(etcd_url, cert_dir=...) as server:      # in-process, for tests
        server.write_kubeconfig(path)                              # for kubectl and the `kubernetes` client

What it serves, following the documented API (https://kubernetes.io/docs/reference/using-api/api-concepts/):
- discovery: `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}` (the unaggregated forms;
  kubectl asks for aggregated discovery first and falls back to them), `/version`, `/healthz`, `/livez`,
  `/readyz`, and `/openapi/v3` documents just deep enough for kubectl to use server-side field validation;
- the built-in kinds Tenet and its manifests (deploy/) use, one table entry each (`builtin`): core v1
  Namespaces, Nodes, Pods, Services, ConfigMaps, Secrets, ServiceAccounts, ResourceQuotas and Events;
  events.k8s.io/v1 Events; apps/v1 Deployments and DaemonSets; rbac.authorization.k8s.io/v1 ClusterRoles,
  ClusterRoleBindings, Roles and RoleBindings; networking.k8s.io/v1 NetworkPolicies;
  apiextensions.k8s.io/v1 CustomResourceDefinitions, and the resources of every stored CRD (cluster or
  namespaced scope, status subresource, additionalPrinterColumns, categories, schema defaults, schema checks
  of types, enums, bounds and required fields, unknown fields pruned or, with `fieldValidation=Strict`,
  refused);
- get, list, create (POST), update (PUT), patch (merge, strategic merge, JSON patch), delete; the `status`
  subresource, and Deployments' `scale` (autoscaling/v1, for `kubectl scale`); `dryRun=All` (as a query
  parameter, or in DeleteOptions); `Table` answers for `kubectl get` (and `get -w`);
- list and watch with `resourceVersion`, `resourceVersionMatch` (Exact, NotOlderThan), label selectors
  (=, ==, !=, in, notin, key, !key), field selectors (`metadata.name`, `metadata.namespace`, and for pods
  `spec.nodeName` and `status.phase`), `allowWatchBookmarks`, `sendInitialEvents`, `timeoutSeconds`, and
  410 Gone (an ERROR watch event, or the answer to an Exact list) for a version etcd compacted away;
- `uid`, `creationTimestamp`, `generation`, `resourceVersion`, `deletionTimestamp` held by finalizers,
  409 Conflict on a stale `resourceVersion`, 409 AlreadyExists, 422 Invalid with field causes;
- shallow checks of the built-in kinds (`validation` lists them: selectors matching templates and
  immutable, containers with names and images, RBAC rules, role references and subjects, config keys,
  Secrets' base64 and `stringData`, Events' reporting fields and namespaces);
- NetworkPolicies (networking.k8s.io/v1) validated in full on create, update and patch by Tenet's own
  validator, topology/netpol_spec.py (written after kube-apiserver's pkg/apis/networking/validation):
  `port: 9000, endPort: 8000` is 422 Invalid with the cause's field `spec.ingress[0].ports[0].endPort`, as
  kube-apiserver answers; unknown fields are refused; `spec.policyTypes` is defaulted when stored (Ingress,
  and Egress when `spec.egress` has rules), as kube-apiserver's defaulting does;
- a deleted Namespace is Terminating (no new objects in it: 403) for `namespace_cleanup` seconds (1), then
  what it holds and itself are removed, as kube-apiserver's namespace controller does.

Storage: the project's etcd, through etcd3gw (see `store`). etcd's revision is the resourceVersion, its
compare-and-swap on `mod_revision` gives optimistic concurrency, its watch from a revision gives resumable
watches, and compaction gives the 410 case, the same way kube-apiserver uses etcd; objects and revisions
outlive a restart of the stand-in. SQLite would have needed our own revision counter, change log,
compaction and change notification: the very machinery etcd has. There is no `--sqlite` option.

HTTP: cheroot's WSGI server (as the project's own API), HTTPS only: client-go sends bearer tokens only
over TLS, so the server makes a self-signed certificate with `openssl` and puts it in the kubeconfig as the
certificate authority. A watch streams a generator (chunked) and holds one worker thread while it runs.

Why not kmock (PyPI, by kopf's author): it is an aiohttp mock server for asserting what a client sent, with
an in-memory object store; it has no resourceVersion history, no selectors, no 410, no bookmarks and no
persistence, and serving kubectl would still need the discovery, Table and patch semantics written here.
What this package took from it is the approach: a real server on a real socket, no monkey-patching.

What it leaves out (honest limits):
- authentication is one bearer token; no RBAC, no admission (mutating or validating, webhooks or built-in:
  no service-account tokens, no LimitRanges, no pod defaults beyond `status.phase: Pending`), no
  ValidatingAdmissionPolicy or CEL `x-kubernetes-validations`;
- built-in kinds are validated no further than `validation` says (Pods, Services, Nodes and ResourceQuotas
  beyond metadata not at all), and get no defaults (a Deployment has no default `replicas`, `strategy` or
  pod-spec fields; only a Secret's `type` and a NetworkPolicy's `policyTypes` are defaulted); no controllers run:
  Deployments and DaemonSets make no pods and their status stays empty, ServiceAccounts get no token
  Secrets, pods are never scheduled or run, Services get no cluster IP, Nodes have no heartbeats;
- events.k8s.io/v1 Events are core v1 Events with renamed top-level fields (one storage, as in
  kube-apiserver), but nothing is converted below the top level, and no event is ever aggregated or expired;
- server-side apply (`application/apply-patch+yaml`) is refused with 415, and there are no
  `managedFields`; kubectl's client-side apply (last-applied annotation) is what works;
- strategic merge patches follow the documented directives (`$patch`, `$setElementOrder`, `$retainKeys`,
  `$deleteFromPrimitiveList`) and know which lists merge, and on which key, by field name (containers by
  name, ports by containerPort or port, finalizers as a set, ...: `selectors.MERGE_KEYS`), not by each Go
  type's path; JSON patch has no move or copy;
- bodies must be JSON: protobuf, which kubectl's generator commands send (`kubectl create namespace`,
  `create secret generic`, `create configmap`, `create deployment`, ...), gets 415; pipe them instead:
  `kubectl create secret generic NAME --from-file=F --dry-run=client -o json | kubectl create -f -`;
  CBOR and YAML bodies likewise;
- no aggregated discovery, no `/openapi/v2`, and the v3 documents carry no object schemas (kubectl builds
  strategic merge patches from its own compiled-in types); `fieldValidation=Strict` checks custom
  resources only;
- `limit`/`continue` are ignored (a list is always complete), `resourceVersion` on a NotOlderThan list is
  served from the latest state, a watch from a future version simply waits; no `deletecollection`;
- deletion is immediate (no grace periods, no orphan or foreground propagation, no owner references or
  garbage collection); deleting a CRD deletes its objects at once, and a Terminating Namespace's contents
  go when it does, finalizers of the contents notwithstanding;
- CRD versions share one storage with no conversion: an object keeps the apiVersion it was written with;
- watches send a blank line after a few quiet seconds (clients skip it) to notice clients that left, and
  bookmarks every `bookmark_interval` seconds (kube-apiserver's are about a minute apart).
"""

from lab.apiserver.server import StandInApiServer

__all__ = ["StandInApiServer"]
