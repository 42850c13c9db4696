"""The Transcoder over the whole telephony x AI matrix, plus its stream events.

Inputs are encoded and outputs decoded with audioop and opuslib, never with our own kernels, and
compared with the same speech-like signal generated analytically at the destination rate.
"""

from __future__ import annotations

import itertools

import numpy as np
import opuslib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dsp import kernels, reference
from engine.dsp.filters import design_polyphase
from engine.dsp.formats import (
    ALAW,
    MULAW,
    OPUS,
    PCM_8_S,
    PCM_8_U,
    PCM_16_BE,
    PCM_16_LE,
    AudioFormat,
)
from engine.dsp.opus import OpusEncoder
from engine.dsp.transcoder import Transcoder
from engine.errors import UsageError

from .helpers import aligned_correlation, audioop, speech_like, tone

TELEPHONY = [AudioFormat(encoding, rate, channels)
             for encoding in (PCM_16_LE, PCM_16_BE, PCM_8_U, PCM_8_S, MULAW, ALAW)
             for rate in (8000, 16000, 24000, 48000) for channels in (1, 2)]
AI = [AudioFormat(PCM_16_LE, 24000), AudioFormat(MULAW, 8000), AudioFormat(OPUS, 48000)]
MATRIX = [pytest.param(a, b, id=f"{a}->{b}")
          for t, ai in itertools.product(TELEPHONY, AI) for a, b in ((t, ai), (ai, t))]
SECONDS = 0.2


def to_wire(samples: np.ndarray, fmt: AudioFormat) -> bytes:
    """Encode mono int16 with audioop; stereo gets (s + d, s - d), whose average is s."""
    raw = samples.astype("<i2").tobytes()
    if fmt.channels == 2:
        d = np.round(tone(2700.0, fmt.sample_rate, len(samples) / fmt.sample_rate, 3000.0))
        left = np.clip(samples + d, -32768, 32767).astype("<i2").tobytes()
        right = np.clip(samples - d, -32768, 32767).astype("<i2").tobytes()
        raw = audioop.add(audioop.tostereo(left, 2, 1, 0), audioop.tostereo(right, 2, 0, 1), 2)
    if fmt.encoding == PCM_16_BE:
        return audioop.byteswap(raw, 2)
    if fmt.encoding == PCM_8_S:
        return audioop.lin2lin(raw, 2, 1)
    if fmt.encoding == PCM_8_U:
        return audioop.bias(audioop.lin2lin(raw, 2, 1), 1, 128)
    if fmt.encoding == MULAW:
        return audioop.lin2ulaw(raw, 2)
    if fmt.encoding == ALAW:
        return audioop.lin2alaw(raw, 2)
    return raw


