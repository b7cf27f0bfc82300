"""JSON for the plugin through CPython's C accelerator `_json`, without importing the `json` package.

`import json` costs ~14 ms here, nearly all of it `re` (json.decoder compiles regular expressions at import),
which is most of a plugin run that the runtime waits for once per pod. The C scanner and encoder behind
`json.loads`/`json.dumps` do the same work without `re`; this wraps them. Only error paths import more:
the C scanner raises `json.JSONDecodeError`, importing `json.decoder` then.
"""

from __future__ import annotations

import _json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

_WHITESPACE = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Decoding:
    """The attributes `_json.make_scanner` reads, as `json.JSONDecoder()` sets them by default."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: ClassVar[dict] = {}


_scan_once = _json.make_scanner(_Decoding())  # type: ignore[arg-type]  # the C scanner reads these attributes


def loads(data: str | bytes | bytearray) -> Any:
    """Like `json.loads` for a UTF-8 document: ValueError (or RecursionError) when it is not valid JSON."""
    text = bytes(data).decode("utf-8") if isinstance(data, bytes | bytearray) else data
    if text.startswith("\ufeff"):
        raise ValueError("Unexpected UTF-8 BOM")
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan_once(text, start)
    except RecursionError:
        raise
    except Exception:  # StopIteration, or the scanner's own error (it cannot always raise it alone)
        import json  # the slow path, for malformed documents only: json says exactly what is wrong

        return json.loads(text)
    finally:
        _Decoding.memo.clear()
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"Extra data: char {end}")
    return value


def _unserializable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = _json.make_encoder(None, _unserializable, _json.encode_basestring_ascii, None, ": ", ", ", False, False, True)


def dumps(value: Any) -> str:
    """Like `json.dumps(value)` (ASCII, compact separators as json's defaults)."""
    return "".join(_encode(value, 0))
