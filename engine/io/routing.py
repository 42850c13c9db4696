"""The platform's route, checked before the WebSocket upgrade completes.

The adapter guide's route::

    /ws-adapter/{provider}/{call_type}/{agent_id}/{outlet_id}/{virtual_number}?caller_id=...

optionally with a sixth part, a route's path secret (:func:`split_path_secret` takes it off
before the rest is parsed). :func:`parse_adapter_path` returns a :class:`~engine.core.session.CallRoute`, or a
:class:`Refusal` (HTTP status and a one-line body naming the bad part) for the server to send
instead of upgrading. ``caller_id`` defaults to a fresh UUID. A literal ``+`` in the query
stays a ``+`` (platforms put E.164 numbers there unencoded).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from engine.core.session import CallRoute

ADAPTER_PREFIX = "/ws-adapter/"
ECHO_PATH = "/ws/v1/echo"
CALL_TYPES = ("inbound", "outbound")
_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
_INTEGER = re.compile(r"^[0-9]{1,18}$")


@dataclass(frozen=True)
class Refusal:
    """Why a route was refused: the HTTP ``status`` to answer the upgrade with and a one-line
    ``message`` for its body. Send it instead of upgrading."""

    status: int
    message: str


def split_query(query: str) -> dict[str, str]:
    """``a=1&b=+91`` -> ``{"a": "1", "b": "+91"}`` (percent-decoding only; ``+`` is kept)."""
    out: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        out[unquote(key)] = unquote(value)
    return out


def split_path_secret(target: str) -> tuple[str, str | None]:
    """A route with a path secret (``.../{virtual_number}/{secret}``): the target without its
    secret part, and the secret (``None`` when the path has no sixth part)."""
    path, sep, query = target.partition("?")
    if not path.startswith(ADAPTER_PREFIX):
        return target, None
    parts = path[len(ADAPTER_PREFIX) :].rstrip("/").split("/")
    if len(parts) != 6:
        return target, None
    head = ADAPTER_PREFIX + "/".join(parts[:5])
    return head + sep + query, unquote(parts[5])


def parse_adapter_path(
    target: str,
    providers: Iterable[str],
    headers: Mapping[str, str] | None = None,
    default_region: str = "US",
) -> CallRoute | Refusal:
    """Check a request target (path and query) against the adapter route."""
    path, _, query = target.partition("?")
    if not path.startswith(ADAPTER_PREFIX):
        return Refusal(
            404,
            f"no route {path!r}: calls go to {ADAPTER_PREFIX}{{provider}}/{{call_type}}/"
            "{agent_id}/{outlet_id}/{virtual_number}",
        )
    parts = path[len(ADAPTER_PREFIX) :].split("/")
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    names = ("provider", "call_type", "agent_id", "outlet_id", "virtual_number")
    if len(parts) != len(names):
        return Refusal(
            400 if len(parts) > 1 else 404,
            f"expected /ws-adapter/{'/'.join('{' + n + '}' for n in names)}, got {len(parts)} "
            f"part{'s' if len(parts) != 1 else ''} after /ws-adapter/",
        )
    provider, call_type, agent_id, outlet_id, number = (unquote(p) for p in parts)
    if provider not in set(providers):  # the body names no list: a stranger learns nothing
        return Refusal(404, f"unknown provider {provider[:40]!r}")
    if call_type not in CALL_TYPES:
        return Refusal(400, f"call_type must be inbound or outbound, not {call_type!r}")
    if not _INTEGER.match(agent_id):
        return Refusal(400, f"agent_id must be an integer, not {agent_id!r}")
    if not _INTEGER.match(outlet_id):
        return Refusal(400, f"outlet_id must be an integer, not {outlet_id!r}")
    if not _NUMBER.match(number):
        return Refusal(
            400,
            f"virtual_number must be a phone number (digits, optional leading +), not {number!r}",
        )
    params = split_query(query)
    given = params.get("caller_id")
    return CallRoute(
        provider=provider,
        call_type=call_type,
        agent_id=int(agent_id),
        outlet_id=int(outlet_id),
        virtual_number=number,
        caller_id=given or str(uuid.uuid4()),
        caller_id_given=bool(given),
        query=params,
        headers=dict(headers or {}),
        default_region=default_region,
    )