def from_wire(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Decode with audioop to mono int16 (left channel of stereo: both carry the same)."""
    if fmt.encoding == PCM_16_BE:
        raw = audioop.byteswap(data, 2)
    elif fmt.encoding == PCM_8_S:
        raw = audioop.lin2lin(data, 1, 2)
    elif fmt.encoding == PCM_8_U:
        raw = audioop.lin2lin(audioop.bias(data, 1, -128), 1, 2)
    elif fmt.encoding == MULAW:
        raw = audioop.ulaw2lin(data, 2)
    elif fmt.encoding == ALAW:
        raw = audioop.alaw2lin(data, 2)
    else:
        raw = data
    samples = np.frombuffer(raw, dtype="<i2")
    if fmt.channels == 2:
        assert np.array_equal(samples[0::2], samples[1::2])
        samples = samples[0::2]
    return samples


def source_frames(fmt: AudioFormat) -> list[bytes]:
    signal = np.round(speech_like(fmt.sample_rate, SECONDS)).astype(np.int16)
    if fmt.encoding == OPUS:
        return OpusEncoder(fmt.sample_rate, bitrate=64000, complexity=10).encode(signal)
    wire, size = to_wire(signal, fmt), fmt.frame_bytes(20)
    return [wire[i : i + size] for i in range(0, len(wire), size)]


@pytest.mark.parametrize(("src", "dst"), MATRIX)
def test_matrix_converts_with_exact_frame_sizes_and_keeps_the_signal(src, dst):
    transcoder = Transcoder(src, dst, call_id="CA1", leg="test")
    frames = source_frames(src)
    if dst.encoding == OPUS:
        outputs = [transcoder.convert_packets(frame) for frame in frames]
        assert all(len(packets) == 1 for packets in outputs)
        decoder = opuslib.Decoder(dst.sample_rate, dst.channels)
        decoded = b"".join(decoder.decode(packets[0], dst.sample_rate // 50)
                           for packets in outputs)
        received = from_wire(decoded, AudioFormat(PCM_16_LE, dst.sample_rate, dst.channels))
    else:
        outputs = [transcoder.convert(frame) for frame in frames]
        assert {len(chunk) for chunk in outputs} == {dst.frame_bytes(20)}
        received = from_wire(b"".join(outputs), dst)
    expected = speech_like(dst.sample_rate, SECONDS)
    skip = dst.sample_rate // 50
    max_lag = dst.sample_rate * 12 // 1000  # resampler < 1 ms, Opus look-ahead 6.5 ms
    assert aligned_correlation(expected[skip:-skip], received[skip:], max_lag) >= 0.9


def test_same_format_passes_the_very_same_bytes_through():
    data = bytes(range(160))
    assert Transcoder(AudioFormat(MULAW, 8000), AudioFormat(MULAW, 8000)).convert(data) is data
    opus = AudioFormat(OPUS, 48000)
    assert Transcoder(opus, opus).convert_packets(data)[0] is data


def test_bytes_per_20ms():
    transcoder = Transcoder(AudioFormat(MULAW, 8000), AudioFormat(PCM_16_LE, 24000, 2))
    assert (transcoder.input_bytes_per_20ms, transcoder.output_bytes_per_20ms) == (160, 1920)
    assert Transcoder(AudioFormat(OPUS, 48000), AudioFormat(MULAW, 8000)).input_bytes_per_20ms == 0


def pcm_stream(rate: int, seconds: float) -> bytes:
    return np.round(speech_like(rate, seconds)).astype("<i2").tobytes()


@st.composite
def byte_chunkings(draw):
    data = pcm_stream(16000, 0.05)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=10)))
    return data, cuts


@settings(deadline=None, max_examples=30)
@given(byte_chunkings())
def test_any_byte_chunking_including_odd_splits_gives_the_same_stream(case):
    data, cuts = case
    src, dst = AudioFormat(PCM_16_LE, 16000), AudioFormat(MULAW, 8000)
    whole = Transcoder(src, dst).convert(data)
    transcoder = Transcoder(src, dst)
    pieces = [transcoder.convert(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)],
                                                              strict=True)]
    assert b"".join(pieces) == whole


def test_odd_byte_waits_for_the_next_call():
    transcoder = Transcoder(AudioFormat(PCM_16_BE, 8000), AudioFormat(PCM_16_LE, 8000))
    assert transcoder.convert(b"\x12") == b""
    assert transcoder.convert(b"\x34\x56") == b"\x34\x12"
    assert transcoder.convert(bytearray(b"\x78")) == b"\x78\x56"


def test_frames_bigger_than_the_buffers_grow_them():
    src, dst = AudioFormat(MULAW, 8000), AudioFormat(PCM_16_LE, 24000)
    data = to_wire(np.round(speech_like(8000, 0.5)).astype(np.int16), src)  # 4000 > 960 frames
    framed = Transcoder(src, dst)
    expected = b"".join(framed.convert(data[i : i + 160]) for i in range(0, len(data), 160))
    assert Transcoder(src, dst).convert(data) == expected


def test_reset_forgets_the_interrupted_audio():
    src, dst = AudioFormat(PCM_16_LE, 24000), AudioFormat(MULAW, 8000)
    speech = pcm_stream(24000, 0.1)
    transcoder = Transcoder(src, dst)
    transcoder.convert(speech[:2001])  # mid-sample, mid-phase
    transcoder.reset()
    assert transcoder.convert(speech) == Transcoder(src, dst).convert(speech)


def test_flush_emits_the_tail_and_starts_afresh():
    src, dst = AudioFormat(MULAW, 8000), AudioFormat(PCM_16_LE, 16000)
    speech = to_wire(np.round(speech_like(8000, 0.1)).astype(np.int16), src)
    history = design_polyphase(8000, 16000).history
    transcoder = Transcoder(src, dst)
    body = transcoder.convert(speech)
    tail = transcoder.flush()
    assert len(tail) == history * 2 * 2
    silence = bytes([0xFF]) * history  # µ-law silence decodes to exactly 0
    assert body + tail == Transcoder(src, dst).convert(speech + silence)
    assert transcoder.convert(speech) == body


@pytest.mark.parametrize(("encoding", "silence"), [(MULAW, 0xFF), (ALAW, 0xD5), (PCM_8_U, 0x80),
                                                   (PCM_8_S, 0x00), (PCM_16_LE, 0x00)])
def test_conceal_from_a_pcm_source_is_silence_of_the_right_length(encoding, silence):
    transcoder = Transcoder(AudioFormat(PCM_16_LE, 16000), AudioFormat(encoding, 8000))
    out = transcoder.conceal(40)
    assert out == bytes([silence]) * AudioFormat(encoding, 8000).frame_bytes(40)


def test_conceal_from_opus_runs_packet_loss_concealment():
    src, dst = AudioFormat(OPUS, 48000), AudioFormat(MULAW, 8000)
    transcoder = Transcoder(src, dst)
    for packet in source_frames(src)[:5]:
        transcoder.convert(packet)
    concealed = transcoder.conceal(20)
    assert len(concealed) == 160
    assert len(set(concealed)) > 1  # a continuation of the voice, not digital silence


def test_opus_destination_flush_and_conceal_give_packets():
    transcoder = Transcoder(AudioFormat(MULAW, 8000), AudioFormat(OPUS, 48000),
                            opus_frame_ms=60)
    frame = source_frames(AudioFormat(MULAW, 8000))[0]
    assert transcoder.convert_packets(frame) == []
    assert len(transcoder.conceal_packets(40)) == 1
    assert transcoder.convert_packets(frame) == []
    assert len(transcoder.flush_packets()) == 1  # 20 ms padded to 60
    with pytest.raises(UsageError, match="convert_packets"):
        transcoder.convert(b"\xff" * 160)


def test_pcm_destination_refuses_packet_methods():
    transcoder = Transcoder(AudioFormat(MULAW, 8000), AudioFormat(PCM_16_LE, 24000))
    with pytest.raises(UsageError, match="not opus"):
        transcoder.convert_packets(b"\xff" * 160)


@pytest.mark.parametrize(("src", "dst", "message"), [
    (AudioFormat(MULAW, 11025), AudioFormat(PCM_16_LE, 24000), "11025 Hz is not supported"),
    (AudioFormat(OPUS, 44100), AudioFormat(PCM_16_LE, 24000), "44100 Hz is not supported"),
    (AudioFormat("G729", 8000), AudioFormat(PCM_16_LE, 24000), "'G729' is not supported"),
    (AudioFormat(MULAW, 8000), AudioFormat(PCM_16_LE, 24000, 6), "6 channels"),
])
def test_constructor_rejects_what_it_cannot_do(src, dst, message):
    with pytest.raises(UsageError, match=message):
        Transcoder(src, dst)


CODES = [kernels.CODE_PCM_16_LE, kernels.CODE_PCM_16_BE, kernels.CODE_PCM_8_U,
         kernels.CODE_PCM_8_S, kernels.CODE_MULAW, kernels.CODE_ALAW]


def run_transcode(implementation, src, frames, in_code, in_channels, out_code, out_channels,
                  in_rate, out_rate):
    filt = design_polyphase(in_rate, out_rate)
    state = np.array([0, filt.down, in_code, in_channels, out_code, out_channels], np.int64)
    xe = np.zeros(filt.history + frames * in_channels, np.float32)
    y = np.zeros(frames * filt.up // filt.down + 2, np.float32)
    out = np.zeros(len(y) * 2 * out_channels, np.uint8)
    n = implementation(src, frames, xe, filt.bank, state, np.zeros(frames, np.float32), y, out)
    return out[:n].tobytes(), state


@pytest.mark.parametrize("in_code", CODES)
@pytest.mark.parametrize("out_code", CODES)
@pytest.mark.parametrize(("in_channels", "out_channels"), [(1, 1), (2, 1), (1, 2)])
def test_fused_kernel_matches_its_numpy_twin_bit_for_bit_at_equal_rates(
        in_code, out_code, in_channels, out_channels):
    width = 2 if in_code <= kernels.CODE_PCM_16_BE else 1
    src = np.random.default_rng(in_code).integers(0, 256, 240 * width * in_channels, np.uint8)
    args = (src.tobytes(), 240, in_code, in_channels, out_code, out_channels, 8000, 8000)
    ours, twin = run_transcode(kernels.transcode, *args), run_transcode(reference.transcode, *args)
    assert ours[0] == twin[0]


@pytest.mark.parametrize(("in_rate", "out_rate"), [(8000, 24000), (24000, 8000), (16000, 24000),
                                                   (48000, 16000)])
def test_fused_kernel_matches_its_numpy_twin_within_one_lsb_when_resampling(in_rate, out_rate):
    speech = pcm_stream(in_rate, 0.04)
    frames = len(speech) // 2
    results = [run_transcode(impl, speech, frames, kernels.CODE_PCM_16_LE, 1,
                             kernels.CODE_PCM_16_LE, 1, in_rate, out_rate)
               for impl in (kernels.transcode, reference.transcode)]
    ours, twin = (np.frombuffer(data, "<i2").astype(int) for data, _ in results)
    assert len(ours) == len(twin) == frames * out_rate // in_rate
    assert np.abs(ours - twin).max() <= 1
    np.testing.assert_array_equal(results[0][1], results[1][1])
