"""JSON Schema validation with every error located at its file, line and column.

The schemas ship inside the package (``engine/language/schemas/*.schema.json``). All errors of a
document come out at once, each as ``file:LINE:COL: $.json.path: message``.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from engine.errors import SpecError
from engine.language.yamlload import JsonPath, LoadedDocument

SCHEMA_KINDS = ("protocol", "provider", "ai_provider", "config")


@cache
def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema for one kind of file (see :data:`SCHEMA_KINDS`)."""
    text = resources.files("engine.language").joinpath("schemas", f"{kind}.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


_SHARED = ("peer",)


@cache
def _registry() -> Registry:
    resources_ = [
        (schema(name)["$id"], Resource.from_contents(schema(name)))
        for name in (*SCHEMA_KINDS, *_SHARED)
        if resources.files("engine.language").joinpath("schemas", f"{name}.schema.json").is_file()
    ]
    return Registry().with_resources(resources_)


@cache
def _validator(kind: str) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema(kind))
    cls.check_schema(schema(kind))
    validator: jsonschema.protocols.Validator = cls(schema(kind), registry=_registry())
    return validator


_PATTERN_MEANING = {
    "^wss?://": "must be a ws:// or wss:// URL",
    "^[a-z][a-z0-9_-]*$": "must be lowercase letters, digits, - or _ (it is part of the URL)",
    "^[a-z][a-z0-9_]*$": "must be lowercase letters, digits or _",
    "^[A-Za-z_][A-Za-z0-9_]*$": "must be letters, digits or _",
}


def _explain(error: ValidationError) -> ValidationError:
    """For oneOf/anyOf failures, the most specific sub-error says more than the summary."""
    while error.context:
        deeper = best_match(error.context)
        if deeper is None or deeper is error:
            break
        error = deeper
    return error


def _message(error: ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key")
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "pattern":
        meaning = _PATTERN_MEANING.get(error.validator_value, f"must match {error.validator_value}")
        return f"{json.dumps(error.instance)} {meaning}"
    if error.validator == "enum":
        choices = ", ".join(json.dumps(c) for c in error.validator_value)
        return f"{json.dumps(error.instance)} is not one of {choices}"
    return str(error.message)


def _unknown_keys(error: ValidationError) -> list[str]:
    if not isinstance(error.instance, dict):
        return []
    if error.validator == "unevaluatedProperties":
        named = re.findall(r"'([^']*)'", error.message.split("(", 1)[-1])
        return [key for key in named if key in error.instance]
    if error.validator != "additionalProperties":
        return []
    allowed = set(error.schema.get("properties", {}))
    patterns = error.schema.get("patternProperties", {})
    return [key for key in error.instance if key not in allowed and not any(re.search(p, key) for p in patterns)]


def _allowed_keys(error: ValidationError) -> list[str]:
    keys = list(error.schema.get("properties", {}))
    ref = error.schema.get("$ref")
    if ref and ref.endswith("peer.schema.json"):
        keys += list(schema("peer")["properties"])
    return keys


def schema_errors(doc: LoadedDocument, kind: str) -> list[SpecError]:
    """Every schema violation in ``doc``, located; empty when it is valid."""
    found: list[SpecError] = []
    for raw in _validator(kind).iter_errors(doc.data):
        error = _explain(raw)
        path: JsonPath = tuple(error.absolute_path)
        unknown = _unknown_keys(error)
        if unknown:
            # Point at each offending key rather than at its parent mapping.
            allowed = _allowed_keys(error)
            for key in unknown:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                found.append(doc.error((*path, key), f"unknown key {key!r}{hint}"))
            continue
        found.append(doc.error(path, _message(error)))
    return found
