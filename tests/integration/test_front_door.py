"""The front door over real sockets: authenticated upgrades, refusals before any call exists,
TLS with certificates from a test CA (trustme), and the caller's number as Twilio sends it.

Every platform upgrade here is signed or credentialed exactly as that platform does it
(Twilio's own SDK computes the signatures); every refusal is checked for its status, its body
(which names no secret and no provider list), its metric, and that no call was created.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
import trustme
import websockets
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect

from engine.auth.credentials import Credentials
from engine.config import Config, TLSFiles
from engine.io.callsim import CallSim
from engine.io.server import BridgeServer
from engine.io.wav import speechlike
from engine.language.loader import SpecSet

from .helpers import TWILIO_CALL, RecordingAI, bridge_server, config_for, run

TOKEN = "twilio-auth-token-for-tests"
BASIC = ("exotel-key", "exotel-token")
BEARER = "signalwire-bearer-token-0001"
TELNYX = "telnyx-stream-token-0001"
PATH_SECRET = "route-secret-0123456789abcdef"
GENESYS_KEY = "genesys-api-key-0001"
GENESYS_SECRET = b"genesys client secret of 32 bytes"
NUMBER = "+14155550100"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TLSFiles, ssl.SSLContext]]:
    """A server certificate for 127.0.0.1 from a fresh test CA, and a client context trusting it."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    chain, key = folder / "server.pem", folder / "server.key"
    cert.private_key_pem.write_to_path(key)
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    yield TLSFiles(chain, key), client


def _config(ai_url: str, tls: TLSFiles | None = None, **extra: Any) -> Config:
    base = config_for(ai_url)
    platforms = {
        "twilio": Credentials(twilio_tokens=(TOKEN,)),
        "exotel": Credentials(basic=(BASIC,)),
        "signalwire": Credentials(tokens=(BEARER,)),
        "telnyx": Credentials(tokens=(TELNYX,)),
        "genesys": Credentials(api_keys=((GENESYS_KEY, GENESYS_SECRET),)),
        "jambonz": Credentials(allow_from=(ipaddress.ip_network("192.0.2.0/24"),)),
    }
    route = replace(base.routes[0], agent_id=77, auth=Credentials(path_secrets=(PATH_SECRET,)))
    return replace(base, platforms=platforms, tls=tls, routes=(route, *base.routes), **extra)


def _url(server: BridgeServer, provider: str, *, agent: int = 1, secret: str | None = None) -> str:
    scheme = "wss" if server.tls is not None else "ws"
    tail = f"/{secret}" if secret else ""
    return f"{scheme}://127.0.0.1:{server.port}/ws-adapter/{provider}/inbound/{agent}/1/{NUMBER}{tail}"


def _twilio(url: str, token: str = TOKEN) -> dict[str, str]:
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(url, {})}


def _genesys(url: str, *, nonce: str | None = None) -> dict[str, str]:
    class Message:
        method = "GET"

        def __init__(self) -> None:
            self.url = url
            self.headers = {
                "Host": url.split("/")[2],
                "Audiohook-Organization-Id": "d7934305-0972-4844-938e-9060eef73d05",
                "Audiohook-Session-Id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
                "Audiohook-Correlation-Id": "e160e428-53e2-487c-977d-96989bf5c99d",
                "X-API-KEY": GENESYS_KEY,
            }

    message = Message()
    keys = MappingKeyResolver(public_keys={}, private_keys={GENESYS_KEY: GENESYS_SECRET})
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=keys)
    signer.sign(message, key_id=GENESYS_KEY, nonce=nonce or secrets.token_urlsafe(24), label="sig1",
                covered_component_ids=("@request-target", "@authority", "audiohook-organization-id",
                                       "audiohook-session-id", "audiohook-correlation-id", "x-api-key"),
                created=datetime.datetime.now(datetime.UTC))
    return {k: v for k, v in message.headers.items() if k != "Host"}


async def _upgrade(url: str, headers: dict[str, str], client_ssl: ssl.SSLContext | None,
                   subprotocols: tuple[str, ...] = ()) -> tuple[int, str]:
    """Open and close one upgrade: (101, "") when accepted, else (status, body)."""
    extra: dict[str, Any] = {"ssl": client_ssl} if url.startswith("wss") else {}
    try:
        async with connect(url, additional_headers=headers, compression=None, open_timeout=5, proxy=None,
                           subprotocols=list(subprotocols) or None, **extra):  # type: ignore[arg-type]
            return 101, ""
    except websockets.exceptions.InvalidStatus as exc:
        return exc.response.status_code, (exc.response.body or b"").decode()


def _metric(server: BridgeServer, name: str, **labels: str) -> float:
    for family in server.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("over", ["ws", "wss"])
