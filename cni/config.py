"""What `tenet-cni` reads: the CNI environment variables and the network configuration on stdin.

Everything here validates and raises `CniError` carrying the CNI well-known code, so the plugin can print the
spec's error object. Standard library only.
"""

from __future__ import annotations

from cni import fastjson
from cni.protocol import DECODE_FAILURE, DEFAULT_SOCKET, INCOMPATIBLE_VERSION, INVALID_CONFIG, INVALID_ENVIRONMENT

TYPE_CHECKING = False  # importing typing costs milliseconds at every pod start
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")
# The verbs and the spec version that introduced each one (ADD and DEL are as old as the versions we speak).
FIRST_VERSION = {"CHECK": "0.4.0", "STATUS": "1.1.0", "GC": "1.1.0"}
DEFAULT_TIMEOUT = 30.0  # seconds; an ADD waits for the controller to install the endpoint's flows
STATUS_TIMEOUT = 5.0  # runtimes poll STATUS; a hung agent must not stall them for long
# libcni sends both keys: the spec first named it cni.dev/attachments, then cni.dev/valid-attachments.
ATTACHMENT_KEYS = ("cni.dev/valid-attachments", "cni.dev/attachments")
IFNAMSIZ = 16  # Linux's interface name buffer, NUL included
_IFNAME_BAD_BYTES = frozenset(b"/: \t\n\v\f\r\xa0")  # '/', ':' and the kernel's isspace()
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class CniError(Exception):
    """A failure to report with a CNI error code (0-99 well-known, 100+ Tenet's own)."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def decode(data: bytes) -> dict[str, Any]:
    """The network configuration as a JSON object; code 6 when it is not one."""
    try:
        config = fastjson.loads(data)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise CniError(DECODE_FAILURE, "the network configuration on stdin is not valid JSON", str(error)) from None
    if not isinstance(config, dict):
        raise CniError(
            DECODE_FAILURE, "the network configuration on stdin must be a JSON object", type(config).__name__
        )
    return config


def check_version(config: dict[str, Any], command: str) -> str:
    """The config's cniVersion if this plugin speaks it and it allows `command`; code 1 (or 7) otherwise."""
    if "cniVersion" not in config:
        raise CniError(INCOMPATIBLE_VERSION, "the network configuration has no cniVersion (which means 0.1.0)")
    version = config["cniVersion"]
    if not isinstance(version, str):
        raise CniError(INVALID_CONFIG, "cniVersion must be a string", _brief(version))
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(SUPPORTED_VERSIONS)
        raise CniError(
            INCOMPATIBLE_VERSION, "incompatible CNI version", f"config is {version!r}, plugin supports {supported}"
        )
    first = FIRST_VERSION.get(command)
    if first and version_key(version) < version_key(first):
        raise CniError(
            INCOMPATIBLE_VERSION, f"cniVersion {version} does not allow {command} (it needs {first} or later)"
        )
    return version


class NetConf:
    """The validated network configuration: the CNI fields Tenet uses and its own."""

    __slots__ = (
        "kubernetes", "name", "namespaces", "network", "prev_result", "socket", "tenant", "timeout", "version",
    )  # fmt: skip

    def __init__(self, config: dict[str, Any], version: str) -> None:
        self.version = version
        self.name = _name(config)
        if not isinstance(config.get("type"), str):
            raise CniError(
                INVALID_CONFIG, "type must be a string (the plugin's file name, tenet)", _show(config, "type")
            )
        self.tenant = _optional_str(config, "tenant")
        self.network = _optional_str(config, "network")
        if (self.tenant is None) != (self.network is None):
            missing = "network" if self.network is None else "tenant"
            raise CniError(INVALID_CONFIG, f"{missing} is missing: tenant and network go together")
        self.namespaces = _namespaces(config)
        # kubernetes: true: the controller picks a pod's network by its Kubernetes mapping (README "Kubernetes")
        self.kubernetes = config.get("kubernetes", False)
        if not isinstance(self.kubernetes, bool):
            raise CniError(INVALID_CONFIG, "kubernetes must be true or false", _show(config, "kubernetes"))
        if self.tenant is None and not self.namespaces and not self.kubernetes:
            raise CniError(
                INVALID_CONFIG,
                "the config needs tenant and network, or a namespaces mapping, or both, or kubernetes: true",
            )
        self.socket = _optional_str(config, "agentSocket") or DEFAULT_SOCKET
        self.timeout = _timeout(config)
        self.prev_result = _prev_result(config)

    def target(self, pod_namespace: str | None) -> tuple[str, str] | None:
        """(tenant, network) for a pod: its namespace's entry in `namespaces`, else the config's default."""
        if pod_namespace is not None and pod_namespace in self.namespaces:
            return self.namespaces[pod_namespace]
        if self.tenant is not None and self.network is not None:
            return self.tenant, self.network
        return None


