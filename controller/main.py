"""tenet-controller: the store, the model, the northbound API and the OpenFlow controller in one process.

Settings come from, in rising precedence: defaults, a config file (YAML or JSON mapping with the same
names), environment variables TENET_<NAME>, and command-line flags.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from controller.pipeline.compile import gc_paused, settle_collector
from controller.policy import Policy
from controller.store.base import Put, Store, StoreError
from topology.errors import ValidationError
from topology.gateway import GatewayConfig

if TYPE_CHECKING:
    from controller.api import Limits, TlsFiles
    from controller.service import Service

log = logging.getLogger("tenet.controller")
ROUND_KEY = "/tenet/controller/round"


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass
class Settings:
    ofp_host: str = "0.0.0.0"
    ofp_port: int = 6653
    api_host: str = "127.0.0.1"
    api_port: int = 8780
    store: str = "sqlite:///var/lib/tenet/tenet.db"
    token_file: str = "/etc/tenet/tokens.json"
    log_level: str = "info"
    api_threads: int = field(default=16, metadata=_help("API worker threads: requests served at once"))
    api_ready_waits: int = field(
        default=8, metadata=_help("readiness waits (GET .../ready?wait=S) served at once; below api_threads")
    )
    api_timeout: float = field(
        default=10.0, metadata=_help("seconds an API connection may sit idle or take for one read or write")
    )
    api_tls_cert: str = field(default="", metadata=_help("PEM certificate (chain) for HTTPS on the API"))
    api_tls_key: str = field(default="", metadata=_help("PEM private key of api_tls_cert"))
    api_tls_client_ca: str = field(
        default="", metadata=_help("PEM CA: API clients must show a certificate it signed (mutual TLS)")
    )
    ofp_tls_cert: str = field(default="", metadata=_help("PEM certificate for OpenFlow over TLS (ovs-pki controller)"))
    ofp_tls_key: str = field(default="", metadata=_help("PEM private key of ofp_tls_cert"))
    ofp_tls_ca: str = field(
        default="", metadata=_help("PEM CA that signed the switches' certificates (ovs-pki switchca/cacert.pem)")
    )
    vlan_pool: str = "100-199"  # VLAN ids the fabric trunks for tenants: "LOW-HIGH[,LOW-HIGH|,ID]..."
    vni_pool: str = "5000-9999"  # VNIs tenants may use, same syntax
    quota_networks: str = ""  # networks a tenant may hold unless the admin set its own; "": no limit
    quota_endpoints: str = ""  # endpoints a tenant may hold, likewise
    cluster_network: str = field(
        default="", metadata=_help("TENANT/NAME of the network the hosts route (pods, kubelet probes); made at start")
    )
    cluster_subnet: str = field(default="", metadata=_help("the cluster network's subnet, unique in the cluster"))
    transit_subnet: str = field(
        default="100.64.0.0/16",
        metadata=_help("SNAT addresses of networks of other tenants with nat_outgoing (one per network id)"),
    )
    kubernetes: bool = field(
        default=False, metadata=_help("watch the cluster the controller runs in (its service account)")
    )
    kubeconfig: str = field(default="", metadata=_help("watch the Kubernetes cluster of this kubeconfig file"))
    k8s_resync_s: float = field(
        default=300.0, metadata=_help("seconds between full relists of the Kubernetes objects watched")
    )


def load_policy(settings: Settings) -> Policy:
    """The tenants' pools and default quota from the settings; raises StartupError naming the setting."""
    from controller.policy import Quota, SegmentPool
    from topology.errors import ValidationError
    from topology.model import VLAN_RANGE, VNI_RANGE

    try:
        vlan = SegmentPool.parse(settings.vlan_pool, what="vlan_pool", bounds=VLAN_RANGE)
        vni = SegmentPool.parse(settings.vni_pool, what="vni_pool", bounds=VNI_RANGE)
    except ValidationError as error:
        raise StartupError(f"bad setting {error}") from None
    limits: dict[str, int | None] = {}
    for name in ("networks", "endpoints"):
        text = getattr(settings, f"quota_{name}").strip()
        if text and not text.isdigit():
            raise StartupError(f"bad setting quota_{name}: want a non-negative integer or nothing, got {text!r}")
        limits[name] = int(text) if text else None
    return Policy(vlan_pool=vlan, vni_pool=vni, quota=Quota(**limits))


def _typed(default: Any, value: object) -> Any:
    if isinstance(default, bool) and isinstance(value, str):
        if value.lower() not in ("1", "true", "yes", "0", "false", "no", ""):
            raise ValueError(f"want true or false, got {value!r}")
        return value.lower() in ("1", "true", "yes")
    return type(default)(value)


class StartupError(RuntimeError):
    """Something the operator must fix before the controller can start: printed as one line."""


