"""The Framer: platform presets and a property test of its two promises.

1. every emitted chunk is legal (size a multiple of the unit, within min..max, whole samples);
2. the chunks, concatenated, are the input followed only by silence padding.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dsp.formats import ALAW, MULAW, OPUS, PCM_8_S, PCM_8_U, PCM_16_LE, AudioFormat
from engine.dsp.framer import Framer
from engine.errors import UsageError

EXOTEL = {"multiple_of_bytes": 320, "min_bytes": 3200, "max_bytes": 100_000}
GENESYS = {"min_bytes": 1600, "max_bytes": 1600}


@pytest.mark.parametrize(("rate", "size"), [(8000, 320), (16000, 640), (24000, 960)])
def test_vonage_gets_exact_20_ms_frames(rate, size):
    framer = Framer(AudioFormat(PCM_16_LE, rate), frame_ms=20)
    assert framer.push(b"\1" * (size - 1)) == []
    chunks = framer.push(b"\2" * (size + 3))
    assert [len(c) for c in chunks] == [size, size]
    assert framer.pending_bytes == 2


def test_exotel_multiples_of_320_from_3200_up_to_100_kb():
    framer = Framer(AudioFormat(PCM_16_LE, 8000), **EXOTEL)
    assert framer.push(b"\0" * 3199) == []
    assert [len(c) for c in framer.push(b"\0" * 2)] == [3200]
    assert [len(c) for c in framer.push(b"\0" * 250_000)] == [99_840, 99_840, 50_240]
    assert framer.pending_bytes == 81


def test_genesys_fixed_1600_byte_packets():
    framer = Framer(AudioFormat(MULAW, 8000), **GENESYS)
    assert [len(c) for c in framer.push(b"\x7f" * 5000)] == [1600] * 3
    (last,) = framer.flush()
    assert last == b"\x7f" * 200 + b"\xff" * 1400


@pytest.mark.parametrize(("encoding", "silence"), [(PCM_16_LE, 0x00), (MULAW, 0xFF),
                                                   (ALAW, 0xD5), (PCM_8_U, 0x80), (PCM_8_S, 0)])
def test_flush_pads_with_the_encodings_silence(encoding, silence):
    framer = Framer(AudioFormat(encoding, 8000), frame_ms=20)
    framer.push(b"\x11" * 10)
    (chunk,) = framer.flush()
    assert chunk == b"\x11" * 10 + bytes([silence]) * (len(chunk) - 10)
    assert framer.flush() == []


def test_flush_without_padding_and_clear_drop_the_rest():
    framer = Framer(AudioFormat(PCM_16_LE, 8000), frame_ms=20)
    framer.push(b"\0" * 100)
    assert framer.flush(pad=False) == [] and framer.pending_bytes == 0
    framer.push(b"\0" * 100)
    framer.clear()
    assert framer.pending_bytes == 0 and framer.flush() == []


def test_chunks_never_split_a_sample():
    framer = Framer(AudioFormat(PCM_16_LE, 8000, channels=2), multiple_of_bytes=6)
    assert framer.unit == 12
    assert [len(c) for c in framer.push(b"\0" * 30)] == [24]


@pytest.mark.parametrize("kwargs", [
    {"frame_ms": 20, "min_bytes": 10},
    {"frame_ms": 0.01},
    {"multiple_of_bytes": 320, "min_bytes": 400, "max_bytes": 500},
    {"multiple_of_bytes": 0},
])
def test_impossible_rules_are_rejected(kwargs):
    with pytest.raises(UsageError):
        Framer(AudioFormat(PCM_16_LE, 8000), **kwargs)


def test_opus_is_not_framed_here():
    with pytest.raises(UsageError, match="opus"):
        Framer(AudioFormat(OPUS, 48000), frame_ms=20)


FORMATS = st.sampled_from([AudioFormat(PCM_16_LE, 8000), AudioFormat(MULAW, 8000),
                           AudioFormat(ALAW, 8000), AudioFormat(PCM_8_U, 16000),
                           AudioFormat(PCM_16_LE, 24000, 2)])


@st.composite
def rules(draw):
    kind = draw(st.sampled_from(["frame", "exotel", "genesys", "random"]))
    if kind == "frame":
        return {"frame_ms": draw(st.sampled_from([10, 20, 40]))}
    if kind == "exotel":
        return dict(EXOTEL)
    if kind == "genesys":
        return dict(GENESYS)
    multiple = draw(st.integers(1, 700))
    low = draw(st.integers(0, 5000))
    return {"multiple_of_bytes": multiple, "min_bytes": low,
            "max_bytes": low + draw(st.integers(0, 3)) * multiple + 2400}


@settings(deadline=None, max_examples=200)
@given(fmt=FORMATS, rule=rules(), pushes=st.lists(st.binary(max_size=7000), max_size=12),
       pad=st.booleans())
def test_every_chunk_is_legal_and_the_stream_is_preserved(fmt, rule, pushes, pad):
    try:
        framer = Framer(fmt, **rule)
    except UsageError:
        return  # a random rule set with no legal size is refused up front
    chunks = []
    for data in pushes:
        chunks += framer.push(data)
    chunks += framer.flush(pad=pad)
    sample_bytes = fmt.bytes_per_sample * fmt.channels
    for chunk in chunks:
        assert framer.is_legal(len(chunk)), (len(chunk), rule)
        assert len(chunk) % sample_bytes == 0
    sent, given_bytes = b"".join(chunks), b"".join(pushes)
    if pad:
        assert sent[: len(given_bytes)] == given_bytes
        padding = sent[len(given_bytes) :]
        assert padding == framer.silence * len(padding)
        assert len(padding) < framer.min_bytes + framer.unit
    else:
        assert given_bytes.startswith(sent)
