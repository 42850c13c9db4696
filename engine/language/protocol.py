"""Compile ``specs/protocol.yaml`` into one shared ``transitions`` Machine per leg.

Every (state, event) pair of a leg resolves at compile time to either a :class:`Transition`
(destination, guard, actions) or a :class:`Policy` (ignore, warn, reject, close), kept in the
leg's ``table`` for the tools (``callbridge diagram``, the conformance kit). The same pairs
become the leg's Machine: a legal transition with its guard and actions, followed, where it
has a guard, by the ``else`` policy as the transition tried when the guard says no; every
other pair an internal transition running its policy. The Machine is the one interpreter of
the call's rules: the engine fires an event and the Machine does what the protocol says.

The callbacks are bound explicitly from a :class:`Behaviours` registry (the engine's
implementations of the vocabulary's names, :data:`engine.core.control.BEHAVIOURS` by default).
Media frames are the one exception to firing triggers: each leg's ``media_states`` is derived
from its Machine (the states whose ``media`` trigger runs only the media action), and the
engine reads that set per frame instead.
"""

from __future__ import annotations

import difflib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from transitions import Machine, State

from engine.errors import SpecError, UsageError
from engine.language import vocabulary as vocab
from engine.language.yamlload import JsonPath, LoadedDocument

POLICY_KINDS = ("ignore", "warn", "reject", "close")
DEFAULT_CLOSE_CODE = 1008


@dataclass(frozen=True, slots=True)
class Policy:
    """What happens to an event that is not allowed where it arrives."""

    kind: str
    close_code: int = 0
    reason: str = ""

    def __str__(self) -> str:
        return f"close {self.close_code}" if self.kind == "close" else self.kind


@dataclass(frozen=True, slots=True)
class Transition:
    """An allowed event: where it leads (``None``: stay), its guard and its actions."""

    leg: str
    state: str
    event: str
    dest: str | None
    guard: str | None
    actions: tuple[str, ...]
    otherwise: Policy  # applied when the guard says no


@dataclass(frozen=True)
class Behaviours:
    """The engine's implementations of the vocabulary, as the Machine's callbacks.

    ``actions`` and ``guards`` map each vocabulary name to a callable; ``violation(kind, policy,
    event, guard)`` returns the callback applying ``policy`` to a refused event, or ``None`` when
    there is nothing to do (``ignore``). Every callback is called with the arguments the engine
    fires the trigger with."""

    actions: Mapping[str, Callable[..., None]]
    guards: Mapping[str, Callable[..., bool]]
    violation: Callable[[str, Policy, str, str | None], Callable[..., None] | None]


@dataclass(frozen=True, slots=True)
class EventDef:
    """A canonical event as protocol.yaml declares it: its category and fields."""

    name: str
    category: str
    fields: frozenset[str]
    required: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class TimerDef:
    """A protocol timer: armed while its leg is in one of ``states``, then fires ``timeout``."""

    name: str
    leg: str
    states: frozenset[str]
    after: float  # seconds
    reason: str
    close_code: int


@dataclass(frozen=True, slots=True)
class BridgeRule:
    """Entering one of ``enters`` on ``leg`` runs ``actions`` (which drive the other leg)."""

    leg: str
    enters: tuple[str, ...]
    actions: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class CompiledLeg:
    """One leg of the compiled protocol: its states and roles, every (state, event) pair in
    ``table``, and the shared Machine that interprets them."""

    name: str
    description: str
    initial: str
    final: frozenset[str]
    states: tuple[str, ...]
    state_descriptions: Mapping[str, str]
    roles: Mapping[str, str]  # state -> its declared role (vocabulary.ROLES)
    role_states: Mapping[str, frozenset[str]]  # role -> the states that have it
    peer_events: tuple[str, ...]
    events: tuple[str, ...]  # peer events then this leg's internal events
    table: Mapping[tuple[str, str], Transition | Policy]
    media_states: frozenset[str]
    on_enter: Mapping[str, tuple[str, ...]]
    malformed: Policy
    unknown: Policy
    machine: SharedMachine = field(repr=False, compare=False)

    def fire(self, model: Any, event: str, *args: Any) -> None:
        """Fire ``event`` on ``model`` (a call's leg) through the leg's Machine."""
        self.machine.events[event].trigger(model, *args)

    def in_role(self, state: str, role: str) -> bool:
        """Whether ``state`` has ``role`` (one of :data:`vocabulary.ROLES`): what the engine and
        the tools ask instead of naming a state."""
        return state in self.role_states[role]

    def first_state(self, role: str) -> str:
        """The first state declared with ``role``; :class:`~engine.errors.UsageError` when none has it."""
        for state in self.states:
            if self.roles[state] == role:
                return state
        raise UsageError(f"no state of the {self.name} leg has the role {role!r}")


