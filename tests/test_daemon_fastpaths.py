"""The daemon's fast paths give exactly what the slow ones they replace give: the lean
MQTT 5 decoder vs paho's, the delivery journal vs ``json.dumps``, finding dicts vs
``Finding.to_dict``."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt import _packet
from paho.mqtt.enums import MQTTProtocolVersion

from guard.delivery import DeliveryJournal, _encode_str
from guard.domains.mqtt_client import _decode_qos1_publish, _UserProperties
from guard.findings import Finding
from guard.relay import _finding_dict

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
props_st = st.lists(st.tuples(text, text), max_size=6)


def _publish(topic: bytes, mid: int, props: list[tuple[str, str]], payload: bytes,
             dup: bool = False) -> tuple[int, bytes]:
    header = 0x30 | 0x02 | (0x08 if dup else 0)
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big")
    body += _UserProperties(props).pack() if props else b"\x00"
    return header, body + payload


@settings(max_examples=100, deadline=None)
@given(topic=text, mid=st.integers(1, 0xFFFF), props=props_st, payload=st.binary(max_size=300),
       dup=st.booleans())
def test_qos1_publish_decodes_like_paho(topic: str, mid: int, props: list[tuple[str, str]],
                                        payload: bytes, dup: bool) -> None:
    header, data = _publish(topic.encode(), mid, props, payload, dup)
    got = _decode_qos1_publish(header, data)
    if "\x00" in topic or any("\x00" in k + v for k, v in props):
        assert got is None  # left to paho, which refuses NUL characters
        return
    ref = _packet.decode_publish(header, data, MQTTProtocolVersion.MQTTv5)
    assert got is not None
    assert got[0].encode() == ref.topic
    assert got[1] == ref.payload
    assert list(got[2]) == list(getattr(ref.properties, "UserProperty", []) or [])
    assert got[3:] == (1, dup, ref.mid)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=80))
def test_garbage_is_left_to_paho_or_decoded_consistently(data: bytes) -> None:
    """Whatever the lean decoder accepts, paho decodes to the same message."""
    try:
        got = _decode_qos1_publish(0x32, data)
    except (UnicodeDecodeError, IndexError):
        return  # FastDecodeClient hands these to paho
    if got is None:
        return
    ref = _packet.decode_publish(0x32, data, MQTTProtocolVersion.MQTTv5)
    assert got[0].encode() == ref.topic and got[1] == ref.payload and got[5] == ref.mid
    assert list(got[2]) == list(getattr(ref.properties, "UserProperty", []) or [])


def test_other_properties_and_bad_lengths_are_left_to_paho() -> None:
    header, data = _publish(b"a/b", 7, [("k", "v")], b"xyz")
    # a message expiry interval (0x02) before the user property: not ours to decode
    other = data[:7] + bytes([1 + 5 + len(data[8:8 + data[7]])]) + b"\x02\x00\x00\x00\x05" \
        + data[8:]
    assert _decode_qos1_publish(header, other) is None
    assert _decode_qos1_publish(header, data[:6]) is None  # cut inside the properties
    zero_mid = data[:5] + b"\x00\x00" + data[7:]
    assert _decode_qos1_publish(header, zero_mid) is None  # packet id 0 is a protocol error


@settings(max_examples=100, deadline=None)
@given(keys=st.lists(st.tuples(text, text), max_size=5))
def test_journal_lines_are_json_and_read_back(tmp_path_factory, keys) -> None:  # type: ignore[no-untyped-def]
    for f, m in keys:
        assert f"[{_encode_str(f)}, {_encode_str(m)}]" == json.dumps([f, m])
    path = tmp_path_factory.mktemp("j") / "delivered.log"
    j = DeliveryJournal(path)
    j.record(keys)
    j.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [tuple(x) for x in lines] == keys


@settings(max_examples=100, deadline=None)
@given(rule=text, message=text, start=st.integers(0, 10**6), end=st.integers(0, 10**6))
def test_finding_dicts_equal_to_dict(rule: str, message: str, start: int, end: int) -> None:
    f = Finding(rule, message, start, end)
    fast = _finding_dict(f)
    assert fast == f.to_dict()
    assert json.dumps(fast) == json.dumps(f.to_dict())  # same key order in the record


class _ChunkedSocket:
    """A non-blocking socket that hands out a byte stream in the given chunks."""

    def __init__(self, data: bytes, cuts: list[int]) -> None:
        points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
        self.chunks = [data[a:b] for a, b in itertools.pairwise(points) if b > a]

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        return self.chunks.pop(0)

    def close(self) -> None:
        self.chunks = []


def _read_all(data: bytes, cuts: list[int], fast: bool) -> list[tuple[int, bytes]]:
    """Every packet (command, body) a buffered client hands to paho's dispatcher."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

    from guard.domains.mqtt_client import _BufferedClient

    c = _BufferedClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv5)
    c.fast_read = fast
    got: list[tuple[int, bytes]] = []

    def handle() -> MQTTErrorCode:
        got.append((c._in_packet["command"], bytes(c._in_packet["packet"])))
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    c._packet_handle = handle  # type: ignore[method-assign]
    c._sock = _ChunkedSocket(data, cuts)  # type: ignore[assignment]
    for _ in range(10 * len(data) + 10):
        if c._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN and not c._sock.chunks:
            break
    c._sock = None
    return got


def _frame(cmd: int, body: bytes) -> bytes:
    n, var = len(body), bytearray()
    while True:
        n, d = n >> 7, n & 0x7F
        var.append(d | (0x80 if n else 0))
        if not n:
            return bytes([cmd]) + bytes(var) + body


packet_st = st.one_of(
    st.builds(lambda t, m, p, pl, d: _frame(*_publish(t.encode(), m, p, pl, d)),
              text, st.integers(1, 0xFFFF), props_st, st.binary(max_size=20000), st.booleans()),
    st.builds(lambda m, rest: _frame(0x40, m.to_bytes(2, "big") + rest),
              st.integers(1, 0xFFFF), st.sampled_from([b"", b"\x00", b"\x10\x00", b"\x87"])),
    st.just(_frame(0xD0, b"")),  # PINGRESP
    st.builds(lambda pl: _frame(0x30, b"\x00\x01t\x00" + pl), st.binary(max_size=300)),  # QoS 0
    st.builds(lambda b: _frame(0x90, b), st.binary(min_size=3, max_size=5)),  # SUBACK
)


@settings(max_examples=150, deadline=None)
@given(packets=st.lists(packet_st, min_size=1, max_size=12),
       cuts=st.lists(st.integers(0, 200_000), max_size=12))
def test_whole_packet_reads_hand_paho_exactly_what_its_own_reader_does(
        packets: list[bytes], cuts: list[int]) -> None:
    data = b"".join(packets)
    fast = _read_all(data, cuts, fast=True)
    assert fast == _read_all(data, cuts, fast=False)
    assert len(fast) == len(packets)
