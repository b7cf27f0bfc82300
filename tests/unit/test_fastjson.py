"""The plugin's JSON (CPython's C scanner and encoder, without `re`) says exactly what `json` says."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cni import fastjson

ROOT = Path(__file__).resolve().parents[2]

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def outcome(parse, data):
    try:
        return ("ok", parse(data))
    except (ValueError, RecursionError) as error:
        return ("error", type(error).__mro__[-3].__name__)  # ValueError for JSONDecodeError and UnicodeDecodeError


@settings(max_examples=300, deadline=None)
@given(values)
def test_documents_read_back_the_same(value: object) -> None:
    text = json.dumps(value)
    assert fastjson.loads(text) == json.loads(text) == fastjson.loads(text.encode())
    assert fastjson.dumps(value) == text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(str.encode))
def test_any_bytes_succeed_or_fail_as_json_does(data: bytes) -> None:
    mine, theirs = outcome(fastjson.loads, data), outcome(lambda d: json.loads(d.decode("utf-8")), data)
    if mine[0] == "ok" and isinstance(mine[1], float) and math.isnan(mine[1]):
        assert math.isnan(theirs[1])
    else:
        assert mine == theirs


def test_malformed_input_is_a_value_error_naming_the_problem() -> None:
    for bad in (b"{", b"", b"[1,]", b'{"a": 1} x', "\ufeff{}".encode()):
        try:
            fastjson.loads(bad)
        except ValueError as error:
            assert str(error)
        else:
            raise AssertionError(f"{bad!r} parsed")


def test_it_does_not_import_re() -> None:
    probe = "import sys; from cni import fastjson; fastjson.loads(b'{\"a\": [1]}'); print('re' in sys.modules)"
    done = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", f"import sys; sys.path.insert(0, '.'); {probe}"],
                          capture_output=True, text=True, check=True, cwd=ROOT)  # fmt: skip
    assert done.stdout.strip() == "False"
