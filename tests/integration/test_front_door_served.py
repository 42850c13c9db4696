"""The front door of a real ``callbridge serve`` process: a flood of refused upgrades costs no
memory, no call and no log beyond a bound; a renewed certificate is served after SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from pathlib import Path

import pytest
import trustme
from twilio.request_validator import RequestValidator

from engine.io.callsim import CallSim
from engine.io.wav import speechlike
from engine.language.loader import SpecSet

from .helpers import TWILIO_CALL, ServeProcess, free_port, run

TOKEN = "twilio-token-for-the-flood-test"
TARGET = "/ws-adapter/twilio/inbound/1/1/+14155550100"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _refused(port: int, signature: str | None) -> int:
    """One raw upgrade request; the HTTP status it got."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {TARGET} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if signature is not None:
        lines.append(f"X-Twilio-Signature: {signature}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    status = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return int(status.split()[1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the server's RSS")
def test_a_thousand_refused_upgrades_cost_nothing(specs: SpecSet, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("CB_TEST_TWILIO_TOKEN", TOKEN)
    config = tmp_path / "callbridge.yaml"
    config.write_text(f"""
listen: {{host: 127.0.0.1, port: {port}}}
limits: {{max_calls: 5}}
platforms:
  twilio:
    auth:
      twilio_signature: {{token: "${{CB_TEST_TWILIO_TOKEN}}"}}
""")
    server = ServeProcess(config, hint="callbridge serve with Twilio signatures")
    try:
        server.wait_for("server.warm")
        pid = server.proc.pid
        bad = RequestValidator("wrong").compute_signature(f"ws://127.0.0.1:{port}{TARGET}", {})

        async def flood(count: int, width: int = 20) -> list[int]:
            statuses: list[int] = []

            async def worker(n: int) -> None:
                for i in range(n):
                    statuses.append(await _refused(port, None if i % 2 else bad))

            await asyncio.gather(*(worker(count // width) for _ in range(width)))
            return statuses

        async def body() -> None:
            await flood(200)  # the allocator's pools settle
            before = _rss_kib(pid)
            url = f"ws://127.0.0.1:{port}{TARGET}"
            sim = CallSim(specs, "twilio", url, speechlike(8000, 2.0), 8000, transcript=TWILIO_CALL, tail_s=0.3,
                          headers={"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url, {})})
            call = asyncio.get_running_loop().create_task(sim.run())
            statuses = await flood(1000)  # more than max_calls many times over: refusals take no slot
            report = await call
            after = _rss_kib(pid)
            assert sorted(set(statuses)) == [401, 403] and len(statuses) == 1000
            assert report.clean, report.summary()  # the clean call beside them stayed clean
            assert abs(after - before) <= 5 * 1024, f"RSS {before} -> {after} KiB"

        run(body, timeout=120)
        summary = server.wait_for("auth.suppressed", timeout=30)  # the rest, counted in one line each
        refused = [e for e in server.seen if e.get("code") == "auth.refused"]
        assert len(refused) <= 2 * 5  # two reasons (missing, invalid), five lines each per window
        assert summary["count"] > 0
        assert all(TOKEN not in str(e) for e in server.seen)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)


def _issue(ca: trustme.CA, folder: Path) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(folder / "tls.key")
    (folder / "tls.crt").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))


def _trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def _healthz(port: int, context: ssl.SSLContext) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return line


def test_tls_certificate_is_renewed_on_sighup(tmp_path: Path) -> None:
    port = free_port()
    first, second = trustme.CA(), trustme.CA()
    _issue(first, tmp_path)
    config = tmp_path / "callbridge.yaml"
    config.write_text(f"listen: {{host: 127.0.0.1, port: {port}, tls: {{cert: tls.crt, key: tls.key}}}}\n")
    server = ServeProcess(config, hint="callbridge serve with listen.tls")
    try:
        listening = server.wait_for("server.listening")
        assert listening["message"].startswith("listening on wss://")
        assert run(lambda: _healthz(port, _trusting(first))).startswith(b"HTTP/1.1 200")
        _issue(second, tmp_path)
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for("reload.done")
        assert run(lambda: _healthz(port, _trusting(second))).startswith(b"HTTP/1.1 200")
        with pytest.raises(ssl.SSLCertVerificationError):
            run(lambda: _healthz(port, _trusting(first)))
        (tmp_path / "tls.key").write_text("not a key\n")  # a broken renewal keeps the old certificate
        server.proc.send_signal(signal.SIGHUP)
        rejected = server.wait_for("reload.rejected")
        assert "tls.key" in rejected["message"] or "cannot load" in rejected["message"]
        assert run(lambda: _healthz(port, _trusting(second))).startswith(b"HTTP/1.1 200")
    finally:
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(30)
