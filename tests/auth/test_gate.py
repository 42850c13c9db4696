"""Which credentials apply to an upgrade, and the config that holds them."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

import pytest
from twilio.request_validator import RequestValidator

from engine.auth.credentials import Credentials
from engine.auth.gate import Gate, Upgrade
from engine.auth.schemes import AuthScheme
from engine.config import load_config
from engine.errors import SpecErrors

TWILIO = (AuthScheme("twilio_signature", header="X-Twilio-Signature"),)
BASIC = (AuthScheme("basic", header="Authorization"),)
TARGET = "/ws-adapter/twilio/inbound/1/2/+14155550100"


def _up(headers: dict[str, str] | None = None, peer: str = "198.51.100.7", *, target: str = TARGET,
        secret: str | None = None, tls: bool = True) -> Upgrade:
    raw = [("Host", "voice.example.com"), *(headers or {}).items()]
    return Upgrade.from_request(target, raw, peer, tls=tls, now=0.0, path_secret=secret)


def _net(*texts: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


def test_open_when_nothing_is_configured() -> None:
    gate = Gate({})
    assert gate.check("twilio", TWILIO, gate.credentials("twilio", None), _up()) is None


def test_twilio_signature_over_the_url_dialled() -> None:
    creds = Credentials(twilio_tokens=("tok",))
    gate = Gate({"twilio": creds})
    url = "wss://voice.example.com" + TARGET
    good = {"X-Twilio-Signature": RequestValidator("tok").compute_signature(url, {})}
    assert gate.check("twilio", TWILIO, creds, _up(good)) is None
    assert gate.check("twilio", TWILIO, creds, _up()).status == 401  # type: ignore[union-attr]
    assert gate.check("twilio", TWILIO, creds, _up({"X-Twilio-Signature": "AAAA" * 7})).status == 403  # type: ignore[union-attr]


def test_public_url_and_trusted_proxies_rebuild_the_url() -> None:
    creds = Credentials(twilio_tokens=("tok",))
    url = "wss://public.example.com/prefix" + TARGET
    signature = {"X-Twilio-Signature": RequestValidator("tok").compute_signature(url, {})}
    behind = Gate({}, public_url="wss://public.example.com/prefix/")
    assert behind.check("twilio", TWILIO, creds, _up(signature)) is None
    forwarded = {**signature, "X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example.com"}
    proxied = Gate({}, trusted_proxies=_net("10.0.0.0/8"))
    # X-Forwarded-Host is believed from a trusted proxy only (and the prefix is not in it)
    url_no_prefix = "wss://public.example.com" + TARGET
    signed = {**forwarded, "X-Twilio-Signature": RequestValidator("tok").compute_signature(url_no_prefix, {})}
    assert proxied.check("twilio", TWILIO, creds, _up(signed, peer="10.1.2.3", tls=False)) is None
    assert proxied.check("twilio", TWILIO, creds, _up(signed, peer="203.0.113.9", tls=False)) is not None


def test_allow_from_reads_forwarded_for_from_trusted_proxies_only() -> None:
    creds = Credentials(allow_from=_net("203.0.113.0/24"))
    gate = Gate({}, trusted_proxies=_net("10.0.0.0/8"))
    assert gate.check("exotel", BASIC, creds, _up(peer="203.0.113.5")) is None
    assert gate.check("exotel", BASIC, creds, _up(peer="198.51.100.1")).reason == "source"  # type: ignore[union-attr]
    via_proxy = {"X-Forwarded-For": "203.0.113.5, 10.0.0.2"}
    assert gate.check("exotel", BASIC, creds, _up(via_proxy, peer="10.0.0.1")) is None
    spoofed = {"X-Forwarded-For": "203.0.113.5"}
    assert gate.check("exotel", BASIC, creds, _up(spoofed, peer="198.51.100.1")).reason == "source"  # type: ignore[union-attr]
    # the rightmost untrusted hop counts, not whatever the client wrote first
    chained = {"X-Forwarded-For": "203.0.113.5, 198.51.100.1"}
    assert gate.check("exotel", BASIC, creds, _up(chained, peer="10.0.0.1")).reason == "source"  # type: ignore[union-attr]
    assert gate.check("exotel", BASIC, creds, _up(peer="::ffff:203.0.113.5")) is None


def test_allow_from_and_credentials_both_apply() -> None:
    creds = Credentials(basic=(("u", "p"),), allow_from=_net("203.0.113.0/24"))
    good = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    gate = Gate({})
    assert gate.check("exotel", BASIC, creds, _up(good, peer="203.0.113.5")) is None
    assert gate.check("exotel", BASIC, creds, _up(good, peer="198.51.100.1")).reason == "source"  # type: ignore[union-attr]
    assert gate.check("exotel", BASIC, creds, _up(peer="203.0.113.5")).reason == "missing"  # type: ignore[union-attr]


def test_a_route_replaces_the_platform_and_path_secrets_work_for_any_platform() -> None:
    platform = Credentials(twilio_tokens=("tok",))
    route = Credentials(path_secrets=("0123456789abcdef-route",))
    gate = Gate({"twilio": platform})
    assert gate.credentials("twilio", route) is route
    assert gate.credentials("twilio", None) is platform
    assert gate.check("twilio", TWILIO, route, _up(secret="0123456789abcdef-route")) is None
    assert gate.check("twilio", TWILIO, route, _up(secret="0123456789abcdef-routX")).reason == "invalid"  # type: ignore[union-attr]
    assert gate.check("twilio", TWILIO, route, _up()).reason == "missing"  # type: ignore[union-attr]


def test_credentials_the_platform_cannot_present_refuse() -> None:
    creds = Credentials(basic=(("u", "p"),))
    denial = Gate({}).check("twilio", TWILIO, creds, _up())
    assert denial is not None and denial.reason == "scheme" and denial.status == 403


def test_echo_is_loopback_only_by_default() -> None:
    gate = Gate({})
    assert gate.check_echo(_up(peer="127.0.0.1")) is None
    assert gate.check_echo(_up(peer="::1")) is None
    assert gate.check_echo(_up(peer="192.0.2.1")).reason == "source"  # type: ignore[union-attr]
    assert Gate({}, echo_allow_from=_net("192.0.2.0/24")).check_echo(_up(peer="192.0.2.1")) is None


# ---------------------------------------------------------------------- the config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callbridge.yaml"
    path.write_text(text)
    return path


def test_config_reads_auth_blocks_from_the_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, """
listen:
  public_url: wss://voice.example.com
  trusted_proxies: [10.0.0.0/8]
  tls: {cert: tls.crt, key: tls.key}
