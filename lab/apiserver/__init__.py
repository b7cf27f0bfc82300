"""A stand-in Kubernetes API server for tests and the lab (no kube-apiserver can be installed here)."""

from lab.apiserver.server import StandInApiServer

__all__ = ["StandInApiServer"]
