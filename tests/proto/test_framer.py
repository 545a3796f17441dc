"""RtuFramer: the same frames however the stream is cut, after garbage, past bad CRCs."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rackproto import adu as adus
from rackproto import pdu as P
from rackproto.crc import crc16
from rackproto.errors import CrcError, FrameError
from rackproto.framer import Frame, RtuFramer, request_length, response_length

REQUESTS = [
    adus.build(1, P.ReadRequest(3, 0, 10)),
    adus.build(7, P.WriteRegistersRequest(0x100, (1, 2, 3, 0xFFFF))),
    adus.build(2, P.WriteCoilsRequest(5, (True, False, True) * 5)),
    adus.build(0, P.WriteSingle(6, 9, 1234)),  # broadcast
    adus.build(3, P.ReadWriteRequest(0, 4, 10, (7, 8))),
    adus.build(4, P.DeviceIdRequest(1, 0)),
    adus.build(5, P.Diagnostics(0x0B, 0)),
    adus.build(1, P.ReadRequest(1, 0, 2000)),
]
RESPONSES = [
    adus.build(1, P.ReadRegistersResponse(3, tuple(range(125)))),
    adus.build(1, P.ExceptionResponse(3, 2)),
    adus.build(2, P.ReadBitsResponse(1, (True,) * 16)),
    adus.build(3, P.WriteMultipleResponse(0x10, 0x100, 4)),
    adus.build(4, P.DeviceIdResponse(1, 0x81, 0, 0, ((0, b"ACME"), (1, b"PS-6"), (2, b"1.2")))),
    adus.build(5, P.Diagnostics(0x0B, 42)),
    adus.build(6, P.ReadRegistersResponse(0x17, (1, 2))),
    adus.build(7, P.WriteSingle(5, 3, P.COIL_ON)),
]
STREAMS = {"server": REQUESTS, "client": RESPONSES}


def run(role: str, chunks: list[bytes], flush: bool = False) -> tuple[list[bytes], RtuFramer]:
    framer = RtuFramer(role)  # type: ignore[arg-type]
    out: list[Frame] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    if flush:
        out += framer.flush()
    return [f.raw for f in out], framer


@pytest.mark.parametrize("role", ["server", "client"])
def test_whole_stream(role: str) -> None:
    frames, framer = run(role, [b"".join(STREAMS[role])])
    assert frames == STREAMS[role]
    assert framer.pending == 0
    assert framer.stats.frames == len(frames)
    assert framer.stats.crc_errors == framer.stats.frame_errors == framer.stats.skipped_bytes == 0


@pytest.mark.parametrize("role", ["server", "client"])
def test_split_at_every_index(role: str) -> None:
    stream = b"".join(STREAMS[role])
    for i in range(len(stream) + 1):
        frames, framer = run(role, [stream[:i], stream[i:]])
        assert frames == STREAMS[role], i
        assert framer.stats.skipped_bytes == 0


@pytest.mark.parametrize("role", ["server", "client"])
def test_byte_by_byte(role: str) -> None:
    stream = b"".join(STREAMS[role])
    frames, framer = run(role, [stream[i : i + 1] for i in range(len(stream))])
    assert frames == STREAMS[role]
    assert framer.stats.skipped_bytes == 0


def test_frames_come_out_as_soon_as_complete() -> None:
    framer = RtuFramer("server")
    frame = REQUESTS[1]
    for i in range(len(frame) - 1):
        assert framer.feed(frame[i : i + 1]) == []
        assert framer.pending == i + 1  # nothing looked-at-but-unused is dropped
    assert [f.raw for f in framer.feed(frame[-1:])] == [frame]
    assert framer.pending == 0


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    edges = [0, *points, len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@settings(deadline=None, derandomize=True, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["server", "client"]),
    st.binary(min_size=1, max_size=40),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_garbage_in_front(role: str, garbage: bytes, cuts: list[int]) -> None:
    """After leading garbage, every frame is found, however the stream is cut."""
    stream = garbage + b"".join(STREAMS[role])
    whole, _ = run(role, [stream])
    pieces, framer = run(role, chunked(stream, cuts))
    assert pieces == whole == STREAMS[role]
    errors = framer.stats.crc_errors + framer.stats.frame_errors
    assert errors <= 1  # one resynchronisation episode, reported once
    assert framer.stats.skipped_bytes == len(garbage)


@pytest.mark.parametrize("role", ["server", "client"])
def test_bad_crc_mid_stream_is_reported_and_skipped(role: str) -> None:
    frames = STREAMS[role]
    bad = bytearray(frames[2])
    bad[-1] ^= 0x55
    stream = b"".join(frames[:2]) + bytes(bad) + b"".join(frames[3:])
    errors: list[FrameError] = []
    for cuts in ([len(stream)], list(range(len(stream)))):
        errors.clear()
        framer = RtuFramer(role, on_error=errors.append)  # type: ignore[arg-type]
        out: list[bytes] = []
        for chunk in chunked(stream, cuts):
            out += [f.raw for f in framer.feed(chunk)]
        assert out == frames[:2] + frames[3:]
        assert len(errors) == 1 and isinstance(errors[0], CrcError)
        assert framer.stats.crc_errors == 1
        assert framer.stats.skipped_bytes == len(bad)


def test_corrupted_header_mid_stream_resyncs_after_flush() -> None:
    """A corrupted byte count can make the framer wait; idle (flush) releases it."""
    frames = REQUESTS[:3]
    bad = bytearray(frames[1])
    bad[6] = 0xF0  # byte count of the FC 10 request: now claims 240 data bytes
    stream = frames[0] + bytes(bad) + frames[2]
    out, framer = run("server", [stream])
    assert out == [frames[0]]  # still waiting for the claimed 240 bytes
    assert framer.pending == len(bad) + len(frames[2])
    out += [f.raw for f in framer.flush()]
    assert out == [frames[0], frames[2]]
    assert framer.pending == 0


def test_garbage_that_completes_a_bogus_candidate_does_not_lose_frames() -> None:
    good = REQUESTS[0]
    framer = RtuFramer("server")
    assert [f.raw for f in framer.feed(good)] == [good]
    # in sync: 01 10 ... claims a write of byte count 4; the next bytes complete it with a bad CRC
    out = framer.feed(b"\x01\x10\x00\x00\x00\x02\x04") + framer.feed(good + good)
    assert [f.raw for f in out] == [good, good]
    assert framer.stats.crc_errors + framer.stats.frame_errors == 1


def test_flush_returns_remaining_frames_and_drops_an_unfinished_tail() -> None:
    framer = RtuFramer("client")
    assert framer.feed(RESPONSES[1] + RESPONSES[0][:10]) != []
    assert framer.pending == 10
    assert framer.flush() == []
    assert framer.pending == 0
    assert framer.stats.frame_errors == 1


@pytest.mark.parametrize(
    ("role", "head", "length"),
    [
        ("server", "0103", 8),
        ("server", "010F00000010", 0),  # byte count not yet there
        ("server", "010F0000001002", 11),
        ("server", "0117000000010000000102", 15),
        ("server", "012B0E", 7),
        ("server", "012B0D", -1),
        ("server", "0183", -1),
        ("client", "0183", 5),
        ("client", "0103FA", 255),
        ("client", "0110", 8),
        ("client", "012B0E01810000", 0),
        ("client", "012B0E0181000001", 0),
        ("client", "012B0E018100000100", 0),
        ("client", "012B0E01810000010003", 15),
        ("client", "0141", -1),
    ],
)
def test_length_rules(role: str, head: str, length: int) -> None:
    buf = bytearray.fromhex(head)
    rule = request_length if role == "server" else response_length
    assert rule(buf, 0, len(buf)) == length


def test_reserved_addresses_and_unknown_codes_are_skipped() -> None:
    frames, framer = run("server", [b"\xff\x03" + b"\x01\x41" + REQUESTS[0]])
    assert frames == [REQUESTS[0]]
    assert framer.stats.skipped_bytes == 4
    assert framer.stats.frame_errors == 1


def test_frames_decode_for_their_role() -> None:
    (req,) = RtuFramer("server").feed(REQUESTS[0])
    assert req.address == 1 and req.function == 3
    assert req.decode() == adus.Adu(1, P.ReadRequest(3, 0, 10))
    (resp,) = RtuFramer("client").feed(RESPONSES[1])
    assert resp.decode().pdu == P.ExceptionResponse(3, 2)


def test_reset_and_bad_role() -> None:
    framer = RtuFramer("server")
    framer.feed(REQUESTS[0][:5])
    framer.reset()
    assert framer.pending == 0
    with pytest.raises(ValueError):
        RtuFramer("master")  # type: ignore[arg-type]


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(["server", "client"]), st.lists(st.binary(max_size=64), max_size=8))
def test_arbitrary_bytes_never_raise_and_are_all_accounted_for(
    role: str, chunks: list[bytes]
) -> None:
    framer = RtuFramer(role)  # type: ignore[arg-type]
    used = 0
    for chunk in chunks:
        used += sum(len(f.raw) for f in framer.feed(chunk))
    used += sum(len(f.raw) for f in framer.flush())
    assert used + framer.stats.skipped_bytes == sum(len(c) for c in chunks)


_u16 = st.integers(0, 0xFFFF)
_words = st.lists(_u16, min_size=1, max_size=125).map(tuple)
_request_frames = st.builds(
    adus.build,
    st.integers(0, 247),
    st.one_of(
        st.builds(P.ReadRequest, st.sampled_from([3, 4]), _u16, st.integers(1, 125)),
        st.builds(P.WriteSingle, st.just(6), _u16, _u16),
        st.builds(P.WriteRegistersRequest, _u16, _words.map(lambda w: w[:123])),
        st.builds(P.WriteCoilsRequest, _u16, st.lists(st.booleans(), min_size=1, max_size=300).map(tuple)),
        st.builds(P.ReadWriteRequest, _u16, st.integers(1, 125), _u16, _words.map(lambda w: w[:121])),
        st.builds(P.DeviceIdRequest, st.integers(1, 4), st.integers(0, 255)),
        st.builds(P.Diagnostics, st.sampled_from([0, 0x0A, 0x0B]), _u16),
    ),
)
_response_frames = st.builds(
    adus.build,
    st.integers(1, 247),
    st.one_of(
        st.builds(P.ReadRegistersResponse, st.sampled_from([3, 4, 0x17]), _words),
        st.builds(P.ReadBitsResponse, st.sampled_from([1, 2]), st.integers(1, 40).map(lambda n: (True, False) * 4 * n)),
        st.builds(P.WriteMultipleResponse, st.just(0x10), _u16, st.integers(1, 123)),
        st.builds(P.ExceptionResponse, st.integers(1, 0x7F), st.integers(1, 11)),
        st.builds(
            P.DeviceIdResponse,
            st.integers(1, 4),
            st.integers(0, 255),
            st.just(0),
            st.just(0),
            st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=20)), max_size=4).map(tuple),
        ),
    ),
)


def _hidden_frame(role: str, frames: list[bytes]) -> bool:
    """True when a complete CRC-valid frame starts inside another frame.

    Length rules only read a frame's own prefix, so such a frame is what a hunting
    framer (at start-up) may take when a cut leaves the outer frame incomplete --
    a CRC collision (~1 in 65536 per position) that only t3.5 timing resolves.
    """
    stream = bytearray(b"".join(frames))
    starts = {sum(len(f) for f in frames[:i]) for i in range(len(frames))}
    rule = request_length if role == "server" else response_length
    for pos in range(len(stream) - 3):
        if pos in starts or stream[pos] > 247:
            continue
        n = rule(stream, pos, len(stream) - pos)
        if 4 <= n <= len(stream) - pos and crc16(stream[pos : pos + n]) == 0:
            return True
    return False


@settings(deadline=None, max_examples=150)
@given(
    st.one_of(
        st.tuples(st.just("server"), st.lists(_request_frames, min_size=1, max_size=5)),
        st.tuples(st.just("client"), st.lists(_response_frames, min_size=1, max_size=5)),
    ),
    st.lists(st.integers(0, 10_000), max_size=10),
)
def test_generated_streams_survive_any_cuts(case: tuple[str, list[bytes]], cuts: list[int]) -> None:
    role, frames = case
    assume(not _hidden_frame(role, frames))
    stream = b"".join(frames)
    out, framer = run(role, chunked(stream, cuts))
    assert out == frames
    assert framer.pending == 0 and framer.stats.skipped_bytes == 0
    decoded = [f.decode() for f in RtuFramer(role).feed(stream)]  # type: ignore[arg-type]
    expected = [adus.parse(f, "request" if role == "server" else "response") for f in frames]
    assert decoded == expected


def test_a_frame_hidden_in_an_incomplete_one_is_taken_while_hunting() -> None:
    # The documented limit behind the assume() above, found by hypothesis: at
    # start-up, with only 12 bytes of a 2B/0E response in, the bytes 04 A0 00 48 01
    # form a CRC-valid 5-byte "exception response" and the hunting framer takes it.
    devid = bytes.fromhex("012b0e0100000004a0004801000000000081cd")
    assert _hidden_frame("client", [devid])
    framer = RtuFramer("client")
    assert [f.raw.hex() for f in framer.feed(devid[:12])] == ["04a0004801"]
    # once in sync, an incomplete frame is waited for instead
    synced = RtuFramer("client")
    first = adus.build(1, P.ReadRegistersResponse(3, (0,)))
    assert [f.raw for f in synced.feed(first + devid[:12])] == [first]
    assert [f.raw for f in synced.feed(devid[12:])] == [devid]
