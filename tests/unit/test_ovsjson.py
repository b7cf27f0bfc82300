"""agent.ovsjson reads a JSON-RPC stream exactly as python-ovs's own parser does, in whatever pieces it comes."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from typing import Any

import ovs.json
import ovs.jsonrpc
import ovs.poller
import ovs.stream
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import ovsjson

ORIGINAL = ovsjson._ORIGINAL  # python-ovs's parser class, whatever install() did
# A parser of python-ovs's own: not ORIGINAL(), which looks `Parser` up in ovs.json, ours once installed
# (another test's agent may have installed it already).
theirs_parser = ovsjson._python_ovs

text = st.text(alphabet=st.sampled_from('ab"\\/\n\t{}[],: é\u2603\U0001f600'), max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4))
documents = st.lists(values, max_size=4) | st.dictionaries(text, values, max_size=4)


def read_stream(parser: Any, stream: str, pieces: list[int]) -> tuple[list[Any], Any]:
    """What `ovs.jsonrpc.Connection.recv` does with its input: feed what it has, keep what was not taken,
    a new parser for each value. `pieces`: the sizes the stream arrives in (cycled). Returns the values and
    the parser of a value left incomplete (None if none)."""
    values: list[Any] = []
    current, pending, at, turn = None, "", 0, 0
    while at < len(stream):
        size = pieces[turn % len(pieces)]
        pending, at, turn = pending + stream[at : at + size], at + size, turn + 1
        while pending:
            if current is None:
                current = parser()
            took = current.feed(pending)
            pending = pending[took:]
            if current.is_done():
                values.append(current.finish())
                current = None
            elif pending:
                raise AssertionError(f"the parser took {took} characters and left {pending!r} unread")
    return values, current


@settings(max_examples=300, deadline=None)
@given(
    st.lists(documents, min_size=1, max_size=4),
    st.lists(st.integers(1, 40), min_size=1, max_size=6),
    st.booleans(),
    st.sampled_from(["", " ", "\n"]),
)
def test_a_stream_in_any_pieces_gives_the_values_python_ovs_gives(
    documents: list[Any], pieces: list[int], ascii_only: bool, separator: str
) -> None:
    stream = "".join(json.dumps(document, ensure_ascii=ascii_only) + separator for document in documents)
    ours, left = read_stream(ovsjson.Parser, stream, pieces)
    theirs, _ = read_stream(theirs_parser, stream, pieces)
    assert ours == theirs == documents
    assert left is None or (not left.is_done() and left.finish() == "empty input stream")  # after a separator


def test_a_value_split_at_every_place_is_read_whole() -> None:
    document = {"s": 'a"b\\c\\"d\\\\', "l": [[], {}, [{"x": "}]"}]], "u": "é\u2603", "n": -12, "f": 1.5}
    stream = json.dumps(document) + json.dumps(["next"])
    for cut in range(1, len(stream)):
        parser = ovsjson.Parser()
        took = parser.feed(stream[:cut])
        assert (took == cut and not parser.is_done()) or cut >= len(json.dumps(document))
        if parser.is_done():
            continue
        took = parser.feed(stream[cut:])
        assert parser.is_done() and parser.finish() == document
        assert stream[cut:][took:] == json.dumps(["next"])


def test_a_string_that_ends_a_piece_on_an_escape_is_kept_open() -> None:
    parser = ovsjson.Parser()
    assert parser.feed('["a\\') == 4 and not parser.is_done()
    assert parser.feed('"]"]') == 4 and parser.is_done()
    assert parser.finish() == ['a"]']


def test_malformed_input_ends_with_an_error_string_as_python_ovs_gives() -> None:
    for bad in ('{"a": tru}', '{"a" 1}', "[1,]", '{"a": "x\x01"}'):
        ours, theirs = ovsjson.Parser(), theirs_parser()
        ours.feed(bad)
        theirs.feed(bad)
        assert ours.is_done() and theirs.is_done()
        assert isinstance(ours.finish(), str) and isinstance(theirs.finish(), str), bad
    parser = ovsjson.Parser()
    parser.feed('{"a": [1, 2')
    assert not parser.is_done() and parser.finish() == "unexpected end of input"
    parser = ovsjson.Parser()
    assert parser.feed(" \n") == 2 and parser.finish() == "empty input stream"


def test_scalars_and_whole_documents_go_to_python_ovs() -> None:
    for stream in ("  42 ", "true", '"text"'):
        ours, theirs = ovsjson.Parser(), theirs_parser()
        assert ours.feed(stream) == theirs.feed(stream)
        assert ours.is_done() == theirs.is_done()
        assert ours.finish() == theirs.finish()  # JSON-RPC takes objects and arrays only: an error
    assert type(ovsjson.Parser(check_trailer=True)) is ORIGINAL


@pytest.fixture
def installed() -> Iterator[None]:
    before = ovs.json.Parser
    ovs.json.Parser = ORIGINAL
    try:
        ovsjson.install()
        yield
    finally:
        ovs.json.Parser = before


def test_a_string_left_open_carries_only_its_state_to_the_next_piece() -> None:
    # Like the schema column of _Server.Database: a long string full of escaped quotes, in 4096-character
    # pieces. Only the string's state is kept between pieces, so no piece scans the string's text again.
    schema = json.dumps({"tables": {f"T{i}": {"columns": {"name": {"type": "string"}}} for i in range(400)}})
    message = json.dumps({"id": 1, "result": [{"schema": schema, "name": "Open_vSwitch"}], "error": None})
    parser, at, tails = ovsjson.Parser(), 0, set()
    while not parser.is_done():
        at += parser.feed(message[at : at + 4096])
        tails.add(parser._tail)
    assert at == len(message) and parser.finish() == json.loads(message)
    assert tails <= {"", '"', '"\\'} and len(message) > 5 * 4096


def test_many_messages_in_one_piece_are_each_decoded_without_scanning_the_rest() -> None:
    messages: list[dict[str, object]] = [{"id": i, "result": [{}], "error": None} for i in range(100)]
    stream = "".join(json.dumps(message) for message in messages)
    assert read_stream(ovsjson.Parser, stream, [4096]) == (messages, None)
    parser = ovsjson.Parser()
    took = parser.feed(stream)
    assert parser.is_done() and took == len(json.dumps(messages[0])) and not parser._pieces


def test_python_ovs_parses_whole_documents_and_scalars_once_installed(installed: None) -> None:
    assert ovs.json.from_string('{"a": [1, "b"]}') == {"a": [1, "b"]}
    assert ovs.json.from_string("[1] 2").startswith("line 0")  # trailing garbage, python-ovs's own error
    parser = ovs.json.Parser()
    parser.feed("0 ")
    assert parser.is_done() and isinstance(parser.finish(), str)  # JSON-RPC takes no scalar: an error


def test_python_ovs_json_rpc_reads_messages_sent_in_pieces(installed: None) -> None:
    assert ovs.json.Parser is ovsjson.Parser
    ovsjson.install()  # again: no change
    assert ovs.json.Parser is ovsjson.Parser
    messages = [
        {"id": 0, "method": "echo", "params": ['a"}', {"b": [1, 2.5, None, True]}]},
        {"id": None, "method": "update3", "params": [["m", "Open_vSwitch"], "0", {"Port": {"u": {"insert": {}}}}]},
        {"id": 7, "result": [{"uuid": ["uuid", "e0c1"]}], "error": None},
    ]
    wire = "".join(json.dumps(message) for message in messages).encode()
    ours, theirs = socket.socketpair()

    def send_in_pieces() -> None:
        for i in range(0, len(wire), 5):
            theirs.sendall(wire[i : i + 5])

    sender = threading.Thread(target=send_in_pieces)
    sender.start()
    stream = ovs.stream.Stream(ours, "socketpair", 0)
    connection = ovs.jsonrpc.Connection(stream)
    try:
        got: list[object] = []
        while len(got) < len(messages):
            error, message = connection.recv()
            if error == 0:
                got.append(message.to_json())
                continue
            assert error == 11, os.strerror(error)  # EAGAIN: wait for more
            poller = ovs.poller.Poller()
            connection.recv_wait(poller)
            poller.block()
        assert got == [ovs.jsonrpc.Message.from_json(message).to_json() for message in messages]
    finally:
        sender.join()
        connection.close()
        theirs.close()
