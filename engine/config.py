"""The server's config file (``callbridge serve --config FILE``): load, check, route.

Use :func:`load_config` for a file and :data:`DEFAULT` when there is none; both give a frozen
:class:`Config`. A file is YAML, checked against ``engine/language/schemas/config.schema.json``
with every mistake located (``file:line:col: $.path: message``) exactly like specs, and raised
together as :class:`~engine.errors.SpecErrors`. ``${ENV_VAR}`` in a route's ``url``,
``headers`` or ``account_id`` is read from the environment at load time; a variable that is
not set is a located error. Values read from the environment are never put in a message.

:meth:`Config.route_for` picks the AI target of a call: the first route whose ``agent_id``
and/or ``outlet_id`` match (a route naming neither matches every call); with none, the
embedded echo AI. :meth:`Config.check_specs` says which routes name AI specs that do not exist.
See ``callbridge.example.yaml`` for every key.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.auth.credentials import CREDENTIAL_KEYS, LOOPBACK, Credentials, Network
from engine.auth.signatures import decode_secret
from engine.errors import Location, SpecError, SpecErrors
from engine.language.validate import schema_errors
from engine.language.yamlload import JsonPath, LoadedDocument, load_file

#: ``url`` value meaning "the echo AI of this very server" (whatever port it listens on)
ECHO_URL = "@echo"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: what a path secret may hold: it is one segment of the URL the platform dials
_PATH_SAFE = re.compile(r"^[A-Za-z0-9._~-]{16,256}$")


@dataclass(frozen=True)
class Target:
    """An AI provider for a call: a spec name plus the config's overrides."""

    ai: str = "default"
    url: str | None = None  # None: the spec's websocket.url; ECHO_URL: this server's echo
    headers: Mapping[str, str] | None = None  # None: the spec's headers
    account_id: str | None = None
    default_region: str | None = None
    where: Location = field(default=Location("<built-in>"), compare=False)

    def __repr__(self) -> str:  # headers hold secrets: keep them out of reprs and logs
        headers = len(self.headers or {})
        return f"Target(ai={self.ai!r}, url={redact_url(self.url)!r}, headers=<{headers}>)"


@dataclass(frozen=True)
class Route:
    agent_id: int | None
    outlet_id: int | None
    target: Target
    auth: Credentials | None = None  # replaces the platform's credentials for this route's calls

    def matches(self, agent_id: int, outlet_id: int) -> bool:
        return (self.agent_id is None or self.agent_id == agent_id) and (
            self.outlet_id is None or self.outlet_id == outlet_id
        )


@dataclass(frozen=True)
class Limits:
    max_calls: int = 1000
    max_message_bytes: int = 1 << 20
    playout_lead_ms: int | None = None  # None: each platform spec's own
    ai_connect_timeout_s: float = 3.0  # one attempt
    idle_timeout_s: float = 60.0  # no frame from the platform for this long: hang up
    drain_timeout_s: float = 30.0  # SIGTERM: how long live calls may finish on their own


@dataclass(frozen=True)
class AIFailurePolicy:
    retries: int = 2
    backoff_s: float = 0.2  # before the first retry; doubles each time
    backoff_max_s: float = 2.0
    fallback: Target | None = None

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        return float(min(self.backoff_s * (2 ** (retry - 1)), self.backoff_max_s))


