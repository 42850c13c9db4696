"""The upgrade check: which credentials apply to a request, and whether it presents them.

The server builds one :class:`Gate` from its config and asks :meth:`Gate.check` about every
platform upgrade before accepting it (and :meth:`Gate.check_echo` about the embedded echo AI).
It reads only what it is given (an :class:`Upgrade`: the request's target and headers, the TCP
peer, whether the listener is TLS, the wall-clock time) and answers ``None`` (let it in) or a
:class:`~engine.auth.schemes.Denial`; the server turns that into a 401/403 response, a log line
and a metric. State kept across requests: the Genesys nonces seen (bounded).

Rules, in order:

1. The credentials are the matched route's ``auth`` block, else the platform's
   (``platforms.NAME.auth``); with neither, the platform is open.
2. ``allow_from`` (CIDRs) must contain the client's address: the TCP peer, or, when the peer is
   one of ``listen.trusted_proxies``, the nearest untrusted address in ``X-Forwarded-For``.
3. When the block holds secrets, one scheme must pass: the route's path secret, or one of the
   platform spec's declared schemes (``auth:``) that the block has a secret for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.auth.credentials import LOOPBACK, Credentials, Network, allowed
from engine.auth.schemes import (
    MISSING,
    TWILIO_SETTINGS_HEADER,
    AuthScheme,
    Denial,
    check_basic,
    check_token,
    check_twilio_signature,
)
from engine.auth.signatures import NonceMemory, check_http_message_signature
from engine.io.routing import split_query


@dataclass(frozen=True)
class Upgrade:
    """What the check reads of one upgrade request (build it with :meth:`from_request`)."""

    target: str  # the request target as sent: path and query
    headers: Mapping[str, str]  # lower-case names; repeated fields joined with ", "
    peer: str | None  # the TCP peer's address
    tls: bool  # whether it arrived on a TLS listener
    now: float  # wall-clock (Unix) seconds: signatures carry Unix times
    path_secret: str | None = None  # the route's secret part, when the path has one

    @classmethod
    def from_request(
        cls,
        target: str,
        raw_headers: Iterable[tuple[str, str]],
        peer: str | None,
        *,
        tls: bool,
        now: float,
        path_secret: str | None = None,
    ) -> Upgrade:
        """From the request line's target and its header lines in order."""
        headers: dict[str, str] = {}
        for name, value in raw_headers:
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return cls(target, headers, peer, tls, now, path_secret)


class Gate:
    """Decides upgrades for one server's config (see the module docstring)."""

    def __init__(
        self,
        platforms: Mapping[str, Credentials],
        *,
        public_url: str | None = None,
        trusted_proxies: tuple[Network, ...] = (),
        echo_allow_from: tuple[Network, ...] = LOOPBACK,
    ) -> None:
        self.platforms = platforms
        self.public_url = public_url.rstrip("/") if public_url else None
        self.trusted_proxies = trusted_proxies
        self.echo_allow_from = echo_allow_from
        self.nonces = NonceMemory()

    # ------------------------------------------------------------------ what applies

    def credentials(self, provider: str, route: Credentials | None) -> Credentials | None:
        """The block that applies: the route's own, else the platform's, else ``None`` (open)."""
        return route if route is not None else self.platforms.get(provider)

    def client_address(self, up: Upgrade) -> str | None:
        """The client's address: the peer, unless the peer is a trusted proxy that says whom it
        forwards (``X-Forwarded-For``, read from the right, past every trusted hop)."""
        address = up.peer
        if not (self.trusted_proxies and allowed(address, self.trusted_proxies)):
            return address
        hops = [h.strip() for h in up.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):
            address = hop
            if not allowed(hop, self.trusted_proxies):
                break
        return address

    def dialled_url(self, up: Upgrade) -> str:
        """The URL the client dialled, as a signature covers it: ``listen.public_url`` plus the
        target; else ``X-Forwarded-Proto``/``-Host`` from a trusted proxy; else the ``Host``
        header, ``wss`` on a TLS listener and ``ws`` otherwise."""
        if self.public_url:
            return self.public_url + up.target
        headers = up.headers
        scheme = "wss" if up.tls else "ws"
        host = headers.get("host", "")
        if self.trusted_proxies and allowed(up.peer, self.trusted_proxies):
            proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
            if proto:
                scheme = {"https": "wss", "http": "ws"}.get(proto, proto)
            host = headers.get("x-forwarded-host", "").split(",")[0].strip() or host
        return f"{scheme}://{host}{up.target}"

    # ------------------------------------------------------------------ the checks

    def check(
        self, provider: str, schemes: tuple[AuthScheme, ...], creds: Credentials | None, up: Upgrade
    ) -> Denial | None:
        """``None`` when the upgrade may go on for ``provider`` (whose spec declares
        ``schemes``) under ``creds`` (from :meth:`credentials`), else why not."""
        if creds is None:
            return None
        if creds.allow_from and not allowed(self.client_address(up), creds.allow_from):
            return Denial("source", "the client's address is not in allow_from")
        if not creds.has_secrets:
            return None
        denials: list[Denial] = []
        if creds.path_secrets:
            denial = check_token(up.path_secret, AuthScheme("token", header="path secret"), creds.path_secrets)
            if denial is None:
                return None
            denials.append(denial)
        for scheme in schemes:
            if not creds.for_scheme(scheme.kind):
                continue
            denial = self._check_scheme(scheme, creds, up)
            if denial is None:
                return None
            denials.append(denial)
        if not denials:
            return Denial("scheme", f"{provider} presents none of the configured credentials")
        return next((d for d in denials if d.reason != MISSING), denials[0])

    def check_echo(self, up: Upgrade) -> Denial | None:
        """The embedded echo AI: only from ``echo.allow_from`` (loopback unless configured)."""
        if allowed(self.client_address(up), self.echo_allow_from):
            return None
        return Denial("source", "the echo AI is not open to this address")

    def _check_scheme(self, scheme: AuthScheme, creds: Credentials, up: Upgrade) -> Denial | None:
        headers = up.headers
        kind = scheme.kind
        if kind == "token":
            if scheme.query:
                given = split_query(up.target.partition("?")[2]).get(scheme.query)
            else:
                given = headers.get(scheme.header.lower())
            return check_token(given, scheme, creds.tokens)
        if kind == "basic":
            return check_basic(headers.get("authorization"), creds.basic)
        if kind == "twilio_signature":
            return check_twilio_signature(
                headers.get(scheme.header.lower()),
                url_spellings(self.dialled_url(up)),
                creds.twilio_tokens,
                headers.get(TWILIO_SETTINGS_HEADER.lower()),
            )
        return check_http_message_signature(
            headers, up.target, self.dialled_url(up), scheme, creds.api_keys, self.nonces, up.now
        )


def url_spellings(url: str) -> list[str]:
    """``url`` as Twilio may have signed it: with and without its port, as Twilio's own
    validator tries (and under both ``ws`` and ``wss``, which a TLS terminator in front hides)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    out: list[str] = []
    for scheme in (parts.scheme, {"wss": "ws", "ws": "wss"}.get(parts.scheme, parts.scheme)):
        default = 443 if scheme in ("wss", "https") else 80
        for port in (parts.port, None, default):
            netloc = host if port is None else f"{host}:{port}"
            spelled = parts._replace(scheme=scheme, netloc=netloc).geturl()
            if spelled not in out:
                out.append(spelled)
    return out
