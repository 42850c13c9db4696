"""How a platform proves itself on the upgrade: the schemes a platform spec declares (``auth:``)
and the check each one makes.

Every check is a plain function of the request's parts and the configured secret, returning
``None`` when the credential is good and a :class:`Denial` otherwise. Secrets are compared in
constant time (:func:`hmac.compare_digest`); nothing here logs, reads a clock or keeps state
(the nonce memory of :func:`check_http_message_signature` is passed in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.errors import SpecError

#: the schemes a spec may declare, and the parameters each one takes
SCHEME_PARAMETERS: Mapping[str, frozenset[str]] = {
    "twilio_signature": frozenset({"header"}),
    "token": frozenset({"header", "prefix", "query"}),
    "basic": frozenset(),
    "http_message_signature": frozenset({"key_header", "components", "max_age_s", "min_nonce"}),
}
#: what Genesys AudioHook signs (purecloudlabs/audiohook-reference-implementation, app/src/authenticator.ts)
AUDIOHOOK_COMPONENTS = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
_DEFAULT_HEADER = {"twilio_signature": "X-Twilio-Signature", "token": "Authorization", "basic": "Authorization"}
#: Twilio's header naming the algorithm of a SharedKey signature (twilio-python request_validator.py)
TWILIO_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"


@dataclass(frozen=True, slots=True)
class AuthScheme:
    """One way a platform proves itself, as its spec declares it (see ``docs/spec-language.md``)."""

    kind: str  # a key of SCHEME_PARAMETERS
    header: str = ""  # where the credential travels (twilio_signature, token, basic)
    prefix: str = ""  # token: the word before it ("Bearer")
    query: str = ""  # token: the query parameter it travels in, instead of a header
    key_header: str = "X-API-KEY"  # http_message_signature: the key id's header
    components: tuple[str, ...] = AUDIOHOOK_COMPONENTS
    max_age_s: float = 10.0
    min_nonce: int = 22


@dataclass(frozen=True, slots=True)
class Denial:
    """Why an upgrade is refused: a ``reason`` for the metric label and the log (missing,
    malformed, invalid, expired, replayed, source, scheme) and the HTTP ``status`` to answer."""

    reason: str
    detail: str

    @property
    def status(self) -> int:
        """401 when no credential came at all (the platform may retry with one), else 403."""
        return 401 if self.reason == "missing" else 403


def compile_schemes(
    raw: Sequence[Mapping[str, Any]], error: Callable[[tuple[Any, ...], str], SpecError | None]
) -> tuple[AuthScheme, ...]:
    """A schema-valid ``auth:`` list as :class:`AuthScheme` s; mistakes go to ``error(path, message)``."""
    out: list[AuthScheme] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        kind = item["scheme"]
        path = ("auth", i)
        for key in sorted(set(item) - {"scheme"} - SCHEME_PARAMETERS[kind]):
            allowed = ", ".join(sorted(SCHEME_PARAMETERS[kind])) or "none"
            error((*path, key), f"scheme {kind} takes no {key!r} (its parameters: {allowed})")
        if kind in seen:
            error((*path, "scheme"), f"scheme {kind} is listed twice")
        seen.add(kind)
        if "header" in item and "query" in item:
            error((*path, "query"), "a token travels in a header or a query parameter, not both")
        out.append(
            AuthScheme(
                kind=kind,
                header="" if "query" in item else item.get("header", _DEFAULT_HEADER.get(kind, "")),
                prefix=item.get("prefix", ""),
                query=item.get("query", ""),
                key_header=item.get("key_header", "X-API-KEY"),
                components=tuple(c.lower() for c in item.get("components", AUDIOHOOK_COMPONENTS)),
                max_age_s=float(item.get("max_age_s", 10.0)),
                min_nonce=int(item.get("min_nonce", 22)),
            )
        )
    return tuple(out)


# ---------------------------------------------------------------------- the checks

MISSING = "missing"


def _equal(given: str | bytes, expected: str | bytes) -> bool:
    a = given.encode() if isinstance(given, str) else given
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def check_token(given: str | None, scheme: AuthScheme, tokens: Iterable[str]) -> Denial | None:
    """A shared token, with the scheme's ``prefix`` word (``Bearer``) before it when declared."""
    if not given:
        return Denial(MISSING, f"no {scheme.query or scheme.header}")
    value = given.strip()
    if scheme.prefix:
        word, _, rest = value.partition(" ")
        if word.lower() != scheme.prefix.lower() or not rest.strip():
            return Denial("malformed", f"{scheme.header} is not '{scheme.prefix} <token>'")
        value = rest.strip()
    ok = False
    for token in tokens:  # every one is compared, so the time does not say which matched
        ok |= _equal(value, token)
    return None if ok else Denial("invalid", f"wrong token in {scheme.query or scheme.header}")


def check_basic(given: str | None, pairs: Iterable[tuple[str, str]]) -> Denial | None:
    """HTTP Basic (RFC 7617): ``Authorization: Basic base64(user:password)``."""
    if not given:
        return Denial(MISSING, "no Authorization")
    word, _, encoded = given.strip().partition(" ")
    if word.lower() != "basic":
        return Denial("malformed", "Authorization is not Basic")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return Denial("malformed", "Basic credentials are not base64")
    if b":" not in decoded:
        return Denial("malformed", "Basic credentials have no ':'")
    ok = False
    for user, password in pairs:
        ok |= _equal(decoded, f"{user}:{password}".encode())
    return None if ok else Denial("invalid", "wrong Basic credentials")


def check_twilio_signature(
    given: str | None, urls: Iterable[str], tokens: Iterable[str], settings: str | None = None
) -> Denial | None:
    """Twilio's request signature: base64(HMAC(auth token, URL)) over the exact URL Twilio
    dialled (a WebSocket upgrade is a GET: no parameters are appended). HMAC-SHA1 unless
    ``X-Twilio-Webhooks-Signature-Settings`` names ``algorithm=HMAC_SHA256`` (a SharedKey
    secret). ``urls``: every spelling of that URL to try (with and without its port, as
    Twilio's own validator does)."""
    if not given:
        return Denial(MISSING, "no signature header")
    algorithm = "HMAC_SHA1"
    for part in (settings or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
    digest = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}.get(algorithm)
    if digest is None:
        return Denial("malformed", "unsupported signature algorithm")
    try:
        signature = base64.b64decode(given.strip(), validate=True)
    except (binascii.Error, ValueError):
        return Denial("malformed", "signature is not base64")
    if len(signature) != digest().digest_size:
        return Denial("malformed", "signature has the wrong length")
    ok = False
    for token in tokens:
        key = token.encode()
        for url in urls:
            ok |= hmac.compare_digest(hmac.new(key, url.encode(), digest).digest(), signature)
    return None if ok else Denial("invalid", "signature does not match the URL")