@dataclass(frozen=True)
class CompiledProtocol:
    """The compiled ``protocol.yaml``: fields, events, both legs, bridge rules and timers."""

    file: str
    fields: Mapping[str, str]
    common_fields: frozenset[str]
    events: Mapping[str, EventDef]
    legs: Mapping[str, CompiledLeg]
    bridge: tuple[BridgeRule, ...]
    timers: tuple[TimerDef, ...]

    def event_fields(self, event: str) -> frozenset[str]:
        """The fields ``event`` may carry: its own and the common ones."""
        return self.events[event].fields | self.common_fields


def _policy(raw: Any) -> Policy:
    if isinstance(raw, dict):
        return Policy("close", int(raw["close"]), str(raw.get("reason", "")))
    if raw == "close":
        return Policy("close", DEFAULT_CLOSE_CODE, "")
    return Policy(str(raw))


class _Checker:
    """Collects located meaning errors while compiling."""

    def __init__(self, doc: LoadedDocument) -> None:
        self.doc = doc
        self.errors: list[SpecError] = []

    def error(self, path: JsonPath, message: str) -> None:
        self.errors.append(self.doc.error(path, message))

    def policy(self, raw: Any, path: JsonPath) -> Policy:
        policy = _policy(raw)
        if policy.kind == "close" and policy.close_code in vocab.RESERVED_CLOSE_CODES:
            self.error(path, f"close code {policy.close_code} is reserved and cannot be sent")
        return policy

    def actions(self, names: list[str], path: JsonPath) -> tuple[str, ...]:
        for index, name in enumerate(names):
            if name not in vocab.ACTIONS:
                close = difflib.get_close_matches(name, list(vocab.ACTIONS), n=1, cutoff=0.7)
                hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(sorted(vocab.ACTIONS))})"
                self.error((*path, index), f"unknown action {name!r}{hint}")
        return tuple(names)


def _compile_events(data: dict[str, Any], check: _Checker) -> dict[str, EventDef]:
    fields = data["fields"]
    common = set(data.get("common_fields", []))
    for index, name in enumerate(data.get("common_fields", [])):
        if name not in fields:
            check.error(("common_fields", index), f"unknown field {name!r}")
    events: dict[str, EventDef] = {}
    for name, raw in data["events"].items():
        declared = raw.get("fields", [])
        for index, fname in enumerate(declared):
            if fname not in fields:
                check.error(("events", name, "fields", index), f"unknown field {fname!r}")
        for index, fname in enumerate(raw.get("required", [])):
            if fname not in set(declared) | common:
                check.error(("events", name, "required", index), f"required field {fname!r} is not a field of {name!r}")
        events[name] = EventDef(
            name, raw["category"], frozenset(declared), tuple(raw.get("required", [])), raw.get("description", "")
        )
    for name in vocab.CANONICAL_EVENTS:
        if name not in events:
            check.error(("events",), f"canonical event {name!r} is not declared")
    for name in data.get("internal_events", {}):
        if name not in vocab.INTERNAL_EVENTS:
            check.error(
                ("internal_events", name),
                f"unknown internal event {name!r} (the engine raises: {', '.join(sorted(vocab.INTERNAL_EVENTS))})",
            )
        if name in events:
            check.error(("internal_events", name), f"{name!r} is already a peer event")
    return events


