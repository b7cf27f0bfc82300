"""Small statistics shared by the benchmarks."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def median_of_rounds(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from N paired rounds (each a benchmark's dict, both figures and their ratio measured in the
    same round): every number is the median of its N values (a ratio too: the median of the rounds' own
    ratios, not the ratio of the medians), anything else is the first round's; `rounds` is N and `per_round`
    lists each round's ratios (keys with "ratio" in their name)."""
    first = rounds[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        values = [r[key] for r in rounds if key in r]
        if isinstance(value, dict) and all(isinstance(v, dict) for v in values):
            merged[key] = {k: v for k, v in median_of_rounds(values).items() if k not in ("rounds", "per_round")}
        elif isinstance(value, bool) or not isinstance(value, int | float):
            merged[key] = value
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            middle = statistics.median(values)
            if all(isinstance(v, int) for v in values) and float(middle).is_integer():
                middle = int(middle)  # counts stay counts
            merged[key] = round(middle, 3) if isinstance(middle, float) else middle
        else:
            merged[key] = value
    merged["rounds"] = len(rounds)
    ratios = [key for key, value in first.items() if key.endswith("ratio") and not isinstance(value, bool)]
    merged["per_round"] = {key: [r.get(key) for r in rounds] for key in ratios}
    return merged
