"""The vocabulary, the engine's implementations and the protocol agree.

Every action and guard the vocabulary declares has exactly one registered implementation, and
the implementations are exactly the declared names; every one is used by the shipped protocol;
and the compiled Machines call only those implementations (and the violation policies), bound
as callables, never resolved by name on the model.
"""

from __future__ import annotations

from engine.core import control
from engine.language import vocabulary as vocab
from engine.language.loader import SpecSet


def test_every_declared_name_is_implemented_and_nothing_else_is() -> None:
    assert set(control.ACTIONS) == set(vocab.ACTIONS)
    assert set(control.GUARDS) == set(vocab.GUARDS)
    assert set(vocab.MEDIA_ACTIONS.values()) <= set(vocab.ACTIONS)


def test_every_declared_name_is_used_by_the_protocol(specs: SpecSet) -> None:
    protocol = specs.protocol
    used_actions = {a for rule in protocol.bridge for a in rule.actions}
    used_guards: set[str] = set()
    for leg in protocol.legs.values():
        used_actions |= {a for actions in leg.on_enter.values() for a in actions}
        for entry in leg.table.values():
            used_actions |= set(getattr(entry, "actions", ()))
            if getattr(entry, "guard", None):
                used_guards.add(entry.guard)  # type: ignore[union-attr]
    assert used_actions == set(vocab.ACTIONS)
    assert used_guards == set(vocab.GUARDS)


def test_machines_call_registered_callables_only(specs: SpecSet) -> None:
    registered = {*control.ACTIONS.values(), *control.GUARDS.values()}
    for leg in specs.protocol.legs.values():
        machine = leg.machine
        for state in machine.states.values():
            assert all(callback in registered for callback in state.on_enter)
        for event in machine.events.values():
            for candidates in event.transitions.values():
                for transition in candidates:
                    for condition in transition.conditions:
                        assert condition.func in registered
                    for callback in transition.after:
                        assert callable(callback)
                        assert callback in registered or callback.__module__ == control.__name__