def valid_attachments(config: dict[str, Any]) -> list[dict[str, str]]:
    """GC's list of attachments to keep; code 7 when missing, since an empty list would mean "delete all"."""
    key = next((key for key in ATTACHMENT_KEYS if key in config), None)
    if key is None:
        raise CniError(INVALID_CONFIG, f"GC needs {ATTACHMENT_KEYS[0]} in the network configuration")
    value = config[key]
    if not isinstance(value, list):
        raise CniError(INVALID_CONFIG, f"{key} must be a list", _show(config, key))
    kept = []
    for index, item in enumerate(value):
        if not (
            isinstance(item, dict) and isinstance(item.get("containerID"), str) and isinstance(item.get("ifname"), str)
        ):
            raise CniError(INVALID_CONFIG, f"{key}[{index}] must be an object with string containerID and ifname")
        kept.append({"containerID": item["containerID"], "ifname": item["ifname"]})
    return kept


def environment(env: Mapping[str, str], command: str) -> dict[str, str]:
    """CNI_CONTAINERID, CNI_IFNAME and CNI_NETNS as the verb needs them; code 4 naming what is wrong."""
    if command not in ("ADD", "DEL", "CHECK"):
        return {}
    needed = ("CNI_CONTAINERID", "CNI_IFNAME") if command == "DEL" else ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS")
    missing = [name for name in needed if not env.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"{', '.join(missing)} must be set for {command}")
    container_id, ifname = env["CNI_CONTAINERID"], env["CNI_IFNAME"]
    if not valid_name(container_id):
        raise CniError(INVALID_ENVIRONMENT, "CNI_CONTAINERID must be letters, digits, _ . - and start alphanumeric")
    problem = ifname_problem(ifname)
    if problem:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME is not a valid Linux interface name: {problem}", repr(ifname))
    return {"container_id": container_id, "ifname": ifname, "netns": env.get("CNI_NETNS", "")}


def cni_args(env: Mapping[str, str]) -> dict[str, str]:
    """CNI_ARGS ("K=V;K=V", as kubelet passes it) as a dict; code 4 when a pair is malformed."""
    args = {}
    for pair in env.get("CNI_ARGS", "").split(";"):
        if not pair:
            continue
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise CniError(INVALID_ENVIRONMENT, "CNI_ARGS must be KEY=VALUE pairs separated by ;", repr(pair))
        args[key] = value
    return args


def pod(env: Mapping[str, str]) -> dict[str, str] | None:
    """The Kubernetes pod from CNI_ARGS ("K=V;K=V", as kubelet passes it), or None when it names none."""
    args = cni_args(env)
    namespace, name = args.get("K8S_POD_NAMESPACE"), args.get("K8S_POD_NAME")
    if namespace is None and name is None:
        return None
    return {"namespace": namespace or "", "name": name or ""}


def requested_ip(config: dict[str, Any], env: Mapping[str, str]) -> str | None:
    """The IPv4 address the runtime asks for the attachment, or None: `runtimeConfig.ips` (the `ips`
    capability a conflist grants with ``"capabilities": {"ips": true}``) or ``IP=`` in CNI_ARGS (as host-local
    and static take it), after the CNI spec's CONVENTIONS.md. One IPv4 address per attachment: a list of
    more, an IPv6 address, or two sources naming different addresses are refused. A prefix length
    ("10.0.0.5/24") is accepted and checked, but the network's subnet decides the pod's. Errors name the field:
    code 7 for runtimeConfig.ips, 4 for CNI_ARGS IP."""
    from_config = None
    runtime = config.get("runtimeConfig")
    if runtime is not None and not isinstance(runtime, dict):
        raise CniError(INVALID_CONFIG, "runtimeConfig must be an object", _show(config, "runtimeConfig"))
    ips = (runtime or {}).get("ips")
    if ips is not None:
        if not isinstance(ips, list):
            raise CniError(INVALID_CONFIG, 'runtimeConfig.ips must be a list of addresses, e.g. ["10.0.0.5/24"]')
        if len(ips) > 1:
            raise CniError(
                INVALID_CONFIG, f"runtimeConfig.ips: Tenet gives one IPv4 address per attachment, {len(ips)} asked"
            )
        if ips:
            problem = _ipv4_problem(ips[0])
            if problem:
                raise CniError(INVALID_CONFIG, f"runtimeConfig.ips[0]: {problem}", _brief(ips[0]))
            from_config = ips[0].partition("/")[0]
    from_args = cni_args(env).get("IP")
    if from_args is not None:
        problem = _ipv4_problem(from_args)
        if problem:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS IP: {problem}", repr(from_args))
        from_args = from_args.partition("/")[0]
        if from_config is not None and from_config != from_args:
            raise CniError(
                INVALID_ENVIRONMENT, f"CNI_ARGS IP: {from_args} disagrees with runtimeConfig.ips[0] {from_config}"
            )
    return from_config or from_args


