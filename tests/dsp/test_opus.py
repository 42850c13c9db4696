"""The Opus wrapper: round trip quality, frame sizes, re-chunking, concealment, errors."""

from __future__ import annotations

import numpy as np
import opuslib
import pytest

from engine.dsp.formats import OPUS_RATES
from engine.dsp.opus import OPUS_FRAME_MS, OpusDecoder, OpusEncoder
from engine.errors import CodecError, UsageError

from .helpers import aligned_correlation, speech_like


def pcm(rate: int, seconds: float = 0.5) -> np.ndarray:
    return np.round(speech_like(rate, seconds)).astype(np.int16)


@pytest.mark.parametrize("rate", OPUS_RATES)
def test_round_trip_of_speech_correlates_above_0_9(rate):
    signal = pcm(rate)
    packets = OpusEncoder(rate, bitrate=24000).encode(signal)
    decoder = OpusDecoder(rate)
    decoded = np.frombuffer(b"".join(decoder.decode(p) for p in packets), dtype=np.int16)
    assert len(decoded) == len(signal)
    skip = rate // 20  # the codec's start-up
    assert aligned_correlation(signal[skip:-skip], decoded[skip:], max_lag=rate // 50) >= 0.9


def test_decoding_matches_opuslib():
    packets = OpusEncoder(16000).encode(pcm(16000, 0.2))
    ours, theirs = OpusDecoder(16000), opuslib.Decoder(16000, 1)
    for packet in packets:
        assert ours.decode(packet) == theirs.decode(packet, 320)


@pytest.mark.parametrize("frame_ms", OPUS_FRAME_MS)
def test_every_valid_frame_duration(frame_ms):
    rate = 48000
    encoder = OpusEncoder(rate, frame_ms=frame_ms)
    frame = round(rate * frame_ms / 1000)
    packets = encoder.encode(pcm(rate, 0.12))
    assert len(packets) == int(0.12 * rate) // frame
    assert encoder.pending_samples == int(0.12 * rate) % frame
    decoder = OpusDecoder(rate)
    assert all(decoder.decode_into(p) == frame for p in packets)


@pytest.mark.parametrize("frame_ms", [0, 1, 15, 30, 80, 120])
def test_invalid_frame_durations_are_rejected_at_construction(frame_ms):
    with pytest.raises(UsageError, match="opus frames last"):
        OpusEncoder(48000, frame_ms=frame_ms)


@pytest.mark.parametrize(("rate", "channels"), [(44100, 1), (32000, 1), (48000, 3)])
def test_invalid_formats_are_rejected(rate, channels):
    with pytest.raises(UsageError):
        OpusEncoder(rate, channels)
    with pytest.raises(UsageError):
        OpusDecoder(rate, channels)


def test_rechunking_does_not_depend_on_how_pcm_arrives():
    signal = pcm(24000, 0.3)
    whole = OpusEncoder(24000).encode(signal)
    encoder = OpusEncoder(24000)
    pieces = []
    for chunk in np.split(signal, [1, 2, 477, 480, 1500, 5000]):
        pieces += encoder.encode(chunk.tobytes())
    assert pieces == whole


def test_flush_pads_the_last_frame_and_reset_drops_it():
    encoder = OpusEncoder(8000)
    assert encoder.encode(pcm(8000, 0.03)) != []  # one 20 ms packet, 10 ms pending
    assert encoder.pending_samples == 80
    last = encoder.flush()
    assert len(last) == 1 and OpusDecoder(8000).decode_into(last[0]) == 160
    assert encoder.flush() == []
    encoder.encode(pcm(8000, 0.01))
    encoder.reset()
    assert encoder.pending_samples == 0 and encoder.flush() == []


@pytest.mark.parametrize(("ms", "samples"), [(2.5, 120), (20, 960), (45, 2160), (200, 9600)])
def test_concealment_fills_exactly_the_missing_duration(ms, samples):
    decoder = OpusDecoder(48000)
    for packet in OpusEncoder(48000).encode(pcm(48000, 0.1)):
        decoder.decode(packet)
    concealed = np.frombuffer(decoder.conceal(ms), dtype=np.int16)
    assert len(concealed) == samples
    assert np.abs(concealed[:120]).max() > 0  # continues the voice rather than muting


def test_concealment_with_fec_uses_the_next_packet():
    encoder = OpusEncoder(16000, inband_fec=True, packet_loss_pct=20, bitrate=32000)
    packets = encoder.encode(pcm(16000, 0.3))
    decoder = OpusDecoder(16000)
    for packet in packets[:5]:
        decoder.decode(packet)
    recovered = decoder.conceal(20, next_packet=packets[6])  # packet 5 was lost
    assert len(recovered) == 640
    assert len(decoder.decode(packets[6])) == 640


@pytest.mark.parametrize("ms", [0, 1, 3.3, -5])
def test_concealment_rejects_impossible_durations(ms):
    with pytest.raises(UsageError, match=r"2\.5 ms"):
        OpusDecoder(8000).conceal(ms)


def test_errors_name_the_call_the_leg_and_the_frame():
    decoder = OpusDecoder(48000, call_id="CA42", leg="ai")
    for packet in OpusEncoder(48000).encode(pcm(48000, 0.06)):
        decoder.decode(packet)
    with pytest.raises(CodecError) as caught:
        decoder.decode(b"\xff\xff\xff\xff")
    error = caught.value
    assert (error.call_id, error.leg, error.frame) == ("CA42", "ai", 3)
    assert str(error) == "call CA42 ai leg frame 3: opus decode failed: corrupted stream"
