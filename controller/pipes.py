"""Command-line output into a pipe whose reader may go away (`tenet-lab status | head`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def until_the_reader_goes(command: Callable[[], int]) -> int:
    """Run `command` (a CLI's body, returning its exit status; `--help` exits through SystemExit) and flush
    stdout. If stdout's reader has gone (EPIPE), stop quietly with status 1, with no BrokenPipeError
    traceback, neither now nor when Python flushes stdout at exit (stdout then points at /dev/null)."""
    try:
        try:
            status = command()
        except SystemExit:
            sys.stdout.flush()
            raise
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
