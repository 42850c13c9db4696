"""Authentication on the WebSocket upgrade, before any call exists.

A platform spec's ``auth:`` list says how that platform proves itself
(:mod:`engine.auth.schemes`: Twilio's request signature, a token, HTTP Basic, RFC 9421 HTTP
Message Signatures as Genesys sends them); the server config's ``auth:`` blocks hold the secrets
(:mod:`engine.auth.credentials`); :class:`~engine.auth.gate.Gate` decides each upgrade.
"""