platforms:
  twilio:
    auth:
      twilio_signature: {token: ["${TW_PRIMARY}", "${TW_SECONDARY}"]}
  genesys:
    auth:
      http_message_signature: {api_key: "${GK}", client_secret: "${GS}"}
  exotel:
    auth:
      basic: {username: exo, password: "${EXO_PW}"}
      allow_from: [203.0.113.0/24]
echo:
  allow_from: [127.0.0.1/32, 192.0.2.0/24]
routes:
  - agent_id: 7
    ai: default
    auth:
      path_secret: "${ROUTE_SECRET}"
""")
    env = {"TW_PRIMARY": "tw-primary-7f3a", "TW_SECONDARY": "tw-secondary-91cc", "GK": "genesys-key-55d0",
           "GS": base64.b64encode(b"s" * 32).decode(), "EXO_PW": "exo-pw-0b1e",
           "ROUTE_SECRET": "a-route-secret-of-24-chars"}
    config = load_config(path, env)
    assert config.platforms["twilio"].twilio_tokens == ("tw-primary-7f3a", "tw-secondary-91cc")
    assert config.platforms["genesys"].api_keys == (("genesys-key-55d0", b"s" * 32),)
    assert config.platforms["exotel"].basic == (("exo", "exo-pw-0b1e"),)
    assert config.platforms["exotel"].allow_from == _net("203.0.113.0/24")
    route = config.route_auth(7, 1)
    assert route is not None and route.path_secrets == ("a-route-secret-of-24-chars",)
    assert config.route_auth(8, 1) is None
    assert config.tls is not None and config.tls.cert == tmp_path / "tls.crt"
    assert config.public_url == "wss://voice.example.com"
    assert len(config.echo_allow_from) == 2
    text = repr(config)
    for secret in env.values():
        assert secret not in text  # secrets never reach a repr (nor so a log line)


def test_config_auth_mistakes_are_located(tmp_path: Path) -> None:
    path = _write(tmp_path, """
platforms:
  genesys:
    auth:
      http_message_signature: {api_key: k, client_secret: "not base64!"}
      allow_from: [300.1.1.1/8]
routes:
  - ai: default
    auth:
      path_secret: "short"
""")
    with pytest.raises(SpecErrors) as info:
        load_config(path, {})
    text = str(info.value)
    assert "callbridge.yaml:5:" in text and "base64" in text
    assert "callbridge.yaml:6:" in text and "300.1.1.1/8" in text
    assert "callbridge.yaml:10:" in text and "16-256" in text


def test_config_names_platforms_that_do_not_exist(tmp_path: Path) -> None:
    path = _write(tmp_path, "platforms:\n  twillio:\n    auth:\n      token: {token: x}\n")
    errors = load_config(path, {}).check_specs(["default"], ["twilio", "exotel"])
    assert len(errors) == 1 and "twillio" in str(errors[0]) and ":3:" in str(errors[0])


def test_config_names_credentials_a_platform_cannot_present(tmp_path: Path) -> None:
    from engine.language.loader import load_specs

    specs = load_specs(Path(__file__).resolve().parents[2] / "specs")
    path = _write(tmp_path, "platforms:\n  plivo:\n    auth:\n      token: {token: x}\n"
                            "  twilio:\n    auth:\n      twilio_signature: {token: y}\n")
    errors = load_config(path, {}).check_specs(specs.ai_providers, specs.providers)
    assert [e.path for e in errors] == ["$.platforms.plivo.auth.token"]
    assert "plivo cannot present token" in str(errors[0])
