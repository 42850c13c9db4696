"""What routes a call: the upgrade request's parts (:class:`CallRoute`) and the AI provider
chosen for it (:class:`AITarget`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.language.peer import CompiledPeer


@dataclass(frozen=True)
class CallRoute:
    """What the route and the upgrade request say about a call (the adapter guide's URL)."""

    provider: str
    call_type: str = "inbound"
    agent_id: int = 0
    outlet_id: int = 0
    virtual_number: str = ""
    caller_id: str = ""
    caller_id_given: bool = True  # False: no ?caller_id= came, caller_id is a generated UUID
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    default_region: str = "US"

    def parts(self) -> dict[str, Any]:
        """The route's parts by name: the ``$path`` extraction root and template variables."""
        return {
            "provider": self.provider,
            "call_type": self.call_type,
            "agent_id": self.agent_id,
            "outlet_id": self.outlet_id,
            "virtual_number": self.virtual_number,
            "caller_id": self.caller_id,
        }


@dataclass(frozen=True)
class AITarget:
    """The AI provider routed for a call: its spec plus the config's overrides."""

    peer: CompiledPeer
    url: str | None = None
    headers: Mapping[str, str] | None = None
    account_id: str | None = None
