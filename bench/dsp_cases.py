"""The DSP benchmark cases, shared by ``test_bench_dsp.py`` (pytest-benchmark) and
``dsp_report.py`` (timeit table with ratios).

Each case is ``(group, label, make)``: ``make()`` builds the state (streams, buffers, inputs) and
returns the zero-argument callable to time. Inside a group, the first case is the usual choice
that ours is compared with (the baseline of the ratio column); "per frame" means one 20 ms frame
at the input rate, including the creation of the returned object.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import opuslib
import samplerate
import scipy.signal
import soxr

from engine.dsp import g711, kernels
from engine.dsp.formats import MULAW, PCM_16_LE, AudioFormat
from engine.dsp.opus import OpusDecoder, OpusEncoder
from engine.dsp.resample import Resampler
from engine.dsp.transcoder import Transcoder

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # the reference on Python < 3.13; audioop-lts provides it on 3.13+

Case = tuple[str, str, Callable[[], Callable[[], object]]]
RNG = np.random.default_rng(2026)


def speech(rate: int, seconds: float) -> np.ndarray:
    """Laplacian 'speech-like' int16, as in perf-anchors."""
    return np.clip(RNG.laplace(0, 2500, round(rate * seconds)), -32768, 32767).astype(np.int16)


def _g711_cases(seconds: float, tag: str) -> list[Case]:
    pcm = speech(8000, seconds)
    raw = pcm.tobytes()
    codes = {"ulaw": audioop.lin2ulaw(raw, 2), "alaw": audioop.lin2alaw(raw, 2)}
    decode_kernel = {"ulaw": kernels.mulaw_decode, "alaw": kernels.alaw_decode}
    encode_kernel = {"ulaw": kernels.mulaw_encode, "alaw": kernels.alaw_encode}
    decode_oracle = {"ulaw": audioop.ulaw2lin, "alaw": audioop.alaw2lin}
    encode_oracle = {"ulaw": audioop.lin2ulaw, "alaw": audioop.lin2alaw}
    decode_table = {"ulaw": g711.MULAW_DECODE, "alaw": g711.ALAW_DECODE}
    encode_table = {"ulaw": (g711.MULAW_ENCODE, 2), "alaw": (g711.ALAW_ENCODE, 3)}
    cases: list[Case] = []
    for law in ("ulaw", "alaw"):
        data, arr = codes[law], np.frombuffer(codes[law], np.uint8)
        out16, out8 = np.empty(len(pcm), np.int16), np.empty(len(pcm), np.uint8)
        table, (enc_table, shift) = decode_table[law], encode_table[law]
        dk, ek, do, eo = decode_kernel[law], encode_kernel[law], decode_oracle[law], encode_oracle[law]
        cases += [
            (f"{law} decode {tag}", "audioop -> bytes", lambda d=data, f=do: lambda: f(d, 2)),
            (
                f"{law} decode {tag}",
                "numpy table -> ndarray",
                lambda d=data, t=table: lambda: t[np.frombuffer(d, np.uint8)],
            ),
            (f"{law} decode {tag}", "ours: kernel into buffer", lambda a=arr, o=out16, k=dk: lambda: k(a, o)),
            (
                f"{law} decode {tag}",
                "ours: kernel -> bytes",
                lambda d=data, o=out16, k=dk: lambda: o[: k(np.frombuffer(d, np.uint8), o)].tobytes(),
            ),
            (f"{law} encode {tag}", "audioop (bytes in)", lambda r=raw, f=eo: lambda: f(r, 2)),
            (
                f"{law} encode {tag}",
                "numpy table",
                lambda p=pcm, t=enc_table, s=shift: lambda: t[p.view(np.uint16) >> s].tobytes(),
            ),
            (f"{law} encode {tag}", "ours: kernel into buffer", lambda p=pcm, o=out8, k=ek: lambda: k(p, o)),
        ]
    return cases


def _layout_cases() -> list[Case]:
    pcm = speech(8000, 0.02)
    stereo = speech(8000, 0.04)
    raw, raw_stereo = pcm.tobytes(), stereo.tobytes()
    out, out8 = np.empty(2 * len(pcm), np.int16), np.empty(len(pcm), np.uint8)
    u8 = audioop.bias(audioop.lin2lin(raw, 2, 1), 1, 128)
    u8_arr = np.frombuffer(u8, np.uint8)
    return [
        ("byteswap 160", "audioop.byteswap", lambda: lambda: audioop.byteswap(raw, 2)),
        ("byteswap 160", "numpy byteswap", lambda: lambda: pcm.byteswap().tobytes()),
        ("byteswap 160", "ours: kernel", lambda: lambda: kernels.swap_bytes16(pcm, out)),
        ("stereo->mono 160", "audioop.tomono", lambda: lambda: audioop.tomono(raw_stereo, 2, 0.5, 0.5)),
        (
            "stereo->mono 160",
            "numpy",
            lambda: lambda: (stereo.reshape(-1, 2).astype(np.int32).sum(1) >> 1).astype(np.int16),
        ),
        ("stereo->mono 160", "ours: kernel", lambda: lambda: kernels.stereo_to_mono(stereo, out)),
        ("i16->u8 160", "audioop lin2lin+bias", lambda: lambda: audioop.bias(audioop.lin2lin(raw, 2, 1), 1, 128)),
        ("i16->u8 160", "ours: kernel", lambda: lambda: kernels.i16_to_u8(pcm, out8)),
        ("u8->i16 160", "audioop bias+lin2lin", lambda: lambda: audioop.lin2lin(audioop.bias(u8, 1, -128), 1, 2)),
        ("u8->i16 160", "ours: kernel", lambda: lambda: kernels.u8_to_i16(u8_arr, out)),
    ]


RESAMPLE_PAIRS = [
    (8000, 16000),
    (8000, 24000),
    (8000, 48000),
    (16000, 8000),
    (24000, 8000),
    (48000, 8000),
    (16000, 24000),
]


def _resample_cases() -> list[Case]:
    cases: list[Case] = []
    for a, b in RESAMPLE_PAIRS:
        frame = speech(a, 0.02)
        raw = frame.tobytes()
        group = f"resample {a // 1000}k->{b // 1000}k frame"

        def soxr_stream(quality: str, a: int = a, b: int = b, frame: np.ndarray = frame):
            stream = soxr.ResampleStream(a, b, 1, dtype="int16", quality=quality)
            return lambda: stream.resample_chunk(frame)

        def libsamplerate(a: int = a, b: int = b, frame: np.ndarray = frame):
            converter = samplerate.Resampler("sinc_fastest", channels=1)
            return lambda: (converter.process(frame.astype(np.float32) / 32768, b / a) * 32768).astype(np.int16)

        def ratecv(a: int = a, b: int = b, raw: bytes = raw):
            state: list = [None]

            def run() -> bytes:
                out, state[0] = audioop.ratecv(raw, 2, 1, a, b, state[0])
                return out

            return run

        def ours(a: int = a, b: int = b, frame: np.ndarray = frame):
            resampler, out = Resampler(a, b), np.empty(b // 50, np.int16)
            return lambda: resampler.process_into(frame, out)

        def ours_array(a: int = a, b: int = b, frame: np.ndarray = frame):
            resampler = Resampler(a, b)
            return lambda: resampler.process(frame)

        cases += [
            (group, "soxr HQ stream (holds back 40-150 ms)", lambda f=soxr_stream: f("HQ")),
            (group, "soxr QQ stream (no filter)", lambda f=soxr_stream: f("QQ")),
            (group, "libsamplerate sinc_fastest", libsamplerate),
            (
                group,
                "scipy resample_poly (stateless)",
                lambda a=a, b=b, frame=frame: lambda: scipy.signal.resample_poly(frame, b, a),
            ),
            (group, "audioop.ratecv (no filter)", ratecv),
            (group, "ours: process_into", ours),
            (group, "ours: process -> ndarray", ours_array),
        ]
    for a, b in ((8000, 24000), (24000, 8000)):
        long = speech(a, 60.0)
        group = f"resample {a // 1000}k->{b // 1000}k 60 s"
        cases += [
            (group, "soxr.resample HQ", lambda a=a, b=b, x=long: lambda: soxr.resample(x, a, b, quality="HQ")),
            (group, "scipy resample_poly", lambda a=a, b=b, x=long: lambda: scipy.signal.resample_poly(x, b, a)),
            (group, "ours: one call", lambda a=a, b=b, x=long: lambda: Resampler(a, b).process(x)),
        ]
    return cases


def _opus_cases() -> list[Case]:
    cases: list[Case] = []
    for rate in (8000, 16000, 48000):
        frame = speech(rate, 0.02)
        raw = frame.tobytes()
        n = rate // 50
        packet = OpusEncoder(rate, complexity=5).encode(speech(rate, 0.2))[5]

        def opuslib_encoder(rate: int = rate, raw: bytes = raw, n: int = n):
            encoder = opuslib.Encoder(rate, 1, "voip")
            opuslib.api.encoder.encoder_ctl(encoder.encoder_state, opuslib.api.ctl.set_complexity, 5)
            return lambda: encoder.encode(raw, n)

        def ours_encoder(rate: int = rate, frame: np.ndarray = frame):
            encoder = OpusEncoder(rate, complexity=5)
            return lambda: encoder.encode(frame)

        def opuslib_decoder(rate: int = rate, packet: bytes = packet, n: int = n):
            decoder = opuslib.Decoder(rate, 1)
            return lambda: decoder.decode(packet, n)

        def ours_decoder(rate: int = rate, packet: bytes = packet):
            decoder = OpusDecoder(rate)
            return lambda: decoder.decode(packet)

        cases += [
            (f"opus encode {rate // 1000}k c5 frame", "opuslib Encoder.encode", opuslib_encoder),
            (f"opus encode {rate // 1000}k c5 frame", "ours: OpusEncoder.encode", ours_encoder),
            (f"opus decode {rate // 1000}k frame", "opuslib Decoder.decode", opuslib_decoder),
            (f"opus decode {rate // 1000}k frame", "ours: OpusDecoder.decode", ours_decoder),
        ]
    return cases


def _fused_cases() -> list[Case]:
    ulaw = audioop.lin2ulaw(speech(8000, 0.02).tobytes(), 2)
    pcm24 = speech(24000, 0.02).tobytes()
    ulaw8k, pcm24k = AudioFormat(MULAW, 8000), AudioFormat(PCM_16_LE, 24000)

    def up_soxr():
        stream = soxr.ResampleStream(8000, 24000, 1, dtype="int16", quality="HQ")
        return lambda: stream.resample_chunk(np.frombuffer(audioop.ulaw2lin(ulaw, 2), np.int16)).tobytes()

    def up_ratecv():
        state: list = [None]

        def run() -> bytes:
            out, state[0] = audioop.ratecv(audioop.ulaw2lin(ulaw, 2), 2, 1, 8000, 24000, state[0])
            return out

        return run

    def down_soxr():
        stream = soxr.ResampleStream(24000, 8000, 1, dtype="int16", quality="HQ")
        return lambda: audioop.lin2ulaw(stream.resample_chunk(np.frombuffer(pcm24, np.int16)).tobytes(), 2)

    def down_ratecv():
        state: list = [None]

        def run() -> bytes:
            out, state[0] = audioop.ratecv(pcm24, 2, 1, 24000, 8000, state[0])
            return audioop.lin2ulaw(out, 2)

        return run

    def ours(src: AudioFormat, dst: AudioFormat, data: bytes):
        transcoder = Transcoder(src, dst)
        return lambda: transcoder.convert(data)

    up, down = "fused ulaw 8k -> pcm16 24k frame", "fused pcm16 24k -> ulaw 8k frame"
    return [
        (up, "audioop.ulaw2lin + soxr HQ stream", up_soxr),
        (up, "audioop.ulaw2lin + ratecv (no filter)", up_ratecv),
        (up, "ours: Transcoder.convert", lambda: ours(ulaw8k, pcm24k, ulaw)),
        (down, "soxr HQ stream + audioop.lin2ulaw", down_soxr),
        (down, "ratecv (no filter) + lin2ulaw", down_ratecv),
        (down, "ours: Transcoder.convert", lambda: ours(pcm24k, ulaw8k, pcm24)),
    ]


def all_cases() -> list[Case]:
    kernels.warm_up()
    return (
        _fused_cases()
        + _g711_cases(0.02, "frame")
        + _g711_cases(60.0, "60 s")
        + _layout_cases()
        + _resample_cases()
        + _opus_cases()
    )
