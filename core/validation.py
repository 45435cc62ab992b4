"""JSON Schema validation, with the schemas in `schemas/` as the single source of rules.

Validators are compiled once per process. Two details make the schemas mean the
same here as in any other JSON Schema implementation:

- `pattern` follows ECMA-262, where `$` matches only at the very end; Python's
  `re` would also let `$` match before a final newline (`"id\\n"`).
- `x-maxBytes` bounds a value's size as compact UTF-8 JSON (the metadata rule).

`x-message` beside a rule replaces its message (for rules whose own message would
echo the value).

Error details name the field and the rule, never echo the offending value.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from referencing import Registry

SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"


@functools.lru_cache(maxsize=256)
def _ecma_regex(pattern: str) -> re.Pattern[str]:
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def compact_json(value: Any) -> str:
    """The compact UTF-8 JSON form used for size limits and signatures."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError  # noqa: PLC0415

    if isinstance(instance, str) and not _ecma_regex(pattern).search(instance):
        yield ValidationError("does not match the required pattern")


def _too_large(instance: Any, limit: int) -> str | None:
    """Why `instance` breaks `x-maxBytes: limit`, or None."""
    try:
        size = len(compact_json(instance).encode("utf-8"))
    except (ValueError, RecursionError):  # non-finite numbers, lone surrogates, deep nesting
        return "is not representable as JSON"
    if size > limit:
        return f"is larger than {limit} bytes as compact JSON"
    return None


