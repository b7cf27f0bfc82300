"""tenetctl's Kubernetes commands: namespaces and NetworkPolicies on a running controller.

tenetctl namespace create NAME --tenant T [--label KEY=VALUE]... | ls [--tenant T] | show NAME | rm NAME
tenetctl namespace label NAME KEY=VALUE... KEY-...        (set and remove labels, as kubectl label does)
tenetctl endpoint set ID [--label KEY=VALUE]... [--no-labels] [--ports http=80/tcp,dns=53/udp|none]
tenetctl policy apply -f FILE [-n NAMESPACE]              (Kubernetes YAML: one or many NetworkPolicies)
tenetctl policy ls [NAMESPACE] | show NAMESPACE/NAME | rm NAMESPACE/NAME
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from controller import cli_live
from controller.cli_live import Output, UsageError, fields, header, table
from controller.client import Client, ClientError, path
from topology.errors import ValidationError
from topology.namespaces import NAME_LABEL
from topology.netpol_spec import KIND, parse_policy


def add_endpoint_set(actions: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `endpoint set` on the `endpoint` command's actions."""
    update = cli_live._leaf(
        actions,
        "set",
        common,
        set_endpoint,
        "replace an endpoint's labels and/or named container ports (its tenant or the admin), all or nothing",
    )
    update.add_argument("id", metavar="ID")
    update.add_argument(
        "--label",
        action="append",
        metavar="KEY=VALUE",
        help="a label (repeatable); the labels given replace all the endpoint had",
    )
    update.add_argument("--no-labels", action="store_true", help="remove all the endpoint's labels")
    update.add_argument(
        "--ports",
        metavar="NAME=PORT/PROTOCOL,...|none",
        help="named container ports replacing the endpoint's, e.g. http=80/tcp,dns=53/udp (protocol tcp, udp "
        "or sctp; default tcp); none removes them all",
    )


