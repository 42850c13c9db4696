"""TLS for ``callbridge serve``: the server's context, its reload, and telling TLS from HTTP.

:func:`server_context` builds what ``listen.tls`` (or ``serve --tls-cert/--tls-key``) asks for:
TLS 1.2 or newer, the stdlib's default ciphers, ALPN ``http/1.1``. :func:`reload_certificate`
loads new files into the same context, which every later handshake uses (SIGHUP after a
certificate renewal); live connections keep theirs.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from engine.errors import UsageError


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for ``cert`` (PEM chain) and ``key``; :exc:`UsageError` naming the
    file when one cannot be read or they do not match."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    reload_certificate(context, cert, key)
    return context


def reload_certificate(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Load ``cert`` and ``key`` into ``context`` (new handshakes use them); :exc:`UsageError` when
    they cannot be loaded, leaving the context's previous certificate in force."""
    for label, path in (("certificate", cert), ("key", key)):
        if not Path(path).is_file():
            raise UsageError(f"TLS {label} {path}: no such file")
    try:
        context.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise UsageError(f"TLS certificate {cert} with key {key}: cannot load ({reason})") from None


def loopback_client_context() -> ssl.SSLContext:
    """For the server dialling its own echo AI over ``wss://`` on loopback: no verification
    (its certificate names the public host, not 127.0.0.1, and the peer is this very process)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def is_client_hello(data: bytes) -> bool:
    """Whether the first bytes of a connection are a TLS handshake record (a ClientHello), i.e.
    a ``wss://`` client dialled a plain ``ws://`` listener."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04
