"""The log records another thread writes, caught for a test to wait for and read."""

from __future__ import annotations

import logging
import threading
from types import TracebackType


class Records(logging.Handler):
    """Within `with Records("controller.api.server") as records:`, that logger's records at `level` and above
    are kept in `records.caught` (the logger's level is set to `level` meanwhile, and put back after);
    `records.wait(s)` is True once one has come, False after s seconds without."""

    def __init__(self, name: str, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.logger = logging.getLogger(name)
        self.caught: list[logging.LogRecord] = []
        self._came = threading.Event()
        self._level = self.logger.level

    def emit(self, record: logging.LogRecord) -> None:
        self.caught.append(record)
        self._came.set()

    def wait(self, timeout: float) -> bool:
        return self._came.wait(timeout)

    def __enter__(self) -> Records:
        self._level = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(self.level)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)
