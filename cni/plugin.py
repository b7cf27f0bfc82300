"""`tenet-cni`: the CNI plugin (spec 0.3.0 to 1.1.0) that hands each request to the node's Tenet agent.

The runtime runs it once per verb with ``CNI_*`` environment variables and the network configuration on stdin;
it forwards the request over the agent's unix socket (cni.protocol) and prints the CNI result or error on
stdout. Standard library only, so it starts in milliseconds; `tenet-agent install-cni` writes a launcher
(cni.install) that runs it with ``python3 -I -S``, or, with a C compiler, the compiled plugin (cni/plugin.c),
which hands the runtime's environment and stdin to the agent, where this code runs on them (`forwarded`)
and talks to the agent's handler directly; either way the checks, results and errors are this module's.

Verbs: ADD, DEL, CHECK (cniVersion 0.4.0+), STATUS and GC (1.1.0+), VERSION. Environment: CNI_COMMAND always;
CNI_CONTAINERID and CNI_IFNAME for ADD, DEL and CHECK; CNI_NETNS for ADD and CHECK (DEL accepts it empty: the
namespace may be gone); CNI_ARGS may carry K8S_POD_NAMESPACE and K8S_POD_NAME (kubelet passes them), and for
ADD ``IP=10.0.0.5`` (the CNI conventions' CNI_ARGS ``IP``, as host-local and static take it).
ADD also honours the ``ips`` capability (CNI CONVENTIONS.md): with ``"capabilities": {"ips": true}`` on the
plugin in the conflist, a runtime passes ``"runtimeConfig": {"ips": ["10.0.0.5/24"]}`` and the pod gets that
address, or the ADD fails with the controller's reason naming it (outside the subnet, taken). One IPv4
address per attachment (cni.config.requested_ip); the network's subnet decides the prefix length.
CNI_IFNAME is checked as the kernel checks a name (cni.config.ifname_problem): at most 15 bytes, not
characters. DEL is best effort: it finds everything from CNI_CONTAINERID and CNI_IFNAME and ignores prevResult,
malformed or not. STATUS fails (code 50) when the config's default network has no free address left.

Network configuration (a plugin of a conflist; cni.install writes one)::

    {"cniVersion": "1.0.0", "name": "tenet", "type": "tenet",
     "tenant": "acme", "network": "web",            # the default attachment (optional if namespaces covers all)
     "namespaces": {"shop": "acme/shop"},           # Kubernetes namespace -> "TENANT/NETWORK" (optional)
     "agentSocket": "/run/tenet/agent.sock",        # optional, this is the default
     "timeout": 30}                                 # optional, seconds to wait for the agent

A pod whose namespace is in ``namespaces`` attaches to that network, any other to ``tenant``/``network``.
Chained after other plugins (e.g. ``loopback``) it appends its interface, address and route to ``prevResult``;
plugins after it (e.g. ``portmap``) receive the lot. GC takes ``cni.dev/valid-attachments`` and refuses to run
without it (an empty list would be an order to delete every attachment).

Errors are the spec's JSON object on stdout with exit status 1, never a traceback:

====  =====================================================================================
1     cniVersion missing or not spoken here, or too old for the verb (CHECK, STATUS, GC)
4     an environment variable missing or invalid; the message names it
6     stdin is not a JSON object
7     a configuration field missing or ill-typed; the message names it
11    the agent is not running or did not answer in time: try again later
50    STATUS: the agent is down or cannot serve ADD (controller, switch, or the network's pool exhausted)
999   anything else (the agent's own codes pass through unchanged)
====  =====================================================================================
"""

from __future__ import annotations

import posix  # built in and loaded already: `os` would cost ~1.5 ms of every plugin run
import sys

from cni import config as cniconfig
from cni import fastjson, protocol
from cni.config import LATEST_VERSION, SUPPORTED_VERSIONS, CniError, NetConf
from cni.protocol import GENERIC_FAILURE, INVALID_CONFIG, INVALID_ENVIRONMENT, IO_FAILURE, NOT_READY, AgentError
from cni.result import add_result, check_prev_result

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, BinaryIO, TextIO

    Call = Callable[..., dict[str, Any]]  # cni.protocol.call's shape: (socket path, request, *, timeout)

NOT_READY_EXISTING = 51  # STATUS: not ready, and existing pods may have lost connectivity too


def main() -> int:
    """Console entry point: run one CNI verb from the process's environment and stdin."""
    return run(environ(), sys.stdin.buffer, sys.stdout)


def environ() -> dict[str, str]:
    """The process's environment as `os.environ` gives it (undecodable bytes kept as surrogates)."""
    return {
        key.decode("utf-8", "surrogateescape"): value.decode("utf-8", "surrogateescape")
        for key, value in posix.environ.items()
    }


def run(env: Mapping[str, str], stdin: BinaryIO, stdout: TextIO, call: Call = protocol.call) -> int:
    """Run one verb; print its result or error to `stdout`; return the exit status."""
    try:
        data = stdin.read()
    except OSError as error:
        output: dict[str, Any] | None = _error(
            LATEST_VERSION, IO_FAILURE, "cannot read the network configuration from stdin", str(error)
        )
        status = 1
    else:
        output, status = outcome(env, data, call)
    if output is not None:
        try:
            stdout.write(fastjson.dumps(output) + "\n")
            stdout.flush()
        except OSError:
            status = status or 1
    return status