def _max_bytes(
    validator: Any, limit: int, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError  # noqa: PLC0415

    problem = _too_large(instance, limit)
    if problem is not None:
        yield ValidationError(problem)


MAX_DEPTH = 32


def json_problem(value: Any) -> str | None:
    """Why `value` cannot be carried as JSON (too deep, not finite, not UTF-8), or None."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"is nested deeper than {MAX_DEPTH} levels"
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    try:
        compact_json(value).encode("utf-8")
    except ValueError:  # UnicodeEncodeError included
        return "holds a number or a string that JSON cannot carry"
    return None


@functools.cache
def _validator_class() -> Any:
    # jsonschema is imported on first use: a valid deletion request never needs it (below).
    import jsonschema  # noqa: PLC0415
    from jsonschema import Draft202012Validator  # noqa: PLC0415

    return jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"pattern": _pattern, "x-maxBytes": _max_bytes}
    )


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        found[path.name] = json.loads(path.read_text(encoding="utf-8"))  # checked by the tests
    return found


@functools.cache
def _schema(name: str) -> dict[str, Any]:
    """`schemas/<name>` alone (the registry of every schema is only built for a validator)."""
    path = SCHEMAS / name
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def _registry() -> Registry[Any]:
    from referencing import Registry, Resource  # noqa: PLC0415

    return Registry().with_resources(
        (name, Resource.from_contents(schema)) for name, schema in _schemas().items()
    )


@functools.cache
def validator(name: str) -> Any:
    """The compiled validator of `schemas/<name>.json` (once per process)."""
    return _validator_class()(_schemas()[f"{name}.json"], registry=_registry())


# ---------------------------------------------------------------------------
# A quick proof of validity, without jsonschema (its import is a good part of a cold start).
#
# `_surely_valid` answers True only when the instance meets every rule of the schema, and
# None whenever it cannot tell: a rule it does not know (a `$ref`, say), a value it does
# not handle, or any rule broken. None sends the instance to jsonschema, which then
# decides, and words the failures. So the answer (an empty list, or jsonschema's) is the
# same as jsonschema's for every instance.

_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "x-message"})
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
}


def _ok(holds: bool) -> bool | None:
    return True if holds else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _type(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    check = _TYPES.get(value) if isinstance(value, str) else None
    return _ok(check is not None and check(instance))


def _properties(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    if not isinstance(value, dict):
        return None
    if not isinstance(instance, dict):
        return True
    return _ok(
        all(
            _surely_valid(subschema, instance[name]) is True
            for name, subschema in value.items()
            if name in instance
        )
    )


def _additional(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    known = schema.get("properties", {})
    if value is not False or "patternProperties" in schema or not isinstance(known, dict):
        return None
    return _ok(not isinstance(instance, dict) or all(key in known for key in instance))


def _required(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    if not isinstance(value, list):
        return None
    return _ok(not isinstance(instance, dict) or all(name in instance for name in value))


def _pattern_ok(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    if not isinstance(value, str):
        return None
    return _ok(not isinstance(instance, str) or _ecma_regex(value).search(instance) is not None)


def _length(low: bool) -> Any:
    def check(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
        if not _is_count(value):
            return None
        if not isinstance(instance, str):
            return True
        return _ok(len(instance) >= value if low else len(instance) <= value)

    return check


def _size(low: bool) -> Any:
    def check(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
        if not _is_count(value):
            return None
        if not isinstance(instance, dict):
            return True
        return _ok(len(instance) >= value if low else len(instance) <= value)

    return check


def _enum(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return _ok(isinstance(instance, str) and instance in value)


def _const(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    return _ok(value is True and instance is True)


def _bytes(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    return _ok(_is_count(value) and _too_large(instance, value) is None)


def _all_of(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    if not isinstance(value, list):
        return None
    return _ok(all(_surely_valid(subschema, instance) is True for subschema in value))


def _if(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    condition = _surely_holds(value, instance)
    if condition is None:
        return None
    return _surely_valid(schema.get("then" if condition else "else", True), instance)


def _branch(value: Any, instance: Any, schema: dict[str, Any]) -> bool | None:
    return True  # `then` and `else` are applied by `if`, and ignored without one


_KEYWORDS: dict[str, Any] = {
    "type": _type,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "pattern": _pattern_ok,
    "minLength": _length(low=True),
    "maxLength": _length(low=False),
    "minProperties": _size(low=True),
    "maxProperties": _size(low=False),
    "enum": _enum,
    "const": _const,
    "x-maxBytes": _bytes,
    "allOf": _all_of,
    "if": _if,
    "then": _branch,
    "else": _branch,
}


def _surely_valid(schema: Any, instance: Any) -> bool | None:
    """True: `instance` meets `schema`. None: not known here (ask jsonschema)."""
    if schema is True:
        return True
    if not isinstance(schema, dict):
        return None
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _KEYWORDS.get(keyword)
        if check is None or check(value, instance, schema) is not True:
            return None  # a rule this check does not know, or one the instance may break
    return True


def _surely_holds(schema: Any, instance: Any) -> bool | None:
    """Whether `instance` meets an `if` condition; None: not known here.

    Only the conditions the schemas use: `required`, or `not` of one.
    """
    if not isinstance(schema, dict):
        return None
    if set(schema) == {"required"} and isinstance(schema["required"], list):
        if not isinstance(instance, dict):
            return True
        return all(name in instance for name in schema["required"])
    if set(schema) == {"not"}:
        inner = _surely_holds(schema["not"], instance)
        return None if inner is None else not inner
    return None


def _own_message(error: ValidationError) -> str | None:
    """A message that names the rule without echoing the value, where jsonschema's would."""
    keyword, value = error.validator, error.validator_value
    if isinstance(error.schema, dict) and isinstance(error.schema.get("x-message"), str):
        return str(error.schema["x-message"])
    if keyword == "enum":
        return "must be one of " + ", ".join(json.dumps(item) for item in cast(list[Any], value))
    if keyword == "const":
        return f"must be {json.dumps(value)}"
    if keyword == "minLength":
        return f"must be at least {value} characters"
    return None


def _describe(error: ValidationError) -> dict[str, str]:
    path = ".".join(str(part) for part in error.absolute_path)
    keyword = error.validator
    message = _own_message(error)
    if message is not None:
        return {"field": path or "(body)", "message": message}
    if keyword == "required":
        missing = re.search(r"'([^']*)'", error.message)
        field = missing.group(1) if missing else path
        return {"field": field, "message": "is required"}
    if keyword == "additionalProperties":
        schema = error.schema if isinstance(error.schema, dict) else {}
        instance = error.instance if isinstance(error.instance, dict) else {}
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        return {"field": path or "(body)", "message": f"unexpected field(s): {', '.join(extra)}"}
    if keyword == "type":
        return {"field": path or "(body)", "message": f"must be of type {error.validator_value}"}
    if keyword == "maxLength":
        return {"field": path, "message": f"must be at most {error.validator_value} characters"}
    return {"field": path or "(body)", "message": error.message}


def errors(name: str, instance: Any) -> list[dict[str, str]]:
    """Every rule of schema `name` that `instance` breaks, one entry per failure."""
    if _surely_valid(_schema(f"{name}.json"), instance) is True:
        return []  # what jsonschema would find: nothing (see `_surely_valid`)
    found = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    described = [_describe(error) for error in found]
    for entry in described:
        if len(entry["field"]) > 100:  # an unexpected key can be long: never echo it whole
            entry["field"] = entry["field"][:100] + "…"
        if len(entry["message"]) > 300:
            entry["message"] = entry["message"][:300] + "…"
    return described