def _compile_leg(
    leg: str,
    raw: dict[str, Any],
    events: dict[str, EventDef],
    bridge_enter: dict[str, list[str]],
    check: _Checker,
    behaviours: Behaviours,
) -> CompiledLeg | None:
    base: JsonPath = ("legs", leg)
    states = list(raw["states"])
    for index, name in enumerate(raw["peer_events"]):
        if name not in events:
            check.error((*base, "peer_events", index), f"unknown event {name!r}")
    peer_events = tuple(e for e in raw["peer_events"] if e in events)
    leg_events = (*peer_events, *vocab.LEG_INTERNAL_EVENTS[leg])
    if raw["initial"] not in raw["states"]:
        check.error((*base, "initial"), f"initial state {raw['initial']!r} is not a state")
    for index, name in enumerate(raw["final"]):
        if name not in raw["states"]:
            check.error((*base, "final", index), f"final state {name!r} is not a state")
    default = check.policy(raw["default_policy"], (*base, "default_policy")) if "default_policy" in raw else None
    table: dict[tuple[str, str], Transition | Policy] = {}
    on_enter: dict[str, tuple[str, ...]] = {}
    edges: dict[str, set[str]] = {s: set() for s in states}
    media_action = vocab.MEDIA_ACTIONS[leg]
    broken_edges = False
    for state, body in raw["states"].items():
        spath: JsonPath = (*base, "states", state)
        enter = list(check.actions(body.get("on_enter", []), (*spath, "on_enter")))
        on_enter[state] = tuple(enter + bridge_enter.get(state, []))
        otherwise = check.policy(body["otherwise"], (*spath, "otherwise")) if "otherwise" in body else default
        for event, tr in body.get("transitions", {}).items():
            tpath = (*spath, "transitions", event)
            if event not in leg_events:
                check.error(tpath, f"unknown event {event!r} for the {leg} leg (its events: {', '.join(leg_events)})")
                continue
            dest = tr.get("to")
            if dest is not None and dest not in raw["states"]:
                close = difflib.get_close_matches(dest, states, n=1, cutoff=0.7)
                check.error(
                    (*tpath, "to"), f"unknown state {dest!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                )
                broken_edges = True
                continue
            guard = tr.get("guard")
            if guard is not None and guard not in vocab.GUARDS:
                check.error((*tpath, "guard"), f"unknown guard {guard!r} (known: {', '.join(sorted(vocab.GUARDS))})")
                continue
            actions = check.actions(tr.get("actions", []), (*tpath, "actions"))
            if event == "media":
                if dest is not None or guard is not None or set(actions) - {media_action}:
                    check.error(
                        tpath,
                        f"a media transition must stay in its state, have no guard "
                        f"and use only {media_action!r}: media frames never fire triggers",
                    )
            elif media_action in actions:
                check.error((*tpath, "actions"), f"{media_action!r} only runs on media")
            fallback = check.policy(tr["else"], (*tpath, "else")) if "else" in tr else otherwise
            if guard is not None and fallback is None:
                check.error(tpath, "a guarded transition needs `else:` or a state `otherwise:` policy")
            table[(state, event)] = Transition(leg, state, event, dest, guard, actions, fallback or Policy("warn"))
            if dest is not None and dest != state:
                edges[state].add(dest)
        for event, raw_policy in body.get("policies", {}).items():
            ppath = (*spath, "policies", event)
            if event not in leg_events:
                check.error(ppath, f"unknown event {event!r} for the {leg} leg")
            elif (state, event) in table:
                check.error(ppath, f"{event!r} has both a transition and a policy in state {state!r}")
            else:
                table[(state, event)] = check.policy(raw_policy, ppath)
        for event in leg_events:
            if (state, event) not in table:
                if otherwise is None:
                    check.error(
                        spath,
                        f"event {event!r} has neither a transition nor a policy in "
                        f"state {state!r} (add it, or an `otherwise:` policy)",
                    )
                else:
                    table[(state, event)] = otherwise
    # Reachability and ways out.
    final = set(raw["final"])
    if raw["initial"] in edges and not broken_edges:
        seen = {raw["initial"]}
        queue = deque([raw["initial"]])
        while queue:
            for nxt in edges[queue.popleft()]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        for state in states:
            if state not in seen:
                check.error((*base, "states", state), f"state {state!r} is unreachable from {raw['initial']!r}")
    for state in states:
        if state not in final and not edges[state]:
            check.error((*base, "states", state), f"state {state!r} has no way out and is not final")
    for state in final & set(states):
        if edges[state]:
            check.error((*base, "states", state), f"final state {state!r} has transitions to other states")
    roles = {state: raw["states"][state]["role"] for state in states}
    for state in states:
        if (roles[state] == "ended") != (state in final):
            check.error(
                (*base, "states", state, "role"),
                f"state {state!r} is {'final' if state in final else 'not final'}: "
                + ("its role must be 'ended'" if state in final else "only final states have the role 'ended'"),
            )
    if "live" not in roles.values():
        check.error((*base, "states"), "no state has the role 'live': the call could never be up on this leg")
    malformed = check.policy(raw.get("malformed", "warn"), (*base, "malformed"))
    unknown = check.policy(raw.get("unknown", "warn"), (*base, "unknown"))
    if check.errors:
        return None
    machine = _build_machine(leg, raw["initial"], states, table, on_enter, behaviours)
    return CompiledLeg(
        name=leg,
        description=raw.get("description", ""),
        initial=raw["initial"],
        final=frozenset(final),
        states=tuple(states),
        state_descriptions=MappingProxyType({s: raw["states"][s].get("description", "") for s in states}),
        roles=MappingProxyType(roles),
        role_states=MappingProxyType(
            {role: frozenset(s for s in states if roles[s] == role) for role in vocab.ROLES}
        ),
        peer_events=peer_events,
        events=leg_events,
        table=MappingProxyType(table),
        media_states=_media_states(machine, behaviours.actions[media_action]),
        on_enter=MappingProxyType(on_enter),
        malformed=malformed,
        unknown=unknown,
        machine=machine,
    )


class SharedMachine(Machine):
    """A ``transitions.Machine`` shared by every call of a compiled protocol.

    Calls attach their leg as a model and detach it at hang-up. The stock ``add_model`` binds
    some thirty convenience methods (``is_<state>``, ``may_<event>``, one per trigger) onto each
    model and scans the model list; the engine uses none of them (it fires ``events[name]``
    directly), so attaching here is one state assignment and one append.
    """

    def add_model(self, model: Any, initial: Any = None) -> None:
        """Attach ``model`` (a call's leg) in the initial state, or ``initial``."""
        self.set_state(initial if initial is not None else self.initial, model=model)  # type: ignore[arg-type]
        self.models.append(model)


def _build_machine(
    leg: str,
    initial: str,
    states: list[str],
    table: dict[tuple[str, str], Transition | Policy],
    on_enter: dict[str, tuple[str, ...]],
    behaviours: Behaviours,
) -> SharedMachine:
    """One Machine per leg, shared by every call: every pair of the table, with its callbacks."""
    actions, guards, violation = behaviours.actions, behaviours.guards, behaviours.violation

    def policy_callbacks(kind: str, policy: Policy, event: str, guard: str | None) -> list[Callable[..., None]]:
        callback = violation(kind, policy, event, guard)
        return [] if callback is None else [callback]

    machine_states = [State(s, on_enter=[actions[a] for a in on_enter[s]]) for s in states]
    transitions: list[dict[str, Any]] = []
    for (state, event), entry in table.items():
        if isinstance(entry, Transition):
            transitions.append(
                {
                    "trigger": event,
                    "source": state,
                    "dest": entry.dest,  # None = internal transition
                    "conditions": [guards[entry.guard]] if entry.guard else [],
                    "after": [actions[a] for a in entry.actions],
                }
            )
            if entry.guard:  # tried when the guard says no
                after = policy_callbacks("guard", entry.otherwise, event, entry.guard)
                transitions.append({"trigger": event, "source": state, "dest": None, "after": after})
        else:
            after = policy_callbacks("out_of_order", entry, event, None)
            transitions.append({"trigger": event, "source": state, "dest": None, "after": after})
    return SharedMachine(
        model=None,
        states=machine_states,
        transitions=transitions,
        initial=initial,
        auto_transitions=False,
        send_event=False,
        ignore_invalid_triggers=False,
        name=f"{leg}-leg",
    )


def _media_states(machine: SharedMachine, media_action: Callable[..., None]) -> frozenset[str]:
    """The states whose ``media`` trigger would only run the media action: there a media frame
    goes straight to the audio path, without firing."""
    event = machine.events.get("media")
    if event is None:
        return frozenset()
    return frozenset(
        source
        for source, candidates in event.transitions.items()
        if candidates
        and candidates[0].dest is None
        and not candidates[0].conditions
        and list(candidates[0].after) == [media_action]
    )


def compile_protocol(
    doc: LoadedDocument, behaviours: Behaviours | None = None
) -> tuple[CompiledProtocol | None, list[SpecError]]:
    """Compile a schema-valid protocol document; returns the result or the located errors.

    ``behaviours``: the callbacks to bind (the engine's own, :mod:`engine.core.control`, by
    default)."""
    if behaviours is None:
        from engine.core.control import BEHAVIOURS  # the core depends on this package, not back

        behaviours = BEHAVIOURS
    data = doc.data
    check = _Checker(doc)
    events = _compile_events(data, check)
    bridge: list[BridgeRule] = []
    bridge_enter: dict[str, dict[str, list[str]]] = {"telephony": {}, "ai": {}}
    for index, rule in enumerate(data.get("bridge", [])):
        leg = rule["when"]["leg"]
        enters = rule["when"]["enters"]
        enters = [enters] if isinstance(enters, str) else enters
        for sindex, state in enumerate(enters):
            if state not in data["legs"][leg]["states"]:
                check.error(
                    ("bridge", index, "when", "enters", sindex)
                    if len(enters) > 1 or not isinstance(rule["when"]["enters"], str)
                    else ("bridge", index, "when", "enters"),
                    f"unknown {leg} state {state!r}",
                )
        actions = check.actions(rule["do"], ("bridge", index, "do"))
        for state in enters:
            bridge_enter[leg].setdefault(state, []).extend(actions)
        bridge.append(BridgeRule(leg, tuple(enters), actions, rule.get("description", "")))
    legs: dict[str, CompiledLeg] = {}
    if not check.errors:
        for leg in ("telephony", "ai"):
            compiled = _compile_leg(leg, data["legs"][leg], events, bridge_enter[leg], check, behaviours)
            if compiled is not None:
                legs[leg] = compiled
    timers: list[TimerDef] = []
    for name, raw in data.get("timers", {}).items():
        states = data["legs"][raw["leg"]]["states"]
        for index, state in enumerate(raw["states"]):
            if state not in states:
                check.error(("timers", name, "states", index), f"unknown {raw['leg']} state {state!r}")
        code = int(raw.get("close_code", DEFAULT_CLOSE_CODE))
        if code in vocab.RESERVED_CLOSE_CODES:
            check.error(("timers", name, "close_code"), f"close code {code} is reserved and cannot be sent")
        timers.append(
            TimerDef(
                name,
                raw["leg"],
                frozenset(raw["states"]),
                raw["after_ms"] / 1000.0,
                raw.get("reason", f"{name} expired"),
                code,
            )
        )
    if check.errors:
        return None, check.errors
    return CompiledProtocol(
        file=doc.file,
        fields=MappingProxyType(dict(data["fields"])),
        common_fields=frozenset(data.get("common_fields", [])),
        events=MappingProxyType(events),
        legs=MappingProxyType(legs),
        bridge=tuple(bridge),
        timers=tuple(timers),
    ), []
