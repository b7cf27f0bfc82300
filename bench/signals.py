"""Signal handling the benchmarks share: a TERM or INT unwinds the stack, so every clean-up runs."""

from __future__ import annotations

import signal


def clean_up_on_signals() -> None:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so `finally` blocks and ExitStacks remove the OVS nodes,
    namespaces and processes a benchmark made. A second signal is ignored: it must not cut the clean-up short."""

    def interrupted(signum: int, _frame: object) -> None:
        for ignored in (signal.SIGINT, signal.SIGTERM):
            signal.signal(ignored, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
