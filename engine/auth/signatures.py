"""RFC 9421 HTTP Message Signatures on the upgrade, as Genesys AudioHook sends them.

Genesys puts its API key in ``X-API-KEY`` and, when the integration has a client secret, signs
the request: ``Signature-Input: sig1=("@request-target" "@authority" "audiohook-organization-id"
"audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="<API key>";nonce="...";
alg="hmac-sha256";created=...;expires=...`` and ``Signature: sig1=:<base64>:``, the HMAC-SHA256
key being the base64-decoded client secret (purecloudlabs/audiohook-reference-implementation,
``app/src/authenticator.ts`` and ``app/audiohook/src/httpsignature/signature-verifier.ts``). The
structured fields and the signature base are the ``http-message-signatures`` library's; this
module adds the AudioHook rules: the key id must be the ``X-API-KEY`` value, the nonce at least
``min_nonce`` characters and never seen before within the signature's lifetime, ``created`` no
older than ``max_age_s``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from http_message_signatures import HTTPMessageVerifier, HTTPSignatureKeyResolver, algorithms
from http_message_signatures.exceptions import HTTPMessageSignaturesException

from engine.auth.schemes import MISSING, AuthScheme, Denial

#: clock difference tolerated between Genesys and us (the reference allows 3 s)
CLOCK_SKEW_S = 3.0
#: nonces remembered at most (each for its signature's lifetime): a flood cannot grow memory
NONCE_CAPACITY = 65536


class NonceMemory:
    """Nonces seen recently, each until ``forget_at``; the oldest go first past the capacity.

    Give one to every check of a server (it is what turns a replayed signature into a refusal).
    """

    def __init__(self, capacity: int = NONCE_CAPACITY) -> None:
        self.capacity = capacity
        self._until: OrderedDict[str, float] = OrderedDict()

    def seen(self, nonce: str, now: float, forget_at: float) -> bool:
        """Whether ``nonce`` was seen and not yet forgotten; remembers it until ``forget_at`` if not."""
        until = self._until
        while until:  # forget the expired ones (kept in arrival order; lifetimes are alike)
            oldest, expiry = next(iter(until.items()))
            if expiry > now:
                break
            del until[oldest]
        if nonce in until:
            return True
        until[nonce] = forget_at
        while len(until) > self.capacity:
            until.popitem(last=False)
        return False

    def __len__(self) -> int:
        return len(self._until)


@dataclass(frozen=True)
class _Request:
    """The upgrade as the library reads a request: method, absolute URL, headers, target."""

    method: str
    url: str
    headers: Any
    request_target: str


class _Secrets(HTTPSignatureKeyResolver):
    def __init__(self, secret: bytes) -> None:
        self.secret = secret

    def resolve_public_key(self, key_id: str) -> bytes:
        return self.secret

    def resolve_private_key(self, key_id: str) -> bytes:
        return self.secret


def decode_secret(text: str) -> bytes:
    """A Genesys client secret (base64, as the Genesys admin UI shows it) as key bytes.

    Raises ``ValueError`` when it is not base64: the config check reports it.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a client secret is base64 text, as Genesys shows it") from None


def check_http_message_signature(
    headers: Mapping[str, str],
    target: str,
    url: str,
    scheme: AuthScheme,
    keys: Iterable[tuple[str, bytes | None]],
    nonces: NonceMemory,
    now: float,
) -> Denial | None:
    """Check ``X-API-KEY`` (or ``scheme.key_header``) against ``keys`` (API key, client secret
    or ``None`` for a key configured without one) and, for a key with a secret, the request's
    signature. ``headers`` is case-insensitive (the upgrade's), ``target`` the request target
    as sent, ``url`` the absolute URL the client dialled (its authority is ``@authority``).
    """
    api_key = headers.get(scheme.key_header.lower())
    if not api_key:
        return Denial(MISSING, f"no {scheme.key_header}")
    secret: bytes | None = None
    known = False
    for key, key_secret in keys:  # all compared: the time does not say which key matched
        if hmac.compare_digest(api_key.encode(), key.encode()):
            known, secret = True, key_secret
    if not known:
        return Denial("invalid", f"unknown {scheme.key_header}")
    signed = "signature-input" in headers or "signature" in headers
    if secret is None:
        return None  # the key alone is the credential
    if not signed:
        return Denial(MISSING, "the request is not signed")
    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.HMAC_SHA256, key_resolver=_Secrets(secret))
    request = _Request("GET", url, headers, target)
    try:
        results = verifier.verify(request, max_age=None, require_components=scheme.components)
    except HTTPMessageSignaturesException as exc:  # InvalidSignature included
        text = str(exc)
        reason = "expired" if "past" in text else "invalid"
        return Denial(reason, f"signature: {text[:120]}")
    except Exception as exc:  # a malformed field the library does not anticipate is still a refusal
        return Denial("malformed", f"signature: {type(exc).__name__}")
    params = results[0].parameters
    if params.get("keyid") != api_key:
        return Denial("invalid", f"signature keyid is not the {scheme.key_header}")
    created = params.get("created")
    if not isinstance(created, int):
        return Denial("malformed", "signature has no created time")
    if created > now + CLOCK_SKEW_S:
        return Denial("invalid", "signature created in the future")
    if created + scheme.max_age_s < now - CLOCK_SKEW_S:
        return Denial("expired", f"signature older than {scheme.max_age_s:g} s")
    expires = params.get("expires")
    if isinstance(expires, int) and expires < now - CLOCK_SKEW_S:
        return Denial("expired", "signature expired")
    nonce = params.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < scheme.min_nonce:
        return Denial("malformed", f"signature nonce shorter than {scheme.min_nonce}")
    if nonces.seen(nonce, now, created + scheme.max_age_s + 2 * CLOCK_SKEW_S):
        return Denial("replayed", "signature nonce seen before")
    return None
