"""A JSON parser for python-ovs's JSON-RPC streams that leaves the parsing to the standard library's C decoder.

python-ovs (the `ovs` package ovsdbapp runs on) parses what ovsdb-server sends with a lexer written in
Python, one function call per character, unless its C extension `ovs._json` is there; the `ovs` package
from PyPI has none (it needs libopenvswitch's headers at build time, which Debian 12 does not ship). In the
agent that lexer was a fifth of all its CPU during pod ADDs (`py-spy`, `ovs/json.py` `Parser.feed` under
`ovs.jsonrpc.Connection.recv`, the OVSDB IDL thread). This is our own code because it is a measured hot
path; all it does is find where each top-level value of the stream ends, which the C decoder cannot do on a
stream that arrives in pieces, and hand the value's text to `json.JSONDecoder.raw_decode`.

How: a value that is whole in the piece it starts in (most messages) is decoded at once, and the rest of
the piece left for the next value. Otherwise each piece is scanned once, with regular expressions (C): a
linear match up to any string the piece ends inside, complete strings cut out, the brackets that are left
counted; of a string left open only its state is carried to the next piece (open, or open after a
backslash), never its text. The value's text is decoded once, when its outermost bracket closes. So a
message that comes in k pieces costs k scans of its new text and one decode, never a decode per piece.

`install()` puts `Parser` in place of `ovs.json.Parser`, which `ovs.jsonrpc.Connection.recv` makes one of
per message. A top-level value that is not an object or an array, and `check_trailer=True` (`ovs.json.
from_string`, `from_stream`) are handed to python-ovs's own parser, unchanged. One difference remains: the
C decoder takes a string with an escaped NUL (\\u0000), which python-ovs refuses; OVSDB forbids NUL in
strings, so ovsdb-server sends none. Input that is not JSON is reported once its brackets balance, not at
the first wrong character as python-ovs does: after an unbalanced `{` from a peer, all it sends later is
taken as part of that one value (ovsdb-server's output is well-formed).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate, islice
from typing import Any

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # a whole JSON string, escapes and all
_CLOSED = re.compile(r'(?:[^"]+|"[^"\\]*(?:\\.[^"\\]*)*")*', re.DOTALL)  # up to a string left open
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"{": 1, "[": 1, "}": -1, "]": -1}
_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder()


def _original() -> Any:
    import ovs.json

    return ovs.json.Parser


_ORIGINAL: Any = _original()


def _python_ovs(check_trailer: bool = False) -> Any:
    """python-ovs's own parser. Not `_ORIGINAL()`: its __new__ and methods look `Parser` up in ovs.json's
    globals, which is this class once installed (hence also the subclassing: `Parser._Parser__lex_start`)."""
    parser = object.__new__(_ORIGINAL)
    _ORIGINAL.__init__(parser, check_trailer)
    return parser


class Parser(_ORIGINAL):
    """One top-level JSON value from a stream fed in pieces; the interface of python-ovs's `ovs.json.Parser`.

    `feed(text)` returns how many characters of `text` it took (fewer than all once the value is complete:
    the rest begins the next value); `is_done()` says whether the value is complete or an error was found;
    `finish()` returns the value, or a string describing the error (python-ovs's convention).
    """

    def __new__(cls, check_trailer: bool = False) -> Any:
        if check_trailer:  # a whole document (from_string, from_stream): python-ovs's own parser, unchanged
            return _python_ovs(check_trailer=True)
        return object.__new__(cls)

    def __init__(self, check_trailer: bool = False) -> None:
        self._pieces: list[str] = []  # the value's text so far, the piece being fed excluded
        self._length = 0  # characters in _pieces
        self._tail = ""  # the state of a string the last piece ended inside: "", '"' or '"\\' (after a backslash)
        self._depth = 0  # brackets open at the end of what was scanned
        self._started = False
        self._blank = ""  # whitespace before the value, kept for python-ovs's parser (its error positions)
        self._fallback: Any = None  # python-ovs's parser, for a top-level scalar
        self._value: Any = None
        self._error: str | None = None
        self.done = False

    def feed(self, text: str) -> int:
        """Take `text`, the next piece of the stream; how many of its characters belong to this value."""
        if self._fallback is not None:
            return int(self._fallback.feed(text))
        if self.done:
            return 0
        skipped = 0
        if not self._started:
            skipped = len(text) - len(text.lstrip(_WHITESPACE))
            if skipped == len(text):
                self._blank += text
                return skipped
            if text[skipped] not in "{[":  # a scalar at the top: python-ovs's parser knows its rules
                self._fallback = _python_ovs()
                self._fallback.feed(self._blank)
                return int(self._fallback.feed(text))
            self._started = True
            text = text[skipped:]
            try:  # the whole value in this piece (most messages): decoded without scanning the rest of the piece
                self._value, end = _DECODER.raw_decode(text)
            except json.JSONDecodeError:
                pass  # incomplete (or malformed): scanned below
            else:
                self.done = True
                return skipped + end
        region = self._tail + text  # _tail: "" or the state of a string left open: '"' or '"\\'
        match = _CLOSED.match(region)  # one linear pass: everything up to a string left open (always matches)
        closed = match.end() if match is not None else 0
        scanned, tail = region[:closed], region[closed:]
        if tail:  # only the lexer state is carried over, never the string's text
            tail = '"\\' if (len(tail) - len(tail.rstrip("\\"))) % 2 else '"'
        brackets = _NOT_BRACKET.sub("", _STRING.sub("", scanned))
        depths = list(accumulate(map(_STEP.__getitem__, brackets), initial=self._depth))
        if min(islice(depths, 1, None), default=1) > 0:  # the value goes on in the next piece
            self._pieces.append(text)
            self._length += len(text)
            self._tail, self._depth = tail, depths[-1]
            return skipped + len(text)
        whole = "".join(self._pieces) + text
        self.done = True
        self._pieces = []
        try:
            self._value, end = _DECODER.raw_decode(whole)
        except json.JSONDecodeError as error:
            # python-ovs's form: lines and columns count from 0
            self._error = f"line {error.lineno - 1}, column {error.colno - 1}, byte {error.pos}: {error.msg}"
            return skipped + len(text)
        return skipped + end - self._length

    def is_done(self) -> bool:
        """Whether the value is complete (or an error ended it)."""
        if self._fallback is not None:
            return bool(self._fallback.is_done())
        return self.done

    def finish(self) -> Any:
        """The value, or a string saying what is wrong with the input (also for input that ended too soon)."""
        if self._fallback is not None:
            return self._fallback.finish()
        if self._error is not None:
            return self._error
        if not self.done:
            return "unexpected end of input" if self._started else "empty input stream"
        return self._value


def install() -> None:
    """Make python-ovs parse JSON-RPC streams with `Parser` (idempotent)."""
    import ovs.json

    if ovs.json.PARSER == ovs.json.PARSER_PY and ovs.json.Parser is _ORIGINAL:
        ovs.json.Parser = Parser
