"""Spec edges of the host codecs (MAP V1.1b3, MSL V1.02) found in the spec review.

Each test pins one clause the round-trip suites do not reach: quantity limits at
both edges for every function code, FC 08 "return query data" with any amount of
data, exception responses to every function code through the framer, and the FC
2B/0E "more follows" paging fields.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rackproto import adu as adus
from rackproto import pdu as P
from rackproto.crc import crc16, with_crc
from rackproto.errors import FrameError, QuantityError
from rackproto.framer import RtuFramer, request_length, response_length


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def feed_in_pieces(role: str, stream: bytes, cuts: list[int]) -> list[bytes]:
    framer = RtuFramer(role)  # type: ignore[arg-type]
    out: list[bytes] = []
    last = 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        out += [f.raw for f in framer.feed(stream[last:cut])]
        last = cut
    out += [f.raw for f in framer.flush()]
    return out


# --- quantity limits: both edges, every function code (MAP 6.1-6.17) -------------------
def _read(fc: int, qty: int) -> bytes:
    return struct.pack(">BHH", fc, 0, qty)


def _coils(qty: int, byte_count: int | None = None) -> bytes:
    n = math.ceil(qty / 8) if byte_count is None else byte_count
    return struct.pack(">BHHB", 0x0F, 0, qty, n) + bytes(n)


def _regs(qty: int, byte_count: int | None = None) -> bytes:
    n = 2 * qty if byte_count is None else byte_count
    return struct.pack(">BHHB", 0x10, 0, qty, n) + bytes(n)


def _rw(rqty: int, wqty: int, byte_count: int | None = None) -> bytes:
    n = 2 * wqty if byte_count is None else byte_count
    return struct.pack(">BHHHHB", 0x17, 0, rqty, 0, wqty, n) + bytes(n)


LIMITS = [
    (lambda q: _read(1, q), 2000),
    (lambda q: _read(2, q), 2000),
    (lambda q: _read(3, q), 125),
    (lambda q: _read(4, q), 125),
    (_coils, 1968),
    (_regs, 123),
    (lambda q: _rw(q, 1), 125),
    (lambda q: _rw(1, q), 121),
]


@pytest.mark.parametrize(("make", "high"), LIMITS)
def test_quantity_limits_at_both_edges(make, high: int) -> None:
    assert P.decode_request(make(1)) is not None
    assert P.decode_request(make(high)) is not None
    for bad in (0, high + 1):
        with pytest.raises(QuantityError):
            P.decode_request(make(bad))


@pytest.mark.parametrize(
    "body",
    [
        _coils(9, 1),  # ceil(9/8) = 2
        _coils(8, 2),
        _regs(2, 3),
        _regs(2, 5),
        _rw(1, 2, 2),
    ],
)
def test_byte_count_must_equal_the_quantity_it_carries(body: bytes) -> None:
    with pytest.raises(QuantityError):
        P.decode_request(body)


def test_illegal_coil_value_is_a_value_error_answered_03() -> None:
    # MAP 6.5: FC 05 output value other than 0x0000/0xFF00 -> exception 03
    with pytest.raises(QuantityError):
        P.decode_request(h("05 00AC 1234"))
    with pytest.raises(QuantityError):
        P.encode(P.WriteSingle(5, 0xAC, 0x0001))


# --- FC 08 sub-function 00: the data field is "any" (MAP 6.8.1) --------------------------
def test_return_query_data_with_several_words() -> None:
    pdu = P.decode_request(h("08 0000 A537 0102 0304"))
    assert pdu == P.Diagnostics(0, 0xA537, h("0102 0304"))
    assert P.encode(pdu) == h("08 0000 A537 0102 0304")
    assert P.decode_response(h("08 0000 A537 0102 0304")) == pdu


def test_only_return_query_data_carries_more_than_one_word() -> None:
    with pytest.raises(FrameError):
        P.decode_request(h("08 000B 0000 0001"))
    with pytest.raises(FrameError):
        P.encode(P.Diagnostics(0x0B, 0, b"\x00\x01"))


def test_echo_longer_than_a_pdu_is_refused() -> None:
    P.encode(P.Diagnostics(0, 0, bytes(248)))  # 1 + 2 + 2 + 248 = 253
    with pytest.raises(QuantityError):
        P.encode(P.Diagnostics(0, 0, bytes(249)))


def _hidden_frame(role: str, frames: list[bytes]) -> bool:
    """True when a complete CRC-valid frame starts inside another frame."""
    stream = bytearray(b"".join(frames))
    starts = {sum(len(f) for f in frames[:i]) for i in range(len(frames))}
    rule = request_length if role == "server" else response_length
    for pos in range(len(stream) - 3):
        if pos not in starts and stream[pos] <= 247:
            n = rule(stream, pos, len(stream) - pos)
            if 4 <= n <= len(stream) - pos and crc16(stream[pos : pos + n]) == 0:
                return True
    return False


echoes = st.builds(
    P.Diagnostics, st.just(0), st.integers(0, 0xFFFF), st.binary(max_size=248)
)
others = st.one_of(
    st.builds(P.ReadRequest, st.just(3), st.integers(0, 0xFFFF), st.integers(1, 125)),
    st.builds(P.Diagnostics, st.sampled_from([0x0A, 0x0B, 0x0E]), st.integers(0, 0xFFFF)),
    st.builds(P.WriteSingle, st.just(6), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
)


@settings(deadline=None, max_examples=120)
@given(
    st.sampled_from(["server", "client"]),
    st.lists(st.tuples(st.integers(1, 247), st.one_of(echoes, others)), min_size=1, max_size=4),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_framer_finds_echoes_of_any_length(role: str, items, cuts: list[int]) -> None:
    frames = [adus.build(a, p) for a, p in items]
    # Length by CRC is ambiguous when an echo's data holds a valid CRC of its own
    # prefix (~1 in 65536 per extra byte; only t3.5 timing could tell): such a
    # frame is cut at that prefix by design, so leave those out here.
    assume(all(crc16(f[:k]) != 0 for f in frames for k in range(8, len(f))))
    assume(not _hidden_frame(role, frames))  # CRC collisions inside data: see test_framer
    if role == "client":  # a read request is not a response: use its exception instead
        frames = [
            adus.build(a, P.ExceptionResponse(3, 2)) if isinstance(p, P.ReadRequest) else f
            for (a, p), f in zip(items, frames, strict=True)
        ]
    stream = b"".join(frames)
    assert feed_in_pieces(role, stream, cuts) == frames
    out = RtuFramer(role).feed(stream)  # type: ignore[arg-type]
    pdu_role = "request" if role == "server" else "response"
    assert [f.decode() for f in out] == [adus.parse(f, pdu_role) for f in frames]


def test_corrupted_echo_does_not_hide_the_next_frame() -> None:
    bad = bytearray(adus.build(1, P.Diagnostics(0, 0x1234, b"abcd")))
    bad[5] ^= 0x40
    good = adus.build(2, P.ReadRequest(3, 0, 1))
    framer = RtuFramer("server")
    assert [f.raw for f in framer.feed(bytes(bad) + good)] == [good]
    assert framer.stats.skipped_bytes == len(bad)


def test_diagnostics_length_rule() -> None:
    echo = adus.build(1, P.Diagnostics(0, 7, b"\x01\x02\x03"))
    for rule in (request_length, response_length):
        assert rule(bytearray(echo), 0, len(echo)) == len(echo)
        assert rule(bytearray(echo[:9]), 0, 9) == 0  # need more
        assert rule(bytearray(h("01 08 000B")), 0, 4) == 8


# --- exception responses to every function code ----------------------------------------
def test_exception_responses_for_every_function_code() -> None:
    frames = [
        adus.build(1 + fc % 247, P.ExceptionResponse(fc, code))
        for fc in range(1, 0x80)
        for code in (1, 2, 3, 4, 6, 0x0B)
    ]
    stream = b"".join(frames)
    client = RtuFramer("client")
    found = client.feed(stream)
    assert [f.raw for f in found] == frames
    assert client.stats.skipped_bytes == 0
    for f, (fc, code) in zip(found, [(fc, c) for fc in range(1, 0x80) for c in (1, 2, 3, 4, 6, 0x0B)], strict=True):
        assert f.decode().pdu == P.ExceptionResponse(fc, code)
    # an exception is never a request: the server-side framer finds nothing
    server = RtuFramer("server")
    assert server.feed(stream) + server.flush() == []


def test_exception_response_needs_exactly_one_code_byte() -> None:
    with pytest.raises(FrameError):
        P.decode_response(h("83"))
    with pytest.raises(FrameError):
        P.decode_response(h("83 02 00"))
    with pytest.raises(FrameError):
        P.decode_response(h("80 01"))  # no function 0 to refuse


# --- FC 2B / 0E: more follows (MAP 6.21) -----------------------------------------------
PAGE1 = "2B 0E 02 82 FF 03 03 00 03 414243 01 02 5031 02 03 312E30"
PAGE2 = "2B 0E 02 82 00 00 02 03 01 58 04 02 5959"


def test_device_id_pages_parse_and_frame() -> None:
    p1 = P.decode_response(h(PAGE1))
    assert isinstance(p1, P.DeviceIdResponse)
    assert (p1.more_follows, p1.next_object_id) == (0xFF, 3)
    assert [oid for oid, _ in p1.objects] == [0, 1, 2]
    p2 = P.decode_response(h(PAGE2))
    assert (p2.more_follows, p2.next_object_id, p2.objects) == (0, 0, ((3, b"X"), (4, b"YY")))
    frames = [with_crc(b"\x05" + h(PAGE1)), with_crc(b"\x05" + h(PAGE2))]
    assert feed_in_pieces("client", b"".join(frames), list(range(0, 60, 3))) == frames
    assert P.encode(p1) == h(PAGE1)


def test_more_follows_is_00_or_ff() -> None:
    with pytest.raises(FrameError):
        P.decode_response(h("2B 0E 01 81 01 03 00"))
    with pytest.raises(FrameError):
        P.encode(P.DeviceIdResponse(1, 0x81, 0x01, 3, ()))


def test_echo_whose_data_contains_a_crc_is_cut_there() -> None:
    # the documented limit of framing FC 08/00 without timing: the first CRC match wins
    short = adus.build(0x43, P.Diagnostics(0, 0, h("B98A")))
    longer = with_crc(short)  # the short frame's bytes as the data of a longer echo
    assert feed_in_pieces("server", longer, []) == [short]