def test_a_twilio_call_signed_like_twilio_is_bridged_with_the_callers_number(
    specs: SpecSet, tls_files: tuple[TLSFiles, ssl.SSLContext], over: str
) -> None:
    """No query string, the caller's number as <Parameter name="caller_id" value="{{From}}"/>:
    the AI's start has it in E.164."""
    files, client = tls_files

    async def body() -> None:
        tls = files if over == "wss" else None
        async with RecordingAI() as ai, bridge_server(specs, _config(ai.url, tls)) as server:
            url = _url(server, "twilio")
            sim = CallSim(specs, "twilio", url, speechlike(8000, 0.6), 8000, transcript=TWILIO_CALL, tail_s=0.3,
                          headers=_twilio(url), ssl=client if tls else None,
                          custom={"caller_id": "+919701966915", "callee_id": NUMBER})
            report = await sim.run()
            await asyncio.sleep(0.2)
            assert report.clean, report.summary()
            start = ai.calls[0].events("start")[0]["start"]
            assert start["callerIdNumber"] == "+919701966915"
            assert start["calleeIdNumber"] == NUMBER
            assert _metric(server, "callbridge_calls_total", provider="twilio", outcome="completed") == 1

    run(body)


@pytest.mark.parametrize("over", ["ws", "wss"])
def test_twilio_upgrades_unsigned_wrongly_signed_or_for_another_url_are_refused(
    specs: SpecSet, tls_files: tuple[TLSFiles, ssl.SSLContext], over: str
) -> None:
    files, client = tls_files
    log: list[str] = []

    async def body() -> None:
        tls = files if over == "wss" else None
        async with RecordingAI() as ai, bridge_server(specs, _config(ai.url, tls), log) as server:
            url = _url(server, "twilio")
            other = url.replace("/inbound/1/", "/inbound/2/")
            cases = [
                ({}, 401, "missing"),
                (_twilio(url, "not-the-token"), 403, "invalid"),
                (_twilio(other), 403, "invalid"),
                ({"X-Twilio-Signature": _twilio(url)["X-Twilio-Signature"][:12]}, 403, "malformed"),
            ]
            for headers, status, reason in cases:
                got, text = await _upgrade(url, headers, client)
                assert got == status, (headers, got, text)
                assert text.strip() in ("authentication required", "forbidden")
                assert TOKEN not in text and "exotel" not in text
                assert _metric(server, "callbridge_auth_failures_total", provider="twilio", reason=reason) >= 1
            assert not server.bridges and not ai.calls
            assert _metric(server, "callbridge_active_calls") == 0
            assert await _upgrade(url, _twilio(url), client) == (101, "")
        assert not any('"call.accepted"' in line and "twilio" in line and "inbound/2" in line for line in log)
        assert all(TOKEN not in line for line in log)

    run(body)


def _credential_cases(server: BridgeServer) -> list[tuple[str, str, dict[str, str], dict[str, str]]]:
    """(name, url, good headers, bad headers) for every other kind of credential."""
    exotel, signalwire, telnyx = _url(server, "exotel"), _url(server, "signalwire"), _url(server, "telnyx")
    basic = "Basic " + base64.b64encode(f"{BASIC[0]}:{BASIC[1]}".encode()).decode()
    wrong_basic = "Basic " + base64.b64encode(f"{BASIC[0]}:guess".encode()).decode()
    genesys = _url(server, "genesys")
    stale = _genesys(genesys)
    return [
        ("exotel basic", exotel, {"Authorization": basic}, {"Authorization": wrong_basic}),
        ("signalwire bearer", signalwire, {"Authorization": f"Bearer {BEARER}"}, {"Authorization": "Bearer nope"}),
        ("telnyx token", telnyx, _telnyx_headers(server, TELNYX), _telnyx_headers(server, "nope")),
        ("genesys signature", genesys, _genesys(genesys), {**stale, "Audiohook-Session-Id": "tampered"}),
    ]


def _telnyx_headers(server: BridgeServer, token: str) -> dict[str, str]:
    scheme = next(s for s in server.specs.providers["telnyx"].auth if s.kind == "token")
    if scheme.query:
        return {}
    value = f"{scheme.prefix} {token}" if scheme.prefix else token
    return {scheme.header: value}


@pytest.mark.parametrize("over", ["ws", "wss"])
def test_every_other_kind_of_credential(specs: SpecSet, tls_files: tuple[TLSFiles, ssl.SSLContext], over: str) -> None:
    files, client = tls_files

    async def body() -> None:
        tls = files if over == "wss" else None
        async with RecordingAI() as ai, bridge_server(specs, _config(ai.url, tls)) as server:
            for name, url, good, bad in _credential_cases(server):
                subprotocols = specs.providers[url.split("/")[4]].connection.subprotocols
                assert (await _upgrade(url, {}, client, subprotocols))[0] == 401, name
                assert (await _upgrade(url, bad, client, subprotocols))[0] == 403, name
                assert (await _upgrade(url, good, client, subprotocols)) == (101, ""), name
            # a route's path secret, for any platform; the secret is one more path part
            route = _url(server, "vonage", agent=77, secret=PATH_SECRET)
            assert (await _upgrade(route, {}, client))[0] == 101
            assert (await _upgrade(route.replace(PATH_SECRET, PATH_SECRET[:-1] + "X"), {}, client))[0] == 403
            assert (await _upgrade(_url(server, "vonage", agent=77), {}, client))[0] == 401
            # an allow-list that loopback is not on
            assert (await _upgrade(_url(server, "jambonz"), {}, client, ("audio.jambonz.org",)))[0] == 403
            assert _metric(server, "callbridge_auth_failures_total", provider="jambonz", reason="source") == 1
            # a replayed Genesys signature: same nonce twice
            genesys = _url(server, "genesys")
            signed = _genesys(genesys, nonce="n" * 24)
            assert (await _upgrade(genesys, signed, client)) == (101, "")
            assert (await _upgrade(genesys, signed, client))[0] == 403
            assert _metric(server, "callbridge_auth_failures_total", provider="genesys", reason="replayed") == 1

    run(body)


