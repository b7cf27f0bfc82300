"""`python -m lab.apiserver`: run the stand-in Kubernetes API server until interrupted."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from etcd3gw.exceptions import Etcd3Exception

from lab.apiserver.server import StandInApiServer


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m lab.apiserver`; `--help` prints it."""
    parser = argparse.ArgumentParser(
        prog="python -m lab.apiserver",
        description="A stand-in Kubernetes API server over etcd, for tests and the lab: kubectl and the "
        "official Python client work against it (see the lab.apiserver docstring for what it leaves out). "
        "It serves HTTPS with a self-signed certificate, which the kubeconfig it writes names as the "
        "certificate authority, and wants the bearer token on every request. A kubeconfig stays valid across a "
        "restart only when the restart is given the same --port, --token and --cert-dir: without --token each "
        "start picks a new random token, and without --cert-dir a new certificate, and clients holding the old "
        "kubeconfig get 401 or a TLS error until they load the new one. Objects live in etcd and survive a "
        "restart either way.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port to listen on (default 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--etcd", required=True, metavar="URL", help="etcd client URL, e.g. http://127.0.0.1:2379")
    parser.add_argument("--prefix", default="/tenet-apiserver", help="etcd key prefix (default /tenet-apiserver)")
    parser.add_argument(
        "--token",
        help="bearer token clients must send (default: a new random one at each start, which invalidates the "
        "kubeconfigs written before; give the same token to keep them valid across a restart). A token that "
        "begins with '-' must be given as --token=TOKEN.",
    )
    parser.add_argument(
        "--kubeconfig-out",
        metavar="PATH",
        help="write a kubeconfig with the server URL, token and certificate here (mode 0600), replacing the file",
    )
    parser.add_argument(
        "--cert-dir",
        metavar="PATH",
        help="keep the self-signed serving certificate here, made when missing, so a restart (with the same "
        "--port and --token) keeps kubeconfigs valid (default: a temporary directory removed on exit)",
    )
    parser.add_argument(
        "--bookmark-interval", type=float, default=60.0, help="seconds between watch bookmarks (default 60)"
    )
    parser.add_argument(
        "--namespace-cleanup",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds a deleted namespace stays Terminating before it and its contents go (default 1)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port: {args.port} is outside 0..65535")
    if args.namespace_cleanup < 0:
        parser.error(f"--namespace-cleanup: want 0 or more seconds, got {args.namespace_cleanup:g}")
    if args.token is not None and not args.token.strip():
        parser.error("--token: empty; give a token, or leave --token out for a random one")
    if args.bookmark_interval <= 0:
        parser.error(f"--bookmark-interval: want a positive number of seconds, got {args.bookmark_interval:g}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = StandInApiServer(
            args.etcd,
            host=args.host,
            port=args.port,
            token=args.token,
            prefix=args.prefix,
            bookmark_interval=args.bookmark_interval,
            cert_dir=args.cert_dir,
            namespace_cleanup=args.namespace_cleanup,
        )
    except ValueError as error:
        parser.error(f"--etcd: {error}")
    except RuntimeError as error:  # openssl could not make the certificate
        print(f"python -m lab.apiserver: {error}", file=sys.stderr)
        return 1
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    try:
        server.start()
    except Etcd3Exception as error:
        detail = (error.detail_text or type(error).__name__).strip()
        print(f"python -m lab.apiserver: --etcd: cannot use etcd at {args.etcd}: {detail}", file=sys.stderr)
        return 1
    except OSError as error:  # the port is taken, or the address is not ours
        print(f"python -m lab.apiserver: cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    try:
        if args.kubeconfig_out:
            server.write_kubeconfig(args.kubeconfig_out)
        print(f"serving on {server.url}", flush=True)
        done.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
