"""tenet-controller: the store, the model, the northbound API and the OpenFlow controller in one process.

Settings come from, in rising precedence: defaults, a config file (YAML or JSON mapping with the same
names), environment variables TENET_<NAME>, and command-line flags.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from controller.pipeline.compile import gc_paused
from controller.store.base import Put, StoreError
from topology.errors import ValidationError

log = logging.getLogger("tenet.controller")
ROUND_KEY = "/tenet/controller/round"


@dataclass
class Settings:
    ofp_host: str = "0.0.0.0"
    ofp_port: int = 6653
    api_host: str = "127.0.0.1"
    api_port: int = 8780
    store: str = "sqlite:///var/lib/tenet/tenet.db"
    token_file: str = "/etc/tenet/tokens.json"
    log_level: str = "info"


class StartupError(RuntimeError):
    """Something the operator must fix before the controller can start: printed as one line."""


def load_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="tenet-controller", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON file with any of the settings below")
    for item in fields(Settings):
        flag = "--" + item.name.replace("_", "-")
        parser.add_argument(
            flag,
            type=type(item.default),
            metavar=item.name.upper(),
            help=f"(env TENET_{item.name.upper()}; default {item.default})",
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
        return Settings(**{k: type(getattr(Settings, k))(v) for k, v in values.items()})
    except ValueError as error:
        raise StartupError(f"bad setting: {error}") from None


def check_port_free(host: str, port: int, what: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StartupError(f"{what} address {host}:{port} is not available: {error.strerror}") from None


def next_round(store: object) -> int:
    """Each start works in a new cookie round (1..255), so its flows replace the last start's in place."""
    record = store.get(ROUND_KEY)
    previous = record.value["round"] if record else 0
    round_ = previous % 255 + 1
    store.commit([Put(ROUND_KEY, {"round": round_})])
    return round_


def run(settings: Settings) -> None:
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager

    from controller.api import load_tokens, make_app, serve
    from controller.app.osken_app import Runtime
    from controller.service import Service
    from controller.store.open import open_store

    check_port_free(settings.ofp_host, settings.ofp_port, "OpenFlow")
    check_port_free(settings.api_host, settings.api_port, "API")
    try:
        tokens = load_tokens(settings.token_file)
    except (OSError, ValueError) as error:
        raise StartupError(f"token file {settings.token_file}: {error}") from None
    try:
        store = open_store(settings.store)
        service = Service(store)
        with gc_paused():
            service.restore()
        # The compiled state lives as long as the process: keep the collector from rescanning it.
        gc.collect()
        gc.freeze()
        round_ = next_round(store)
    except StoreError as error:
        raise StartupError(str(error)) from None
    except ValidationError as error:  # e.g. networks stored before a tenant's networks shared one MTU
        raise StartupError(f"the stored model breaks a rule: {error} (fix or delete that record)") from None

    Runtime.service, Runtime.round_ = service, round_
    cfg.CONF(args=[], project="os_ken")
    cfg.CONF.ofp_listen_host = settings.ofp_host
    cfg.CONF.ofp_tcp_listen_port = settings.ofp_port
    manager = AppManager.get_instance()
    manager.load_apps(["controller.app.osken_app"])
    manager.instantiate_apps(**manager.create_contexts())
    Runtime.ready.wait()
    app = Runtime.app
    api = make_app(service, tokens, switch_status=app.status, readiness=app.endpoint_ready, verify=app.verify)
    server = serve(api, settings.api_host, settings.api_port)
    threading.Thread(target=server.serve_forever, name="api", daemon=True).start()
    log.info(
        "round %d; OpenFlow on %s:%d, API on %s:%d, store %s",
        round_,
        settings.ofp_host,
        settings.ofp_port,
        settings.api_host,
        settings.api_port,
        settings.store,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    log.info("stopping")
    server.shutdown()
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
