"""Config files: schema errors located like specs, ${ENV} secrets, routing, the shipped example."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import DEFAULT, ECHO_URL, load_config, redact_url
from engine.errors import SpecErrors
from engine.language.loader import SpecSet

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "callbridge.yaml"
    path.write_text(text)
    return path


def test_the_shipped_example_loads(specs: SpecSet) -> None:
    environ = {"ACME_AI_TOKEN": "s3cret", "TWILIO_AUTH_TOKEN": "tw-token-s3cret", "EXOTEL_WS_USER": "u",
               "EXOTEL_WS_PASSWORD": "exo-s3cret", "GENESYS_API_KEY": "gk-s3cret",
               "GENESYS_CLIENT_SECRET": "c2VjcmV0LXNlY3JldC1zZWNyZXQ=", "OUTLET789_SECRET": "outlet-789-s3cret-path"}
    config = load_config(ROOT / "callbridge.example.yaml", environ=environ)
    assert config.routes[0].target.headers == {"Authorization": "Bearer s3cret"}
    assert config.check_specs(specs.ai_providers, specs.providers) == []
    assert sorted(config.platforms) == ["exotel", "genesys", "twilio"]
    assert config.route_auth(1, 789) is not None
    assert config.route_for(123, 456) is config.routes[0].target
    assert config.route_for(1, 789) is config.routes[1].target
    assert config.route_for(5, 5) is not None and config.route_for(5, 5).url == ECHO_URL  # type: ignore[union-attr]
    assert "s3cret" not in repr(config)  # no secret, AI header or credential, reaches a repr


def test_defaults_without_a_file() -> None:
    assert (DEFAULT.host, DEFAULT.port) == ("127.0.0.1", 8765)
    assert DEFAULT.route_for(1, 1) is None  # -> the embedded echo AI


def test_every_mistake_located_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "listen:\n  port: http\nlimits:\n  max_calls: 0\nroutes:\n  - agent_id: 1\n    ai_name: x\n")
    with pytest.raises(SpecErrors) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert any(":2:" in line and "$.listen.port" in line for line in lines), lines
    assert any(":4:" in line and "$.limits.max_calls" in line for line in lines), lines
    assert any("$.routes[0]" in line for line in lines), lines


def test_missing_env_var_is_a_located_error_and_secrets_stay_out(tmp_path: Path) -> None:
    path = write(tmp_path, "routes:\n  - ai: default\n    headers:\n      Authorization: Bearer ${NOPE_TOKEN}\n"
                           "      X-Other: ${SET_TOKEN}\n")
    with pytest.raises(SpecErrors) as info:
        load_config(path, environ={"SET_TOKEN": "topsecret"})
    text = str(info.value)
    assert "callbridge.yaml:4:" in text and "NOPE_TOKEN is not set" in text
    assert "topsecret" not in text


def test_unknown_ai_spec_is_reported_with_its_place(tmp_path: Path, specs: SpecSet) -> None:
    path = write(tmp_path, "routes:\n  - agent_id: 7\n    ai: nosuch\n")
    errors = load_config(path).check_specs(specs.ai_providers)
    assert len(errors) == 1 and "callbridge.yaml:3:" in str(errors[0]) and "'nosuch'" in str(errors[0])


def test_redacted_urls() -> None:
    assert redact_url("wss://u:p@host/x?token=1") == "wss://***@host/x?***"
    assert redact_url("ws://127.0.0.1:1/ai") == "ws://127.0.0.1:1/ai"
