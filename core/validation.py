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
from typing import Any, cast

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource

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
    if isinstance(instance, str) and not _ecma_regex(pattern).search(instance):
        yield ValidationError("does not match the required pattern")


def _max_bytes(
    validator: Any, limit: int, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    try:
        size = len(compact_json(instance).encode("utf-8"))
    except (ValueError, RecursionError):  # non-finite numbers, lone surrogates, deep nesting
        yield ValidationError("is not representable as JSON")
        return
    if size > limit:
        yield ValidationError(f"is larger than {limit} bytes as compact JSON")


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


_Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {"pattern": _pattern, "x-maxBytes": _max_bytes}
)


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        found[path.name] = json.loads(path.read_text(encoding="utf-8"))  # checked by the tests
    return found


@functools.cache
def _registry() -> Registry[Any]:
    return Registry().with_resources(
        (name, Resource.from_contents(schema)) for name, schema in _schemas().items()
    )


@functools.cache
def validator(name: str) -> Any:
    """The compiled validator of `schemas/<name>.json` (once per process)."""
    return _Validator(_schemas()[f"{name}.json"], registry=_registry())


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
    found = sorted(validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    described = [_describe(error) for error in found]
    for entry in described:
        if len(entry["field"]) > 100:  # an unexpected key can be long: never echo it whole
            entry["field"] = entry["field"][:100] + "…"
        if len(entry["message"]) > 300:
            entry["message"] = entry["message"][:300] + "…"
    return described