def _ipv4_problem(value: object) -> str | None:
    """Why `value` is not an IPv4 address in dotted quad ("10.0.0.5", or with a prefix "10.0.0.5/24")."""
    if not isinstance(value, str):
        return f"want an IPv4 address as a string, got {type(value).__name__}"
    address, slash, prefix = value.partition("/")
    if ":" in address:
        return f"{value} is IPv6; Tenet gives one IPv4 address per attachment"
    octets = address.split(".")
    if len(octets) != 4 or not all(o.isdigit() and o.isascii() and len(o) <= 3 and int(o) <= 255 for o in octets):
        return f"{value!r} is not an IPv4 address (want a dotted quad such as 10.0.0.5)"
    if any(len(o) > 1 and o[0] == "0" for o in octets):
        return f"{value!r} has an octet with a leading zero (ambiguous: octal or decimal)"
    if slash and not (prefix.isdigit() and prefix.isascii() and int(prefix) <= 32):
        return f"{value!r} has an invalid prefix length (want 0 to 32)"
    return None


def ifname_problem(name: str) -> str | None:
    """What makes `name` an invalid Linux interface name, or None if the kernel takes it.

    The kernel's dev_valid_name (net/core/dev.c): 1 to IFNAMSIZ-1 = 15 bytes, not "." or "..", and no byte
    that is '/', ':' or isspace() in the kernel's ctype, which counts 0xA0 (so "à", UTF-8 C3 A0, is refused).
    Bytes, not characters: nine "é" are 18 bytes.
    """
    if not name:
        return "it is empty"
    try:
        raw = name.encode("utf-8")
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as surrogates; results are UTF-8 JSON
        return "it is not valid UTF-8"
    if len(raw) > IFNAMSIZ - 1:
        return f"it is {len(raw)} bytes, the limit is {IFNAMSIZ - 1}"
    if name in (".", ".."):
        return f"{name!r} is reserved"
    bad = sorted({chr(byte) for byte in raw if byte in _IFNAME_BAD_BYTES})
    if bad:
        return f"it contains {', '.join(repr(c) for c in bad)} ('/', ':' and whitespace are not allowed)"
    return None


def valid_name(name: str) -> bool:
    """The spec's rule for container ids and network names: [A-Za-z0-9][A-Za-z0-9_.-]* (ASCII)."""
    return bool(name) and name[0] not in "_.-" and all(c in _NAME_CHARS for c in name)


def _show(config: dict[str, Any], key: str) -> str:
    return f"{key} = {_brief(config[key])}" if key in config else f"{key} is missing"


def _brief(value: object) -> str:
    try:
        text = repr(value)
    except RecursionError:  # nested nearly as deep as json.loads allows
        return "(nested too deep to show)"
    return text if len(text) <= 200 else text[:197] + "..."


def _name(config: dict[str, Any]) -> str:
    name = config.get("name")
    if not isinstance(name, str) or not valid_name(name):
        raise CniError(
            INVALID_CONFIG,
            "name must be a network name: letters, digits, _ . - and start alphanumeric",
            _show(config, "name"),
        )
    return name


def _optional_str(config: dict[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise CniError(INVALID_CONFIG, f"{key} must be a non-empty string", _show(config, key))
    return value


def _namespaces(config: dict[str, Any]) -> dict[str, tuple[str, str]]:
    value = config.get("namespaces")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CniError(
            INVALID_CONFIG, 'namespaces must map Kubernetes namespaces to "TENANT/NETWORK"', _show(config, "namespaces")
        )
    mapping = {}
    for namespace, target in value.items():
        tenant, slash, network = target.partition("/") if isinstance(target, str) else ("", "", "")
        if not (slash and tenant and network) or "/" in network:
            raise CniError(INVALID_CONFIG, f'namespaces["{namespace}"] must be "TENANT/NETWORK"', _brief(target))
        mapping[namespace] = (tenant, network)
    return mapping


def _timeout(config: dict[str, Any]) -> float:
    value = config.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise CniError(
            INVALID_CONFIG, "timeout must be a number of seconds, above 0 and at most 3600", _show(config, "timeout")
        )
    return float(value)


def _prev_result(config: dict[str, Any]) -> dict[str, Any] | None:
    value = config.get("prevResult")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CniError(INVALID_CONFIG, "prevResult must be an object (a CNI result)", _show(config, "prevResult"))
    for key in ("interfaces", "ips", "routes"):
        items = value.get(key, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            raise CniError(INVALID_CONFIG, f"prevResult.{key} must be a list of objects")
    if not isinstance(value.get("dns", {}), dict):
        raise CniError(INVALID_CONFIG, "prevResult.dns must be an object")
    return value
