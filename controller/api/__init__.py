"""The northbound HTTP/JSON API: tenants, networks, QoS, nodes and endpoints, with bearer-token auth."""

from controller.api.app import make_app
from controller.api.auth import Principal, TokenFileError, Tokens, load_tokens
from controller.api.server import ApiServer, Limits, ServeError, TlsError, TlsFiles, serve

__all__ = [
    "ApiServer",
    "Limits",
    "Principal",
    "ServeError",
    "TlsError",
    "TlsFiles",
    "TokenFileError",
    "Tokens",
    "load_tokens",
    "make_app",
    "serve",
]
