"""The controller's liveness and readiness probe: GET /v1/health with a token from the controller's token file.

    python3 /opt/tenet/health.py [--url http://127.0.0.1:8780/v1/health] [--token-file /etc/tenet/tokens.json]

The API answers /v1/health only to a valid bearer token, and a kubelet httpGet probe cannot read one from a
Secret, so the controller's pod probes with this script (an exec probe): it reads the first admin token of the
token file (README "The controller": {"admin": [...], "tenants": {...}, "nodes": {...}}) and exits 0 when the
API answers 200 within --timeout seconds, else 1 with the reason on stderr. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence


def admin_token(path: str) -> str:
    """The first admin token of a token file; raises ValueError naming what is wrong with the file."""
    try:
        with open(path) as handle:
            tokens = json.load(handle)
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON: {error}") from None
    admin = tokens.get("admin") if isinstance(tokens, dict) else None
    if not isinstance(admin, list) or not admin or not isinstance(admin[0], str):
        raise ValueError(f'{path}: admin: want a list of at least one token, {{"admin": ["..."]}}')
    return admin[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="health.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8780/v1/health")
    parser.add_argument("--token-file", default="/etc/tenet/tokens.json")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        token = admin_token(args.token_file)
        request = urllib.request.Request(args.url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=args.timeout) as answer:
            status = answer.status
    except ValueError as error:
        print(f"health: {error}", file=sys.stderr)
        return 1
    except urllib.error.HTTPError as error:
        print(f"health: {args.url} answered {error.code} {error.reason}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as error:
        print(f"health: {args.url}: {getattr(error, 'reason', error)}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"health: {args.url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