def load_gateway(settings: Settings) -> GatewayConfig | None:
    """The cluster network settings, or None when `cluster_network` is empty; StartupError names the setting."""
    if not settings.cluster_network:
        return None
    tenant, _, name = settings.cluster_network.partition("/")
    if not tenant or not name or "/" in name:
        raise StartupError(f"bad setting cluster_network: want TENANT/NAME, got {settings.cluster_network!r}")
    subnets = {}
    for setting in ("cluster_subnet", "transit_subnet"):
        text = getattr(settings, setting)
        try:
            subnets[setting] = ipaddress.IPv4Network(text)
        except ValueError as error:
            raise StartupError(f"bad setting {setting}: want an IPv4 network like 10.244.0.0/16 ({error})") from None
    if subnets["cluster_subnet"].overlaps(subnets["transit_subnet"]):
        raise StartupError("bad setting transit_subnet: it overlaps cluster_subnet")
    return GatewayConfig(settings.cluster_network, subnets["cluster_subnet"], subnets["transit_subnet"])


def load_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="tenet-controller",
        description=__doc__.split("\n\n")[0],
        epilog="vlan_pool and vni_pool: the segments a tenant token may use, LOW-HIGH[,LOW-HIGH|,ID]... (the "
        "admin token may use any valid one; a network without one gets the pool's lowest free). quota_networks "
        "and quota_endpoints: how many a tenant may hold by default (none: no limit); the admin sets one "
        "tenant's with PUT /v1/tenants/NAME.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file with any of the settings below")
    for item in fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        if item.type in (bool, "bool"):
            parser.add_argument(
                flag, action="store_true", default=None, help=f"{item.metadata['help']} (env TENET_{item.name.upper()})"
            )
            continue
        parser.add_argument(
            flag,
            type=type(item.default),
            metavar=item.name.upper(),
            help=" ".join(
                [item.metadata.get("help", ""), f"(env TENET_{item.name.upper()}; default {item.default or 'none'})"]
            ).strip(),
        )
    args = parser.parse_args(argv)
    values: dict[str, object] = {}
    if args.config:
        try:
            loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise StartupError(f"config {args.config}: {error}") from None
        if not isinstance(loaded, dict):
            raise StartupError(f"config {args.config}: want a mapping of settings")
        unknown = set(loaded) - {f.name for f in fields(Settings)}
        if unknown:
            raise StartupError(f"config {args.config}: unknown settings {', '.join(sorted(unknown))}")
        values.update(loaded)
    for item in fields(Settings):
        env = os.environ.get(f"TENET_{item.name.upper()}")
        if env is not None:
            values[item.name] = env
        if getattr(args, item.name) is not None:
            values[item.name] = getattr(args, item.name)
    try:
        return Settings(**{k: _typed(getattr(Settings, k), v) for k, v in values.items()})
    except ValueError as error:
        raise StartupError(f"bad setting: {error}") from None


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StartupError(f"{what} address {host}:{port} is not available: {error.strerror}") from None


def api_options(settings: Settings) -> tuple[Limits, TlsFiles | None]:
    """The API server's limits and TLS files from the settings; StartupError names a setting that is wrong."""
    from controller.api import Limits, TlsError, TlsFiles

    limits = Limits(threads=settings.api_threads, ready_waits=settings.api_ready_waits, timeout=settings.api_timeout)
    try:
        limits.check()
    except ValueError as error:
        raise StartupError(str(error)) from None
    if not settings.api_tls_cert and not settings.api_tls_key:
        if settings.api_tls_client_ca:
            raise StartupError("api_tls_client_ca needs api_tls_cert and api_tls_key: mutual TLS is TLS first")
        return limits, None
    if not (settings.api_tls_cert and settings.api_tls_key):
        missing = "api_tls_key" if settings.api_tls_cert else "api_tls_cert"
        raise StartupError(f"{missing} is required with {'api_tls_cert' if settings.api_tls_cert else 'api_tls_key'}")
    tls = TlsFiles(settings.api_tls_cert, settings.api_tls_key, settings.api_tls_client_ca or None)
    try:
        tls.context()
    except TlsError as error:
        raise StartupError(str(error)) from None
    return limits, tls


