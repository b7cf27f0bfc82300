"""Validation errors that say which field is wrong and why."""

from __future__ import annotations


class ValidationError(ValueError):
    """A bad value in the model, with the path of the offending field.

    `path` reads like the YAML it came from (`tenants[0].networks[1].vlan`) or like the object it names
    (`network "blue/web"`); `conflict` marks errors about something already in use (a VNI, an IP), which
    the API reports as 409 rather than 400.
    """

    def __init__(self, path: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message
        self.conflict = conflict


class PoolExhausted(ValidationError):
    """No free address is left in a network's subnet."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message, conflict=True)