def add_commands(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """Register `namespace` and `policy` on tenetctl's subcommand parser."""
    leaf = cli_live._leaf
    actions = cli_live._subcommands(commands, "namespace", "Kubernetes namespaces, each of one tenant, with labels")
    create = leaf(actions, "create", common, create_namespace, "create a namespace of a tenant")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--tenant", required=True, help="the tenant it belongs to")
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a label (repeatable)")
    ls = leaf(actions, "ls", common, list_namespaces, "list namespaces")
    ls.add_argument("--tenant", help="only this tenant's")
    leaf(actions, "show", common, show_namespace, "show a namespace").add_argument("name", metavar="NAME")
    rm = leaf(actions, "rm", common, delete_namespace, "delete a namespace without endpoints and NetworkPolicies")
    rm.add_argument("name", metavar="NAME")
    label = leaf(
        actions,
        "label",
        common,
        label_namespace,
        f"set (KEY=VALUE) and remove (KEY-) a namespace's labels; {NAME_LABEL} is always the namespace's name "
        "(set by the system: a change to it is kept out, with a warning)",
    )
    label.add_argument("name", metavar="NAME")
    label.add_argument("changes", nargs="+", metavar="KEY=VALUE|KEY-")

    actions = cli_live._subcommands(commands, "policy", "Kubernetes NetworkPolicies (networking.k8s.io/v1)")
    apply = leaf(
        actions,
        "apply",
        common,
        apply_policies,
        "create or replace the NetworkPolicies of a Kubernetes YAML file (one or many documents, each of "
        "kind NetworkPolicy), all or nothing: every document is checked, then all are sent in one request and "
        "the controller applies every one or none (an unknown namespace refuses the whole file)",
    )
    apply.add_argument("-f", "--filename", required=True, metavar="FILE", help="the YAML file ('-' for stdin)")
    apply.add_argument(
        "-n",
        "--namespace",
        help="the namespace of documents without metadata.namespace; a document naming another namespace is "
        "refused (as kubectl does), and then nothing is applied",
    )
    ls = leaf(actions, "ls", common, list_policies, "list NetworkPolicies")
    ls.add_argument("namespace", nargs="?", metavar="NAMESPACE", help="only this namespace's")
    show = leaf(actions, "show", common, show_policy, "print a NetworkPolicy as YAML, as submitted")
    show.add_argument("policy", metavar="NAMESPACE/NAME")
    rm = leaf(actions, "rm", common, delete_policy, "delete a NetworkPolicy")
    rm.add_argument("policy", metavar="NAMESPACE/NAME")


def split_policy(key: str) -> tuple[str, str]:
    namespace, _, name = key.partition("/")
    if not namespace or not name or "/" in name:
        raise UsageError(f"want NAMESPACE/NAME, got {key!r}")
    return namespace, name


def parse_label_args(changes: list[str], *, removals: bool) -> tuple[dict[str, str], list[str]]:
    """`KEY=VALUE` sets, `KEY-` removes (where `removals`); the values are checked by the controller."""
    sets: dict[str, str] = {}
    removed: list[str] = []
    for change in changes:
        if "=" in change:
            key, _, value = change.partition("=")
            sets[key] = value
        elif removals and change.endswith("-") and len(change) > 1:
            removed.append(change[:-1])
        else:
            raise UsageError(f"want KEY=VALUE{' or KEY-' if removals else ''}, got {change!r}")
    return sets, removed


# --- namespaces ------------------------------------------------------------------------------------------


def parse_port_args(text: str) -> list[dict[str, Any]]:
    """`--ports` as the API's `[{name, port, protocol}]`: "http=80/tcp,dns=53/udp", or "none" for []."""
    if text.strip() == "none":
        return []
    ports = []
    for item in text.split(","):
        name, equals, rest = item.strip().partition("=")
        number, _, protocol = rest.partition("/")
        if not (equals and name and number.isdigit()):
            raise UsageError(f"--ports: want NAME=PORT[/PROTOCOL], got {item.strip()!r}")
        ports.append({"name": name, "port": int(number), "protocol": (protocol or "tcp").upper()})
    return ports


ENDPOINT_SET_FIELDS = ("id", "network", "namespace", "labels", "ports")


def set_endpoint(client: Client, args: argparse.Namespace) -> Output:
    """PATCH /v1/endpoints/ID with the labels and/or ports given."""
    body: dict[str, Any] = {}
    if args.label is not None or args.no_labels:
        if args.label and args.no_labels:
            raise UsageError("--label and --no-labels exclude each other")
        body["labels"] = parse_label_args(args.label or [], removals=False)[0]
    if args.ports is not None:
        body["ports"] = parse_port_args(args.ports)
    if not body:
        raise UsageError("nothing to set: give --label, --no-labels or --ports")
    doc = client.patch(path("v1", "endpoints", args.id), body)
    shown = {
        **doc,
        "labels": [f"{k}={v}" for k, v in sorted(doc["labels"].items())],
        "ports": [f"{p['name']}={p['port']}/{p['protocol'].lower()}" for p in doc["ports"]],
    }
    return Output(doc, fields(shown, ENDPOINT_SET_FIELDS))


NAMESPACE_FIELDS = ("name", "tenant", "labels", "endpoints", "networkpolicies")


def namespace_view(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "labels": [f"{k}={v}" for k, v in sorted(doc["labels"].items())]}


def create_namespace(client: Client, args: argparse.Namespace) -> Output:
    labels, _ = parse_label_args(args.label, removals=False)
    doc = client.post(path("v1", "namespaces"), {"name": args.name, "tenant": args.tenant, "labels": labels})
    return Output(doc, f"created namespace {doc['name']} of tenant {doc['tenant']}")


def list_namespaces(client: Client, args: argparse.Namespace) -> Output:
    docs = client.get(path("v1", "namespaces"), tenant=args.tenant)
    columns = ("name", "tenant", "endpoints", "networkpolicies", "labels")
    rows = [[namespace_view(d)[c] for c in columns] for d in docs]
    return Output(docs, table([header(c) for c in columns], rows))


def show_namespace(client: Client, args: argparse.Namespace) -> Output:
    doc = client.get(path("v1", "namespaces", args.name))
    return Output(doc, fields(namespace_view(doc), NAMESPACE_FIELDS))


def delete_namespace(client: Client, args: argparse.Namespace) -> Output:
    client.delete(path("v1", "namespaces", args.name))
    return Output({"deleted": args.name}, f"deleted namespace {args.name}")


def label_namespace(client: Client, args: argparse.Namespace) -> Output:
    sets, removed = parse_label_args(args.changes, removals=True)
    if sets.get(NAME_LABEL, args.name) != args.name or NAME_LABEL in removed:
        print(
            f"tenetctl: warning: {NAME_LABEL} is set by the system to the namespace's name; kept as {args.name!r}",
            file=sys.stderr,
        )
    current = client.get(path("v1", "namespaces", args.name))["labels"]
    labels = {k: v for k, v in current.items() if k != NAME_LABEL and k not in removed}
    labels.update(sets)
    doc = client.request("PATCH", path("v1", "namespaces", args.name), body={"labels": labels})
    return Output(doc, f"namespace {doc['name']}: {', '.join(namespace_view(doc)['labels'])}")


# --- NetworkPolicies -------------------------------------------------------------------------------------


def read_documents(filename: str, namespace: str | None) -> list[dict[str, Any]]:
    """The file's documents, each a NetworkPolicy checked as the controller will check it (all before any is
    sent); empty documents are skipped. Raises UsageError naming the document (1-based) and the field."""
    try:
        text = Path("/dev/stdin" if filename == "-" else filename).read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
    except OSError as error:
        raise UsageError(f"cannot read {filename}: {error.strerror or error}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f"{filename}: not YAML: {' '.join(str(error).split())}") from None
    found: list[dict[str, Any]] = []
    for number, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind != KIND:
            raise UsageError(
                f"{filename}: document {number} is of kind {kind!r}, not NetworkPolicy; nothing was applied"
            )
        try:
            parse_policy(doc, namespace=namespace)
        except ValidationError as error:
            said = str(error).replace("(or give the namespace separately)", "(or give -n NAMESPACE)")
            raise UsageError(f"{filename}: document {number}: {said}; nothing was applied") from None
        found.append(doc)
    if not found:
        raise UsageError(f"{filename}: no NetworkPolicy in the file")
    return found


def apply_policies(client: Client, args: argparse.Namespace) -> Output:
    """POST /v1/networkpolicies with every document of the file in one request: the controller applies all
    or none (an unknown namespace, or another tenant's, refuses the whole file)."""
    docs = read_documents(args.filename, args.namespace)
    body: dict[str, Any] = {"items": docs}
    if args.namespace is not None:
        body["namespace"] = args.namespace
    try:
        answer = client.post(path("v1", "networkpolicies"), body)
    except ClientError as error:
        if error.status is None or error.status >= 500:  # no answer, or the controller's fault: it may say more
            raise
        message = f"{args.filename}: {error}; nothing was applied"
        raise ClientError(message, status=error.status, field=error.field) from None
    lines = [f"networkpolicy {d['namespace']}/{d['name']} {d['result']}" for d in answer["items"]]
    return Output(answer["items"], "\n".join(lines))


def policy_row(doc: dict[str, Any]) -> list[object]:
    policy = parse_policy(doc)
    selector = (doc.get("spec") or {}).get("podSelector") or {}
    match = selector.get("matchLabels") or {}
    shown = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
    if selector.get("matchExpressions"):
        shown += ("," if shown else "") + f"+{len(selector['matchExpressions'])} expression(s)"
    return [policy.namespace, policy.name, shown or "<all>", ",".join(policy.policy_types)]


def list_policies(client: Client, args: argparse.Namespace) -> Output:
    spaces = [args.namespace] if args.namespace else [d["name"] for d in client.get(path("v1", "namespaces"))]
    docs = [doc for space in spaces for doc in client.get(path("v1", "namespaces", space, "networkpolicies"))]
    rows = [policy_row(doc) for doc in docs]
    return Output(docs, table(["NAMESPACE", "NAME", "POD-SELECTOR", "POLICY-TYPES"], rows))


def show_policy(client: Client, args: argparse.Namespace) -> Output:
    namespace, name = split_policy(args.policy)
    doc = client.get(path("v1", "namespaces", namespace, "networkpolicies", name))
    return Output(doc, yaml.safe_dump(doc, sort_keys=False))


def delete_policy(client: Client, args: argparse.Namespace) -> Output:
    namespace, name = split_policy(args.policy)
    client.delete(path("v1", "namespaces", namespace, "networkpolicies", name))
    return Output({"deleted": args.policy}, f"deleted NetworkPolicy {args.policy}")
