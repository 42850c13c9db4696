"""The secrets an operator configures for the upgrade check, per platform or per route.

A config ``auth:`` block (``platforms.NAME.auth`` or ``routes[i].auth``) becomes one
:class:`Credentials`. Its repr names how many secrets of each kind it holds, never a value.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from engine.errors import Location

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: the scheme names a block may configure besides ``allow_from``
CREDENTIAL_KEYS = ("twilio_signature", "token", "basic", "http_message_signature", "path_secret")
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class Credentials:
    """One ``auth:`` block: the secrets each scheme accepts, and the source networks allowed.

    A scheme with no secrets here is not offered; a block with neither secrets nor
    ``allow_from`` does not exist (the platform or route is open).
    """

    twilio_tokens: tuple[str, ...] = ()
    tokens: tuple[str, ...] = ()
    basic: tuple[tuple[str, str], ...] = ()
    api_keys: tuple[tuple[str, bytes | None], ...] = ()  # (API key, client secret or None)
    path_secrets: tuple[str, ...] = ()
    allow_from: tuple[Network, ...] = ()
    where: Location = field(default=Location("<built-in>"), compare=False)

    def __repr__(self) -> str:
        kinds = [name for name in CREDENTIAL_KEYS if self.for_scheme(name)]
        return f"Credentials({', '.join(kinds) or 'none'}; allow_from={len(self.allow_from)})"

    def for_scheme(self, kind: str) -> tuple[object, ...]:
        """The secrets configured for scheme ``kind`` (empty: the scheme is not offered)."""
        return {
            "twilio_signature": self.twilio_tokens,
            "token": self.tokens,
            "basic": self.basic,
            "http_message_signature": self.api_keys,
            "path_secret": self.path_secrets,
        }.get(kind, ())

    @property
    def has_secrets(self) -> bool:
        """Whether any scheme has a secret (else only ``allow_from`` is checked)."""
        return any(self.for_scheme(name) for name in CREDENTIAL_KEYS)


def allowed(address: str | None, networks: tuple[Network, ...]) -> bool:
    """Whether ``address`` (an IP as text) is inside one of ``networks``."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)
