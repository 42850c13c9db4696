"""The upgrade checks against the platforms' own vectors and SDKs.

Twilio: the worked example of twilio.com/docs/usage/security (auth token ``12345``) and
signatures computed by Twilio's own SDK (``twilio.request_validator.RequestValidator``).
Genesys: the AudioHook documentation example verified by purecloudlabs/audiohook-reference-
implementation (app/audiohook/test/httpsignature/signature-verifier.test.ts), and requests
signed by the ``http-message-signatures`` library with the AudioHook rules.
"""

from __future__ import annotations

import base64
import datetime
import secrets

import pytest
from http_message_signatures import HTTPMessageSigner, algorithms
from http_message_signatures.resolvers import MappingKeyResolver
from twilio.request_validator import RequestValidator

from engine.auth.gate import url_spellings
from engine.auth.schemes import AuthScheme, check_basic, check_token, check_twilio_signature
from engine.auth.signatures import NonceMemory, check_http_message_signature

TOKEN = "12345"


# ---------------------------------------------------------------------- Twilio


def test_twilio_documented_example() -> None:
    """The docs' example signs the URL followed by the sorted POST fields; a WebSocket upgrade
    is a GET, so callbridge signs the URL alone, with the same HMAC-SHA1."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    fields = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234",
              "From": "+14158675310", "To": "+18005551212"}
    signed = url + "".join(k + fields[k] for k in sorted(fields))
    assert check_twilio_signature("GvWf1cFY/Q7PnoempGyD5oXAezc=", [signed], [TOKEN]) is None
    assert check_twilio_signature("GvWf1cFY/Q7PnoempGyD5oXAezc=", [url], [TOKEN]) is not None


@pytest.mark.parametrize("url", [
    "wss://voice.example.com/ws-adapter/twilio/inbound/1/2/+14155550100",
    "wss://voice.example.com:8443/ws-adapter/twilio/inbound/1/2/%2B14155550100",
    "wss://voice.example.com/base/path/ws-adapter/twilio/outbound/77/9/919701966915/",
    "wss://voice.example.com/ws-adapter/twilio/inbound/1/2/+14155550100/s3cr3t-path-secret-0001",
])
def test_twilio_sdk_signatures_are_accepted(url: str) -> None:
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    assert check_twilio_signature(signature, url_spellings(url), [TOKEN]) is None
    # the SDK's own validator agrees with the URL spellings tried
    assert RequestValidator(TOKEN).validate(url, {}, signature)


def test_twilio_signature_with_or_without_the_default_port() -> None:
    with_port = "wss://voice.example.com:443/ws-adapter/twilio/inbound/1/2/+14155550100"
    signature = RequestValidator(TOKEN).compute_signature(with_port, {})
    dialled = "wss://voice.example.com/ws-adapter/twilio/inbound/1/2/+14155550100"
    assert check_twilio_signature(signature, url_spellings(dialled), [TOKEN]) is None


def test_twilio_sharedkey_sha256() -> None:
    url = "wss://voice.example.com/ws-adapter/twilio/inbound/1/2/+14155550100"
    signature = RequestValidator("shared-key-secret").compute_signature(url, {}, "HMAC_SHA256")
    settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    assert check_twilio_signature(signature, [url], ["shared-key-secret"], settings) is None
    assert check_twilio_signature(signature, [url], ["shared-key-secret"]).reason == "malformed"  # type: ignore[union-attr]


@pytest.mark.parametrize(("given", "reason"), [
    (None, "missing"),
    ("", "missing"),
    ("not base64 at all!", "malformed"),
    ("GvWf1cFY/Q7Pnoem", "malformed"),  # truncated
])
def test_twilio_bad_signatures(given: str | None, reason: str) -> None:
    denial = check_twilio_signature(given, ["wss://h/x"], [TOKEN])
    assert denial is not None and denial.reason == reason


def test_twilio_wrong_token_wrong_url_and_rotation() -> None:
    url = "wss://voice.example.com/ws-adapter/twilio/inbound/1/2/+14155550100"
    signature = RequestValidator(TOKEN).compute_signature(url, {})
    assert check_twilio_signature(signature, [url], ["other"]).reason == "invalid"  # type: ignore[union-attr]
    other = url.replace("/1/2/", "/1/3/")
    assert check_twilio_signature(signature, url_spellings(other), [TOKEN]).reason == "invalid"  # type: ignore[union-attr]
    assert check_twilio_signature(signature, [url], ["secondary", TOKEN]) is None  # either token of a rotation


# ---------------------------------------------------------------------- token and Basic


def test_bearer_token() -> None:
    scheme = AuthScheme("token", header="Authorization", prefix="Bearer")
    assert check_token("Bearer abc123", scheme, ["abc123"]) is None
    assert check_token("bearer   abc123 ", scheme, ["abc123"]) is None
    assert check_token("Bearer abc12", scheme, ["abc123"]).reason == "invalid"  # type: ignore[union-attr]
    assert check_token("abc123", scheme, ["abc123"]).reason == "malformed"  # type: ignore[union-attr]
    assert check_token(None, scheme, ["abc123"]).reason == "missing"  # type: ignore[union-attr]


def test_basic() -> None:
    good = "Basic " + base64.b64encode(b"key:token").decode()
    assert check_basic(good, [("key", "token")]) is None
    assert check_basic(good, [("key", "other")]).reason == "invalid"  # type: ignore[union-attr]
    assert check_basic("Basic " + base64.b64encode(b"key:tok").decode(), [("key", "token")]).reason == "invalid"  # type: ignore[union-attr]
    assert check_basic("Basic !!!", [("key", "token")]).reason == "malformed"  # type: ignore[union-attr]
    assert check_basic("Basic " + base64.b64encode(b"nocolon").decode(), [("a", "b")]).reason == "malformed"  # type: ignore[union-attr]
    assert check_basic("Bearer x", [("a", "b")]).reason == "malformed"  # type: ignore[union-attr]
    assert check_basic(None, [("a", "b")]).reason == "missing"  # type: ignore[union-attr]


# ---------------------------------------------------------------------- Genesys AudioHook

AUDIOHOOK = AuthScheme("http_message_signature")
DOC_KEY = "SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh"
DOC_SECRET = base64.b64decode("TXlTdXBlclNlY3JldEtleVRlbGxOby0xITJAMyM0JDU=")
DOC_HEADERS = {
    "host": "audiohook.example.com",
    "audiohook-organization-id": "d7934305-0972-4844-938e-9060eef73d05",
    "audiohook-session-id": "30b0e395-84d3-4570-ac13-9a62d8f514c0",
    "audiohook-correlation-id": "e160e428-53e2-487c-977d-96989bf5c99d",
    "x-api-key": DOC_KEY,
    "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VYBuI8TgMFt2GRDkDuJh4=:",
    "signature-input": 'sig1=("@request-target" "@authority" "audiohook-organization-id" "audiohook-session-id" '
    '"audiohook-correlation-id" "x-api-key");keyid="SGVsbG8sIEkgYW0gdGhlIEFQSSBrZXkh";'
    'nonce="VGhpc0lzQVVuaXF1ZU5vbmNl";alg="hmac-sha256";created=1641013200;expires=3282026430',
}
DOC_TARGET = "/api/v1/voicebiometrics/ws"
DOC_URL = "wss://audiohook.example.com" + DOC_TARGET
DOC_CREATED = 1641013200


def _check(headers: dict[str, str], *, now: float = DOC_CREATED + 1, target: str = DOC_TARGET,
           url: str = DOC_URL, keys: list[tuple[str, bytes | None]] | None = None,
           nonces: NonceMemory | None = None) -> str | None:
    denial = check_http_message_signature(
        headers, target, url, AUDIOHOOK, keys if keys is not None else [(DOC_KEY, DOC_SECRET)],
        nonces if nonces is not None else NonceMemory(), now,
    )
    return None if denial is None else denial.reason


def test_audiohook_documentation_example_verifies() -> None:
    assert _check(dict(DOC_HEADERS)) is None


def test_audiohook_example_refusals() -> None:
    assert _check(dict(DOC_HEADERS), keys=[(DOC_KEY, b"wrong secret")]) == "invalid"
    assert _check(dict(DOC_HEADERS), keys=[("another-key", DOC_SECRET)]) == "invalid"
    assert _check(dict(DOC_HEADERS), now=DOC_CREATED + 60) == "expired"  # replayed a minute later
    assert _check(dict(DOC_HEADERS), target="/other/path") == "invalid"  # signed for another URL
    assert _check(dict(DOC_HEADERS), url="wss://elsewhere.example.com" + DOC_TARGET) == "invalid"
    assert _check({**DOC_HEADERS, "audiohook-session-id": "f" * 36}) == "invalid"
    truncated = {**DOC_HEADERS, "signature": "sig1=:NZBwyBHRRyRoeLqy1IzOa9VY:"}
    assert _check(truncated) == "invalid"
    assert _check({k: v for k, v in DOC_HEADERS.items() if k not in ("signature", "signature-input")}) == "missing"
    assert _check({k: v for k, v in DOC_HEADERS.items() if k != "x-api-key"}) == "missing"
    assert _check({**DOC_HEADERS, "signature-input": "sig1=(((garbage"}) == "invalid"


def test_audiohook_nonce_is_single_use() -> None:
    nonces = NonceMemory()
    assert _check(dict(DOC_HEADERS), nonces=nonces) is None
    assert _check(dict(DOC_HEADERS), nonces=nonces) == "replayed"


def test_audiohook_api_key_alone_without_a_client_secret() -> None:
    unsigned = {k: v for k, v in DOC_HEADERS.items() if k not in ("signature", "signature-input")}
    assert _check(unsigned, keys=[(DOC_KEY, None)]) is None
    assert _check({**unsigned, "x-api-key": "guess"}, keys=[(DOC_KEY, None)]) == "invalid"


class _Message:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.method, self.url, self.headers = "GET", url, headers


def _signed(nonce: str, *, components: tuple[str, ...] = AUDIOHOOK.components, keyid: str = DOC_KEY,
            created: datetime.datetime | None = None) -> dict[str, str]:
    headers = {k: v for k, v in DOC_HEADERS.items() if k not in ("signature", "signature-input")}
    message = _Message(DOC_URL, headers)
    signer = HTTPMessageSigner(signature_algorithm=algorithms.HMAC_SHA256,
                               key_resolver=MappingKeyResolver(public_keys={}, private_keys={keyid: DOC_SECRET}))
    signer.sign(message, key_id=keyid, nonce=nonce, label="sig1", covered_component_ids=components,
                created=created or datetime.datetime.now(datetime.UTC))
    return {name.lower(): value for name, value in message.headers.items()}


def test_audiohook_rules_on_freshly_signed_requests() -> None:
    import time

    now = time.time()
    assert _check(_signed(secrets.token_urlsafe(24)), now=now) is None
    assert _check(_signed("short"), now=now) == "malformed"  # nonce under 22 characters
    partial = _signed(secrets.token_urlsafe(24), components=("@request-target", "@authority", "x-api-key"))
    assert _check(partial, now=now) == "invalid"  # does not cover the AudioHook headers
    assert _check(_signed(secrets.token_urlsafe(24), keyid="not-the-api-key"), now=now,
                  keys=[(DOC_KEY, DOC_SECRET)]) == "invalid"


def test_nonce_memory_is_bounded() -> None:
    memory = NonceMemory(capacity=100)
    for i in range(1000):
        assert not memory.seen(f"n{i}", 0.0, 10.0)
    assert len(memory) == 100
    assert not memory.seen("fresh", 11.0, 20.0)  # everything older forgotten once expired
    assert len(memory) == 1