@dataclass(frozen=True)
class TLSFiles:
    """``listen.tls``: the PEM certificate chain and private key to serve ``wss://`` with."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8765
    tls: TLSFiles | None = None
    public_url: str | None = None  # the base URL platforms dial, for request signatures
    trusted_proxies: tuple[Network, ...] = ()
    platforms: Mapping[str, Credentials] = field(default_factory=dict)  # platform spec -> credentials
    echo_allow_from: tuple[Network, ...] = LOOPBACK
    specs: Path | None = None
    default_region: str = "US"
    log_level: str = "info"
    show_numbers: bool = False
    limits: Limits = Limits()
    ai_failure: AIFailurePolicy = AIFailurePolicy()
    routes: tuple[Route, ...] = ()
    workers: int = 1  # processes serving the port (engine.io.workers); 1: this process alone
    file: str | None = None

    def route_for(self, agent_id: int, outlet_id: int) -> Target | None:
        """The target of the first matching route, or ``None`` (use the echo AI)."""
        for route in self.routes:
            if route.matches(agent_id, outlet_id):
                return route.target
        return None

    def route_auth(self, agent_id: int, outlet_id: int) -> Credentials | None:
        """The ``auth`` block of the first matching route, if it has one."""
        for route in self.routes:
            if route.matches(agent_id, outlet_id):
                return route.auth
        return None

    def check_specs(self, ai_names: Any, platform_names: Any = None) -> list[SpecError]:
        """Located errors for routes (and the fallback) naming AI specs not in ``ai_names``, and,
        given the platform specs (``platform_names``: name to compiled spec), for ``platforms``
        entries naming none or configuring a credential their platform cannot present."""
        known = sorted(ai_names)
        targets = [r.target for r in self.routes]
        if self.ai_failure.fallback is not None:
            targets.append(self.ai_failure.fallback)
        errors = [
            SpecError(t.where, "$.ai", f"no AI provider spec {t.ai!r} (known: {', '.join(known)})")
            for t in targets
            if t.ai not in ai_names
        ]
        if platform_names is None:
            return errors
        for name, creds in self.platforms.items():
            if name not in platform_names:
                names = ", ".join(sorted(platform_names))
                message = f"no platform spec {name!r} (known: {names})"
                errors.append(SpecError(creds.where, f"$.platforms.{name}", message))
                continue
            declared = {scheme.kind for scheme in getattr(platform_names[name], "auth", ())}
            for kind in CREDENTIAL_KEYS:
                if kind != "path_secret" and creds.for_scheme(kind) and kind not in declared:
                    offered = ", ".join(sorted(declared)) or "none (use path_secret or allow_from)"
                    errors.append(SpecError(
                        creds.where,
                        f"$.platforms.{name}.auth.{kind}",
                        f"{name} cannot present {kind} on the upgrade (its spec declares: {offered})",
                    ))
        return errors


DEFAULT = Config()
ECHO_TARGET = Target("default", ECHO_URL)


def redact_url(url: str | None) -> str | None:
    """A URL fit for logs: the query string (where tokens travel) and any user:password go."""
    if url is None:
        return None
    head = url.split("?", 1)[0]
    scheme, sep, rest = head.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return f"{scheme}{sep}{rest}" + ("?***" if "?" in url else "")


class _Reader:
    """Turns a schema-valid document into a Config, collecting located errors."""

    def __init__(self, doc: LoadedDocument, environ: Mapping[str, str]) -> None:
        self.doc = doc
        self.environ = environ
        self.errors: list[SpecError] = []

    def env(self, value: str, path: JsonPath) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                self.errors.append(self.doc.error(path, f"environment variable {name} is not set"))
                return ""
            return self.environ[name]

        return _ENV.sub(sub, value)

    def target(self, raw: Mapping[str, Any], path: JsonPath) -> Target:
        url = raw.get("url")
        headers = raw.get("headers")
        account = raw.get("account_id")
        return Target(
            ai=raw["ai"],
            url=self.env(url, (*path, "url")) if url is not None else None,
            headers=MappingProxyType(
                {k: self.env(v, (*path, "headers", k)) for k, v in headers.items()}
            )
            if headers is not None
            else None,
            account_id=self.env(account, (*path, "account_id")) if account is not None else None,
            default_region=raw.get("default_region"),
            where=self.doc.location((*path, "ai")),
        )


    def secrets(self, raw: Any, path: JsonPath) -> tuple[str, ...]:
        values = raw if isinstance(raw, list) else [raw]
        return tuple(self.env(v, (*path, i) if isinstance(raw, list) else path) for i, v in enumerate(values))

    def networks(self, raw: list[str], path: JsonPath) -> tuple[Network, ...]:
        out: list[Network] = []
        for i, text in enumerate(raw):
            try:
                out.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                self.errors.append(self.doc.error((*path, i), f"{text!r} is not an address or network (CIDR)"))
        return tuple(out)

    def auth(self, raw: Mapping[str, Any] | None, path: JsonPath) -> Credentials | None:
        """An ``auth:`` block as :class:`Credentials` (secrets resolved, networks parsed)."""
        if raw is None:
            return None
        basic = raw.get("basic", [])
        keys = raw.get("http_message_signature", [])
        pairs: list[tuple[str, str]] = []
        for i, pair in enumerate(basic if isinstance(basic, list) else [basic]):
            at = (*path, "basic", i) if isinstance(basic, list) else (*path, "basic")
            pairs.append((self.env(pair["username"], (*at, "username")), self.env(pair["password"], (*at, "password"))))
        api_keys: list[tuple[str, bytes | None]] = []
        for i, key in enumerate(keys if isinstance(keys, list) else [keys]):
            at = (*path, "http_message_signature", i) if isinstance(keys, list) else (*path, "http_message_signature")
            secret: bytes | None = None
            if "client_secret" in key:
                try:
                    secret = decode_secret(self.env(key["client_secret"], (*at, "client_secret")))
                except ValueError as exc:
                    self.errors.append(self.doc.error((*at, "client_secret"), str(exc)))
            api_keys.append((self.env(key["api_key"], (*at, "api_key")), secret))
        path_secrets = self.secrets(raw["path_secret"], (*path, "path_secret")) if "path_secret" in raw else ()
        for secret_text in path_secrets:
            if secret_text and not _PATH_SAFE.match(secret_text):
                self.errors.append(self.doc.error(
                    (*path, "path_secret"),
                    "a path secret is 16-256 characters of A-Z a-z 0-9 . _ ~ - (it is one segment of a URL)",
                ))
        return Credentials(
            twilio_tokens=self.secrets(raw["twilio_signature"]["token"], (*path, "twilio_signature", "token"))
            if "twilio_signature" in raw
            else (),
            tokens=self.secrets(raw["token"]["token"], (*path, "token", "token")) if "token" in raw else (),
            basic=tuple(pairs),
            api_keys=tuple(api_keys),
            path_secrets=path_secrets,
            allow_from=self.networks(raw.get("allow_from", []), (*path, "allow_from")),
            where=self.doc.location(path),
        )


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, check and resolve a config file; raises :class:`SpecErrors` with every mistake."""
    path = Path(path)
    try:
        doc = load_file(path)
    except SpecError as exc:
        raise SpecErrors([exc]) from None
    if doc.data is None:
        return Config(file=str(path))
    if not isinstance(doc.data, dict):
        raise SpecErrors([doc.error((), "a config file must be a mapping")])
    errors = schema_errors(doc, "config")
    if errors:
        raise SpecErrors(errors)
    reader = _Reader(doc, os.environ if environ is None else environ)
    data: dict[str, Any] = doc.data
    listen = data.get("listen", {})
    log = data.get("log", {})
    lim = data.get("limits", {})
    fail = data.get("ai_failure", {})
    base = Limits()

    def seconds(key: str, default: float) -> float:
        return lim[key] / 1000.0 if key in lim else default

    limits = Limits(
        max_calls=lim.get("max_calls", base.max_calls),
        max_message_bytes=lim.get("max_message_bytes", base.max_message_bytes),
        playout_lead_ms=lim.get("playout_lead_ms"),
        ai_connect_timeout_s=seconds("ai_connect_timeout_ms", base.ai_connect_timeout_s),
        idle_timeout_s=seconds("idle_timeout_ms", base.idle_timeout_s),
        drain_timeout_s=seconds("drain_timeout_ms", base.drain_timeout_s),
    )
    policy_base = AIFailurePolicy()
    policy = AIFailurePolicy(
        retries=fail.get("retries", policy_base.retries),
        backoff_s=fail["backoff_ms"] / 1000.0 if "backoff_ms" in fail else policy_base.backoff_s,
        backoff_max_s=fail["backoff_max_ms"] / 1000.0
        if "backoff_max_ms" in fail
        else policy_base.backoff_max_s,
        fallback=reader.target(fail["fallback"], ("ai_failure", "fallback"))
        if "fallback" in fail
        else None,
    )
    routes = tuple(
        Route(
            raw.get("agent_id"),
            raw.get("outlet_id"),
            reader.target(raw, ("routes", i)),
            reader.auth(raw.get("auth"), ("routes", i, "auth")),
        )
        for i, raw in enumerate(data.get("routes", []))
    )
    platforms = {
        name: creds
        for name, raw in data.get("platforms", {}).items()
        if (creds := reader.auth(raw.get("auth"), ("platforms", name, "auth"))) is not None
    }
    tls = None
    if "tls" in listen:
        tls = TLSFiles(path.parent / listen["tls"]["cert"], path.parent / listen["tls"]["key"])
    trusted = reader.networks(listen.get("trusted_proxies", []), ("listen", "trusted_proxies"))
    echo = data.get("echo", {})
    echo_allow = reader.networks(echo["allow_from"], ("echo", "allow_from")) if "allow_from" in echo else LOOPBACK
    specs = data.get("specs")
    if reader.errors:
        raise SpecErrors(reader.errors)
    return Config(
        host=listen.get("host", DEFAULT.host),
        port=listen.get("port", DEFAULT.port),
        tls=tls,
        public_url=listen.get("public_url"),
        trusted_proxies=trusted,
        platforms=MappingProxyType(platforms),
        echo_allow_from=echo_allow,
        specs=(path.parent / specs) if specs is not None else None,
        default_region=data.get("default_region", DEFAULT.default_region),
        log_level=log.get("level", DEFAULT.log_level),
        show_numbers=log.get("show_numbers", DEFAULT.show_numbers),
        limits=limits,
        ai_failure=policy,
        routes=routes,
        workers=data.get("workers", DEFAULT.workers),
        file=str(path),
    )