def outcome(env: Mapping[str, str], data: bytes, call: Call = protocol.call) -> tuple[dict[str, Any] | None, int]:
    """What one verb prints (None: nothing) and its exit status, from the environment and stdin's bytes.
    `call(socket_path, request, timeout=s)` asks the agent: cni.protocol.call, or the agent's own handler."""
    version = LATEST_VERSION
    try:
        version = _declared_version(data)
        return execute(env, data, call), 0
    except (CniError, AgentError) as error:
        return _error(version, error.code, error.msg, error.details), 1
    except Exception as error:  # the runtime must get the spec's error object, whatever happened
        return _error(version, GENERIC_FAILURE, f"{type(error).__name__}: {error}"), 1


def forwarded(request: Mapping[str, Any], call: Call) -> dict[str, Any]:
    """The agent's answer to the compiled plugin's EXEC request (cni.protocol): this plugin run in the agent on
    the runtime's CNI_* environment and stdin, as ``{"exit": status, "stdout": output or None}``, so the
    compiled plugin behaves exactly as this one. `call` is the agent's handler (see `outcome`)."""
    env, stdin = request.get("env"), request.get("stdin")
    output: dict[str, Any] | None
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values()) and isinstance(stdin, str)):
        output = _error(LATEST_VERSION, GENERIC_FAILURE, "EXEC: want env, an object of strings, and stdin, a string")
        return {"exit": 1, "stdout": output}
    output, status = outcome(env, stdin.encode("utf-8", "surrogateescape"), call)
    return {"exit": status, "stdout": output}  # this order: cni/plugin.c reads the answer as text


def execute(env: Mapping[str, str], data: bytes, call: Call = protocol.call) -> dict[str, Any] | None:
    """The output of one verb (None when the spec wants none); raises CniError or AgentError."""
    command = env.get("CNI_COMMAND", "")
    if command not in cniconfig.COMMANDS:
        detail = f"it is {command!r}" if command else "it is not set"
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND must be one of {', '.join(cniconfig.COMMANDS)}", detail)
    if command == "VERSION":
        return {"cniVersion": _declared_version(data), "supportedVersions": list(SUPPORTED_VERSIONS)}
    attachment = cniconfig.environment(env, command)
    pod = cniconfig.pod(env)
    raw = cniconfig.decode(data)
    if command == "DEL":  # best effort: DEL finds everything from CNI_CONTAINERID and CNI_IFNAME
        raw.pop("prevResult", None)
    conf = NetConf(raw, cniconfig.check_version(raw, command))
    request: dict[str, Any] = {"verb": command, "cni_network": conf.name, **attachment}
    # kubernetes: true and a pod in CNI_ARGS: the controller picks the network by its Kubernetes mapping.
    target = None if conf.kubernetes and pod else conf.target(pod["namespace"] if pod else None)
    if target is None and command in ("ADD", "CHECK") and conf.kubernetes and not (pod and pod["namespace"]):
        raise CniError(INVALID_ENVIRONMENT, "kubernetes: true needs K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS")
    if target is None and command in ("ADD", "CHECK") and not conf.kubernetes:
        namespace = pod["namespace"] if pod else "(none in CNI_ARGS)"
        raise CniError(
            INVALID_CONFIG,
            f"namespaces has no entry for Kubernetes namespace {namespace} "
            "and the config has no default tenant and network",
        )
    request["tenant"], request["network"] = target or ("", "")  # DEL must go through even if the config changed
    if pod is not None:
        request["pod"] = pod
    if command == "ADD":
        address = cniconfig.requested_ip(raw, env)
        if address is not None:
            request["ip"] = address
    if command == "STATUS":
        _status(conf, request, call)
        return None
    if command == "GC":
        request["valid_attachments"] = cniconfig.valid_attachments(raw)
    if command == "CHECK":
        check_prev_result(conf.prev_result, ifname=attachment["ifname"], netns=attachment["netns"])
    answer = call(conf.socket, request, timeout=conf.timeout)
    if command != "ADD":
        return None
    return add_result(
        conf.version, answer, ifname=attachment["ifname"], netns=attachment["netns"], prev=conf.prev_result
    )


def _status(conf: NetConf, request: dict[str, Any], call: Call) -> None:
    """STATUS succeeds with no output; an absent or unready agent is code 50 (51 if the agent says so)."""
    try:
        call(conf.socket, request, timeout=min(conf.timeout, cniconfig.STATUS_TIMEOUT))
    except AgentError as error:
        code = error.code if error.code in (NOT_READY, NOT_READY_EXISTING) else NOT_READY
        raise CniError(code, f"Tenet is not ready: {error.msg}", error.details) from None


def _declared_version(data: bytes) -> str:
    """The version to answer in: the config's cniVersion if this plugin speaks it, else the latest."""
    try:
        version = fastjson.loads(data).get("cniVersion")
    except Exception:
        return LATEST_VERSION
    return version if version in SUPPORTED_VERSIONS else LATEST_VERSION


def _error(version: str, code: int, msg: str, details: str = "") -> dict[str, Any]:
    error: dict[str, Any] = {"cniVersion": version, "code": code, "msg": msg}
    if details:
        error["details"] = details
    return error


if __name__ == "__main__":
    sys.exit(main())