def ofp_tls(settings: Settings) -> bool:
    """Whether OpenFlow runs over TLS: all three of ofp_tls_cert, ofp_tls_key, ofp_tls_ca, or none. The files
    are loaded here once, so a bad one stops the start instead of os-ken's listener thread."""
    given = {name: getattr(settings, name) for name in ("ofp_tls_cert", "ofp_tls_key", "ofp_tls_ca")}
    if not any(given.values()):
        return False
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise StartupError(
            f"{', '.join(missing)} is required for OpenFlow over TLS "
            "(give ofp_tls_cert, ofp_tls_key and ofp_tls_ca together: switches are checked against the CA)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for name, path in given.items():
        if not Path(path).is_file():
            raise StartupError(f"{name}: {path} is not a readable file")
    try:
        context.load_cert_chain(settings.ofp_tls_cert, settings.ofp_tls_key)
    except (ssl.SSLError, OSError) as error:
        raise StartupError(
            f"ofp_tls_cert/ofp_tls_key: cannot use {settings.ofp_tls_cert} with {settings.ofp_tls_key}: {error}"
        ) from None
    try:
        context.load_verify_locations(cafile=settings.ofp_tls_ca)
    except (ssl.SSLError, OSError) as error:
        raise StartupError(f"ofp_tls_ca: cannot use {settings.ofp_tls_ca}: {error}") from None
    return True


def next_round(store: Store) -> int:
    """Each start works in a new cookie round (1..255), so its flows replace the last start's in place."""
    record = store.get(ROUND_KEY)
    previous = record.value["round"] if record else 0
    round_ = previous % 255 + 1
    store.commit([Put(ROUND_KEY, {"round": round_})])
    return round_


def start_kubernetes(settings: Settings, service: Service, app: object = None) -> object | None:
    """The watchers of `controller.k8s` when --kubernetes or --kubeconfig is given, started; else None.
    `app`: the OpenFlow app, whose switches tell when a NetworkPolicy is realized."""
    if not settings.kubernetes and not settings.kubeconfig:
        return None
    from kubernetes.config import ConfigException

    from controller.k8s.cluster import Kubernetes, switches

    try:
        cluster = Kubernetes.connect(
            service,
            kubeconfig=settings.kubeconfig or None,
            in_cluster=settings.kubernetes,
            resync_s=settings.k8s_resync_s,
            # the cluster network's setting, where the controller has it, else its default name
            cluster_network=settings.cluster_network or "default/pods",
            switch_sequence=switches(app) if app is not None else None,
        )
    except (ConfigException, OSError) as error:
        what = "--kubernetes (in-cluster config)" if settings.kubernetes else f"kubeconfig {settings.kubeconfig}"
        raise StartupError(f"{what}: {error}") from None
    return cluster.start()


def run(settings: Settings) -> None:
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    from controller.api import ServeError, load_tokens, make_app, serve
    from controller.app.osken_app import Runtime
    from controller.service import Service
    from controller.store.open import open_store

    check_port_free(settings.ofp_host, settings.ofp_port, "OpenFlow")
    check_port_free(settings.api_host, settings.api_port, "API")
    limits, api_tls = api_options(settings)
    tls = ofp_tls(settings)
    try:
        tokens = load_tokens(settings.token_file)
    except (OSError, ValueError) as error:
        raise StartupError(f"token file {settings.token_file}: {error}") from None
    policy = load_policy(settings)
    gateway = load_gateway(settings)
    try:
        store = open_store(settings.store)
        service = Service(store, policy=policy, gateway=gateway)
        with gc_paused():
            service.restore()
        service.ensure_cluster_network()
        settle_collector()  # the compiled state lives as long as the process
        round_ = next_round(store)
    except StoreError as error:
        raise StartupError(str(error)) from None
    except ValidationError as error:  # e.g. networks stored before a tenant's networks shared one MTU
        raise StartupError(f"the stored model breaks a rule: {error} (fix or delete that record)") from None

    Runtime.service, Runtime.round_ = service, round_
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.ofp_listen_host = settings.ofp_host
    cfg.CONF.ofp_tcp_listen_port = settings.ofp_port
    if tls:  # os-ken then listens with TLS only, on its SSL port, and requires a certificate the CA signed
        cfg.CONF.ofp_ssl_listen_port = settings.ofp_port
        cfg.CONF.ctl_privkey, cfg.CONF.ctl_cert = settings.ofp_tls_key, settings.ofp_tls_cert
        cfg.CONF.ca_certs = settings.ofp_tls_ca
    manager = AppManager.get_instance()
    manager.load_apps(["controller.app.osken_app"])
    manager.instantiate_apps(**manager.create_contexts())
    Runtime.ready.wait()
    app = Runtime.app
    assert app is not None  # set before `ready`
    cluster = start_kubernetes(settings, service, app)
    api = make_app(
        service,
        tokens,
        k8s=cluster,
        switch_status=app.status,
        readiness=app.endpoint_ready,
        ready_waits=limits.ready_waits,
        verify=app.verify,
    )
    try:
        server = serve(api, settings.api_host, settings.api_port, limits=limits, tls=api_tls).start()
    except ServeError as error:
        raise StartupError(str(error)) from None
    log.info(
        "round %d; OpenFlow%s on %s:%d, API on %s, store %s",
        round_,
        " over TLS" if tls else "",
        settings.ofp_host,
        settings.ofp_port,
        server.url,
        settings.store,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    server.stop(timeout=5)  # a readiness wait in progress is not waited for
    store.close()
    # os-ken's server and switch threads do not stop on request. Everything acknowledged is in the store
    # and the switches keep their flows (fail_mode=secure), so leaving at once loses nothing.
    logging.shutdown()
    os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_settings(argv)
        logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        run(settings)
    except StartupError as error:
        print(f"tenet-controller: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
