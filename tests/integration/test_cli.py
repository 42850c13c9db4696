"""`callbridge serve` and `callbridge call` as separate processes, the README quick start:
a whole call through the embedded echo AI, then SIGHUP with a broken spec (rejected, located,
old specs kept), then SIGTERM (drain and exit 0)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from engine.dsp.resample import Resampler
from engine.io.wav import best_correlation, read_wav, speechlike, write_wav
from tests.integration.helpers import ServeProcess

ROOT = Path(__file__).resolve().parents[2]



def call(port: int, wav_in: Path, wav_out: Path) -> subprocess.CompletedProcess[str]:
    url = f"ws://127.0.0.1:{port}/ws-adapter/twilio/inbound/1/1/+14155550100?caller_id=+14155550123"
    return subprocess.run([sys.executable, "-m", "engine", "call", "--provider", "twilio", "--audio", str(wav_in),
                           "--out", str(wav_out), "--dtmf", "1#", "--tail", "0.6", url],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_serve_and_call_in_two_processes(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    config = tmp_path / "callbridge.yaml"
    config.write_text("listen: {host: 127.0.0.1, port: 0}\nspecs: specs\nlimits: {drain_timeout_ms: 3000}\n")
    said = speechlike(16000, 1.5)  # 16 kHz: the caller side resamples to Twilio's 8 kHz
    write_wav(tmp_path / "in.wav", said, 16000)
    server = ServeProcess(config)
    try:
        port = int(str(server.wait_for("server.listening")["port"]))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            assert r.status == 200
        done = call(port, tmp_path / "in.wav", tmp_path / "out.wav")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "frames sent" in done.stdout and "Traceback" not in done.stderr
        heard, rate = read_wav(tmp_path / "out.wav")
        assert rate == 8000
        reference = Resampler(16000, 8000).process(said)
        corr, _ = best_correlation(reference, heard, 4000)
        assert corr >= 0.9, corr
        server.wait_for("call.ended")

        # SIGHUP with a broken spec: rejected with its location, the old specs stay in force
        twilio = specs / "providers" / "twilio.yaml"
        twilio.write_text(twilio.read_text().replace("transport: json", "transport: carrier-pigeon"))
        server.proc.send_signal(signal.SIGHUP)
        rejected = server.wait_for("reload.rejected")
        assert "twilio.yaml:" in str(rejected["message"]) and "$.transport" in str(rejected["message"])
        again = call(port, tmp_path / "in.wav", tmp_path / "out2.wav")
        assert again.returncode == 0, again.stdout + again.stderr

        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=20) == 0
        server.wait_for("server.stopped")
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_bad_config_is_reported_without_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("listen:\n  port: eighty\n")
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert "bad.yaml:2:" in done.stderr and "$.listen.port" in done.stderr
    assert "Traceback" not in done.stderr


def test_call_against_nothing_says_so(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "call", "--provider", "twilio", "--seconds", "0.2",
                           "ws://127.0.0.1:9/ws-adapter/twilio/inbound/1/1/+14155550100"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1
    assert done.stderr.startswith("callbridge call: cannot connect") and "Traceback" not in done.stderr



def test_call_signs_like_twilio_over_wss(tmp_path: Path) -> None:
    """The operator's check of a front door: ``serve`` with TLS and a Twilio token; ``call``
    signs with ``--twilio-token``, passes the caller as a <Parameter>, trusts the test CA."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "tls.key")
    (tmp_path / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    config = tmp_path / "callbridge.yaml"
    config.write_text("listen: {host: 127.0.0.1, port: 0, tls: {cert: tls.crt, key: tls.key}}\n"
                      "platforms:\n  twilio:\n    auth:\n      twilio_signature: {token: cli-test-token}\n")
    server = ServeProcess(config)
    try:
        port = int(str(server.wait_for("server.listening")["port"]))
        url = f"wss://127.0.0.1:{port}/ws-adapter/twilio/inbound/1/1/+14155550100"
        base = [sys.executable, "-m", "engine", "call", "--provider", "twilio", "--seconds", "0.4", "--tail", "0.2",
                "--cafile", str(tmp_path / "ca.pem")]
        signed = subprocess.run([*base, "--twilio-token", "cli-test-token", "--param", "caller_id=+919701966915", url],
                                capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert signed.returncode == 0, signed.stdout + signed.stderr
        unsigned = subprocess.run([*base, url], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert unsigned.returncode == 1 and "HTTP 401" in unsigned.stderr and "Traceback" not in unsigned.stderr
        server.wait_for("auth.refused")
        codes = [e.get("code") for e in server.seen]
        assert "call.ended" in codes and "call.no_caller_number" not in codes  # the number came as the <Parameter>
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(timeout=20)


def test_tls_flags_go_together() -> None:
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--port", "0", "--tls-cert", "x.pem"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 1 and "--tls-cert and --tls-key go together" in done.stderr
    missing = subprocess.run([sys.executable, "-m", "engine", "serve", "--port", "0", "--tls-cert", "nope.pem",
                              "--tls-key", "nope.key"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert missing.returncode == 1 and "nope.pem: no such file" in missing.stderr
    assert "Traceback" not in done.stderr + missing.stderr