def test_the_echo_ai_is_loopback_only(specs: SpecSet) -> None:
    async def body() -> None:
        async with RecordingAI() as ai:
            closed = _config(ai.url, echo_allow_from=(ipaddress.ip_network("192.0.2.0/24"),))
            async with bridge_server(specs, closed) as server:
                status, _ = await _upgrade(f"ws://127.0.0.1:{server.port}/ws/v1/echo", {}, None)
                assert status == 403
                assert _metric(server, "callbridge_auth_failures_total", provider="echo", reason="source") == 1
            async with bridge_server(specs, _config(ai.url)) as server:
                assert (await _upgrade(f"ws://127.0.0.1:{server.port}/ws/v1/echo", {}, None))[0] == 101

    run(body)


def test_auto_detection_admits_only_the_platform_that_authenticated(specs: SpecSet) -> None:
    """``/ws-adapter/auto/...`` is let in for the platforms whose check it passes (here Exotel's
    credentials, and the platforms left open); a call that then turns out to be Twilio's is closed."""
    async def body() -> None:
        async with RecordingAI() as ai, bridge_server(specs, _config(ai.url)) as server:
            auto = _url(server, "auto")
            basic = "Basic " + base64.b64encode(f"{BASIC[0]}:{BASIC[1]}".encode()).decode()
            sim = CallSim(specs, "twilio", auto, speechlike(8000, 0.3), 8000, transcript=TWILIO_CALL,
                          tail_s=0.1, headers={"Authorization": basic})
            report = await sim.run()
            await asyncio.sleep(0.1)
            assert not ai.calls, report.summary()
            assert _metric(server, "callbridge_auth_failures_total", provider="twilio", reason="scheme") == 1
            # signed as Twilio, the same call goes through
            sim = CallSim(specs, "twilio", auto, speechlike(8000, 0.3), 8000, transcript=TWILIO_CALL,
                          tail_s=0.1, headers=_twilio(auto))
            report = await sim.run()
            assert report.clean, report.summary()

    run(body)


def test_tls_sent_to_a_plain_listener_is_logged_once_and_counted(specs: SpecSet) -> None:
    log: list[str] = []

    async def body() -> None:
        async with RecordingAI() as ai, bridge_server(specs, _config(ai.url), log) as server:
            client = ssl.create_default_context()
            for _ in range(3):
                with pytest.raises((ssl.SSLError, OSError, ConnectionError)):
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", server.port, ssl=client), 5)
                    writer.close()
            assert _metric(server, "callbridge_tls_to_plain_listener_total") == 3

    run(body)
    assert sum('"tls.plain_listener"' in line for line in log) == 1


def test_open_platforms_are_named_at_start_up_and_a_missing_caller_number_is_logged(specs: SpecSet) -> None:
    log: list[str] = []

    async def body() -> None:
        async with RecordingAI() as ai, bridge_server(specs, config_for(ai.url), log) as server:
            # Twilio's way, but no caller_id parameter and no query string: nothing to give the AI
            url = f"ws://127.0.0.1:{server.port}/ws-adapter/twilio/inbound/1/1/{NUMBER}"
            sim = CallSim(specs, "twilio", url, speechlike(8000, 0.3), 8000, transcript=TWILIO_CALL, tail_s=0.1)
            assert (await sim.run()).clean
            await asyncio.sleep(0.1)

    run(body)
    events = [orjson.loads(line) for line in log]
    (opened,) = [e for e in events if e["code"] in ("auth.open", "auth.open_route")]
    assert "twilio" in opened["platforms"] and "genesys" in opened["platforms"]
    (missing,) = [e for e in events if e["code"] == "call.no_caller_number"]
    assert missing["level"] == "warning" and missing["call_id"]


def test_nothing_is_said_to_be_open_when_every_platform_has_credentials(specs: SpecSet) -> None:
    log: list[str] = []

    async def body() -> None:
        everyone = {name: Credentials(tokens=("t" * 20,)) for name in specs.providers}
        async with RecordingAI() as ai, bridge_server(specs, replace(config_for(ai.url), platforms=everyone), log):
            pass

    run(body)
    assert not [line for line in log if '"auth.open' in line]
