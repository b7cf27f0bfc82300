"""The northbound HTTP/JSON API: tenants, networks, QoS, nodes and endpoints, with bearer-token auth."""

from controller.api.app import ApiServer, ServeError, make_app, serve
from controller.api.auth import Principal, TokenFileError, Tokens, load_tokens

__all__ = ["ApiServer", "Principal", "ServeError", "TokenFileError", "Tokens", "load_tokens", "make_app", "serve"]
