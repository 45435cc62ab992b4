"""Property-based tests of `delete_track`'s handler (in-process, through `make_harness`).

For arbitrary bytes bodies, arbitrary JSON values, arbitrary header maps and
arbitrary methods, the handler

- never answers 5xx (nor raises: main.py would turn that into a 500);
- answers exactly what an independent model of the contract expects
  (401, 405, 415, 413, 400, or 2xx for a valid, authenticated request);
- sends nothing anywhere (no DatoCMS request, no task, no callback) unless
  the request is valid and authenticated, and then at most one DELETE, to the
  path of the ids it validated, and at most one task; the intake never calls
  the callback sender;
- gives every non-2xx answer the contract's error shape, and never echoes the
  intake token.

The model (`expected_statuses`) is written from the contract, not from the
code: it parses the body itself and applies the schema's rules by hand.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import Secrets
from handlers.responses import Reply
from tests.conftest import Harness
from tests.security import (
    HOSTILE_CALLBACKS,
    HOSTILE_IDS,
    MAX_BODY,
    PUBLIC_CALLBACK,
    Scene,
    assert_error_shape,
    call_intake,
)

PROPERTY_SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

FIELDS = (
    "upload_id",
    "upload_track_id",
    "environment",
    "callback_url",
    "idempotency_key",
    "metadata",
)
GOOD_CALLBACKS = (
    PUBLIC_CALLBACK,
    "https://hooks.example.com:8443/a/b?c=d",
    "https://93.184.215.14/hook",
    "https://[2606:4700:4700::1111]/hook",
)
#: Deeper than this, the contract does not say whether the body is refused (400) or not.
DEPTH_UNSPECIFIED = 64


@pytest.fixture(scope="module")
def simulator(secrets: Secrets) -> Iterator[DatoCMSSimulator]:
    # Shared by the module, and never rate-limiting: every example starts its own Scene.
    # An unknown track gets a job (whose result is 404), so valid requests answer 202.
    with DatoCMSSimulator(
        api_token=secrets.datocms_token, rate_limit=1_000_000, missing_track_mode="job_404"
    ) as sim:
        yield sim


# --- an independent model of the contract ---------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


def _metadata_ok(metadata: Any) -> bool:
    if not isinstance(metadata, dict):
        return False
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return len(text.encode("utf-8")) <= 4096
    except (ValueError, RecursionError):  # a non-finite number, a lone surrogate
        return False


_RULES: dict[str, Callable[[Any], bool]] = {
    "upload_id": lambda v: isinstance(v, str) and bool(re.fullmatch(r"[A-Za-z0-9_-]{1,64}", v)),
    "upload_track_id": lambda v: (
        isinstance(v, str) and bool(re.fullmatch(r"[A-Za-z0-9_-]{1,128}", v))
    ),
    "environment": lambda v: (
        isinstance(v, str) and bool(re.fullmatch(r"[a-z0-9][a-z0-9-]{0,63}", v))
    ),
    "idempotency_key": lambda v: (
        isinstance(v, str) and bool(re.fullmatch(r"[\x20-\x7e]{1,200}", v))
    ),
    "metadata": _metadata_ok,
}


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError("number out of range")
    return value


def parse(body: bytes) -> tuple[bool | None, Any]:
    """(parsed?, value), parsed as the contract says: strict UTF-8 JSON, no NaN/Infinity,
    no number too large for a float anywhere in the body (even under a repeated key).

    None: too deep for this parser, and the contract does not fix a depth.
    """
    try:
        return True, json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite
        )
    except RecursionError:
        return None, None
    except ValueError:
        return False, None


def judge(value: Any) -> str:  # noqa: PLR0911 (the model: one verdict per rule)
    """'valid', 'invalid' or 'unknown' (a callback URL the model does not know)."""
    if not isinstance(value, dict) or not set(value) <= set(FIELDS):
        return "invalid"
    if "upload_id" not in value or "upload_track_id" not in value:
        return "invalid"
    for field, rule in _RULES.items():
        if field in value and not rule(value[field]):
            return "invalid"
    url = value.get("callback_url")
    if url is None and "callback_url" not in value:
        return "valid"
    if not isinstance(url, str) or len(url) > 2048 or url in HOSTILE_CALLBACKS.values():
        return "invalid"
    if url in GOOD_CALLBACKS:
        return "valid"
    if not re.fullmatch(r"[Hh][Tt][Tt][Pp][Ss]?://[^@/?#\\\s]+(?:[/?#]\S*)?", url):
        return "invalid"
    return "unknown"


def expected_for_body(body: bytes) -> set[int]:
    """What an authenticated POST with a JSON Content-Type may be answered."""
    if len(body) > MAX_BODY:
        return {413}
    parsed, value = parse(body)
    if parsed is None:
        return {400, 200, 202}
    if not parsed:
        return {400}
    verdict = judge(value)
    if verdict == "invalid":
        return {400} if _depth(value) <= DEPTH_UNSPECIFIED else {400, 200, 202}
    accepted = {200, 202, 422} if value.get("environment") == "sandbox" else {200, 202}
    if verdict == "unknown" or _depth(value) > DEPTH_UNSPECIFIED:
        return accepted | {400}
    return accepted


def is_json_media_type(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == "application/json"


def expected_statuses(
    *, authenticated: bool, method: str, content_type: str | None, body: bytes
) -> set[int]:
    if not authenticated:
        return {401}
    if method != "POST":
        return {405}
    if not is_json_media_type(content_type):
        return {415}
    return expected_for_body(body)


# --- checking one answer ------------------------------------------------------------


def check(scene: Scene, reply: Reply, expected: set[int], body: bytes, token: str) -> None:
    assert reply.status < 500, (reply.status, reply.body)
    assert reply.status in expected, (reply.status, sorted(expected), reply.body)
    assert token not in json.dumps(reply.body)
    sent = [r.path for r in scene.datocms_requests()]
    tasks = scene.harness.queue.enqueued
    assert scene.harness.sender.sent == [], "the intake never sends callbacks"
    if not 200 <= reply.status < 300:
        assert_error_shape(reply)
    if reply.status not in (200, 202, 422):
        assert sent == [] and tasks == [], (reply.status, sent, len(tasks))
        return
    _, value = parse(body)
    assert len(sent) <= 1 and len(tasks) <= 1, (sent, len(tasks))
    for path in sent:
        assert re.fullmatch(r"/uploads/[A-Za-z0-9_-]{1,64}/tracks/[A-Za-z0-9_-]{1,128}", path)
        if isinstance(value, dict):  # the ids validated are the ids sent
            assert path == f"/uploads/{value['upload_id']}/tracks/{value['upload_track_id']}"
    if reply.status == 422:
        return
    assert reply.body["status"] in ("pending", "queued", "duplicate", "not_found"), reply.body
    assert reply.body["request_id"].startswith("req_")
    if reply.body["status"] == "duplicate":
        assert sent == [] and tasks == []
    else:
        assert len(tasks) == 1


# --- strategies ---------------------------------------------------------------------
def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of `choices`, each picked in proportion to its weight."""
    indexes = [index for index, (weight, _) in enumerate(choices) for _ in range(weight)]
    return st.sampled_from(indexes).flatmap(lambda index: choices[index][1])


@dataclass(frozen=True)
class Raw:
    """JSON text written as is (numbers too large for a float, deep nesting, bare NaN...)."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as a list of pairs, so that keys may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def dump(value: Any, ascii_only: bool = True) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Obj):
        items = (f"{dump(k, ascii_only)}:{dump(v, ascii_only)}" for k, v in value.pairs)
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(item, ascii_only) for item in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


def encode(value: Any, ascii_only: bool = True) -> bytes:
    return dump(value, ascii_only).encode("utf-8", "surrogatepass")


SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
HOSTILE_TEXT = st.one_of(
    st.sampled_from(list(HOSTILE_IDS.values())),
    st.text(max_size=20),
    st.text(alphabet=st.one_of(SURROGATES, st.sampled_from("a/.%\r\n \u0430\uff41")), max_size=6),
)
RAW_NUMBERS = st.sampled_from(
    ["1e400", "-1e400", "1E999", "123e456", "1.5e-400", "-0", "9" * 5000, "NaN", "Infinity", "01"]
).map(Raw)
NESTING = st.integers(1, 1200).map(lambda depth: Raw("[" * depth + "]" * depth))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    HOSTILE_TEXT,
    RAW_NUMBERS,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(st.tuples(HOSTILE_TEXT, children), max_size=4).map(lambda p: Obj(tuple(p))),
    ),
    max_leaves=12,
)


def _metadata_of(size: int) -> Obj:
    return Obj((("k", "x" * max(0, size - len('{"k":""}'))),))


VALID_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "upload_id": st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    "upload_track_id": st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
    "environment": st.from_regex(r"[a-z0-9][a-z0-9-]{0,63}", fullmatch=True),
    "callback_url": st.sampled_from(GOOD_CALLBACKS),
    "idempotency_key": st.from_regex(r"[\x20-\x7e]{1,200}", fullmatch=True),
    "metadata": st.one_of(
        st.lists(st.tuples(st.text(max_size=8), SCALARS), max_size=4).map(lambda p: Obj(tuple(p))),
        st.integers(4088, 4104).map(_metadata_of),
    ),
}
HOSTILE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "upload_id": HOSTILE_TEXT,
    "upload_track_id": HOSTILE_TEXT,
    "environment": HOSTILE_TEXT,
    "callback_url": st.one_of(st.sampled_from(list(HOSTILE_CALLBACKS.values())), st.text()),
    "idempotency_key": HOSTILE_TEXT,
    "metadata": st.one_of(
        JSON_VALUES,
        NESTING.map(lambda nested: Obj((("n", nested),))),
        RAW_NUMBERS.map(lambda number: Obj((("n", number),))),
        st.text(alphabet=SURROGATES, min_size=1, max_size=2).map(lambda s: Obj((("s", s),))),
    ),
}
REQUIRED = ("upload_id", "upload_track_id")


@st.composite
def request_objects(draw: st.DrawFn) -> Obj:
    """Objects shaped like a deletion request: each field valid, hostile, other or absent."""
    pairs: list[tuple[str, Any]] = []
    for field in FIELDS:
        modes = ["valid"] * 6 + ["hostile", "any"] + ([] if field in REQUIRED else ["absent"] * 6)
        mode = draw(st.sampled_from([*modes, "absent"]))
        if mode == "absent":
            continue
        if mode == "valid":
            pairs.append((field, draw(VALID_VALUES[field])))
        elif mode == "hostile":
            pairs.append((field, draw(HOSTILE_VALUES[field])))
        else:
            pairs.append((field, draw(JSON_VALUES)))
    extra: list[tuple[str, Any]] = []
    if draw(st.sampled_from([False, False, False, True])):  # an unexpected or repeated key
        extra = draw(
            st.lists(
                st.tuples(st.one_of(st.sampled_from(FIELDS), HOSTILE_TEXT), JSON_VALUES),
                min_size=1,
                max_size=2,
            )
        )
    return Obj(tuple(draw(st.permutations([*pairs, *extra]))))


JSON_BODIES = st.builds(encode, weighted((3, request_objects()), (1, JSON_VALUES)), st.booleans())
BODIES = weighted((1, st.binary(max_size=300)), (2, JSON_BODIES))
#: Pad a body with trailing whitespace (still the same JSON) up to around 64 KiB.
PADDING = weighted((3, st.none()), (1, st.integers(MAX_BODY - 4, MAX_BODY + 4)))

OTHER_METHODS = ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "post", ""]
METHODS = weighted(
    (6, st.just("POST")), (2, st.sampled_from(OTHER_METHODS)), (1, st.text(max_size=8))
)
JSON_CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    " application/json ;x=y",
]
CONTENT_TYPES = weighted(
    (6, st.sampled_from(JSON_CONTENT_TYPES)),
    (1, st.none()),
    (1, st.sampled_from(["text/plain", "application/jsonx", "application/x-www-form-urlencoded"])),
    (1, st.text(max_size=30)),
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def valid_authorizations(token: str) -> list[str]:
    return [
        f"Bearer {token}",
        f"bearer {token}",
        f"BEARER {token}",
        f"  Bearer   {token}  ",
        _basic("datocms", token),
        _basic("", token),
    ]


def near_miss_authorizations(token: str) -> list[str]:
    b64 = base64.b64encode(token.encode()).decode()
    return [
        f"Bearer {token[:-1]}",
        f"Bearer {token}x",
        f"Bearer {token.upper()}",
        f"Bearer x{token}",
        f"Token {token}",
        f"Bearer{token}",
        f"Bearer\t{token}",
        f"Bearer {token} {token}",
        f"Bearer {b64}",
        token,
        f"Basic {b64}",
        _basic(token, ""),
        _basic(token, "x"),
        _basic("datocms", token[:-1]),
        f"Basic {token}",
        f"Digest {token}",
        "Bearer",
        "Basic",
        "",
    ]


_RECIPE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "valid": st.integers(0, 5),
    "near": st.integers(0, 18),
    "absent": st.none(),
    "text": st.text(max_size=60),
    "bearer": st.text(max_size=60),
    "basic": st.binary(max_size=60),
}


@st.composite
def authorization_recipes(draw: st.DrawFn) -> tuple[str, Any]:
    """Half of them carry the token; the rest miss it, narrowly or wildly."""
    kind = draw(
        st.sampled_from(["valid"] * 5 + ["near", "near", "absent", "text", "bearer", "basic"])
    )
    return kind, draw(_RECIPE_VALUES[kind])


AUTHORIZATION_RECIPES = authorization_recipes()


def render(recipe: tuple[str, Any], token: str) -> tuple[str | None, bool]:
    """The Authorization header value of a recipe, and whether it carries the token."""
    kind, value = recipe
    if kind == "valid":
        return valid_authorizations(token)[value], True
    if kind == "near":
        return near_miss_authorizations(token)[value], False
    if kind == "absent":
        return None, False
    if kind == "text":
        return value, False
    if kind == "bearer":
        return f"Bearer {value}", False
    return "Basic " + base64.b64encode(value).decode(), False


def _pad(body: bytes, size: int | None) -> bytes:
    return body if size is None else body + b" " * max(0, size - len(body))


# --- the properties -------------------------------------------------------------------


@pytest.fixture
def new_scene(
    make_harness: Callable[..., Harness], simulator: DatoCMSSimulator
) -> Callable[[], Scene]:
    harness = make_harness(CALLBACK_ALLOW_PRIVATE_NETWORKS="false", GOOGLE_CLOUD_PROJECT="proj")

    def fresh() -> Scene:
        harness.queue.enqueued.clear()
        harness.sender.sent.clear()
        return Scene(harness, simulator)

    return fresh


@settings(PROPERTY_SETTINGS, max_examples=400)
@given(
    method=METHODS,
    recipe=AUTHORIZATION_RECIPES,
    content_type=CONTENT_TYPES,
    body=BODIES,
    padding=PADDING,
    declare_length=st.booleans(),
)
def test_arbitrary_bytes_headers_and_methods_never_cause_a_5xx_or_an_unwarranted_call(
    new_scene: Callable[[], Scene],
    secrets: Secrets,
    *,
    method: str,
    recipe: tuple[str, Any],
    content_type: str | None,
    body: bytes,
    padding: int | None,
    declare_length: bool,
) -> None:
    scene = new_scene()
    body = _pad(body, padding)
    authorization, authenticated = render(recipe, secrets.intake_token)
    headers = {}
    if authorization is not None:
        headers["authorization"] = authorization
    if content_type is not None:
        headers["content-type"] = content_type
    reply = call_intake(
        scene.harness,
        method=method,
        headers=headers,
        body=body,
        content_length=len(body) if declare_length else None,
    )
    expected = expected_statuses(
        authenticated=authenticated, method=method, content_type=content_type, body=body
    )
    check(scene, reply, expected, body, secrets.intake_token)


@settings(PROPERTY_SETTINGS, max_examples=400)
@given(body=JSON_BODIES, padding=PADDING)
def test_arbitrary_json_values_from_an_authenticated_caller_get_the_contracts_answer(
    new_scene: Callable[[], Scene], secrets: Secrets, body: bytes, padding: int | None
) -> None:
    scene = new_scene()
    body = _pad(body, padding)
    headers = {
        "authorization": f"Bearer {secrets.intake_token}",
        "content-type": "application/json",
    }
    reply = call_intake(scene.harness, headers=headers, body=body)
    check(scene, reply, expected_for_body(body), body, secrets.intake_token)


HEADER_NAMES = st.one_of(
    st.sampled_from(
        [
            "authorization",
            "content-type",
            "content-length",
            "transfer-encoding",
            "x-cloud-trace-context",
            "x-forwarded-for",
            "x-environment",
            "host",
            "cookie",
            "proxy-authorization",
            "x-cloudtasks-taskretrycount",
        ]
    ),
    st.text(min_size=1, max_size=16),
)
VALID_REQUESTS = st.fixed_dictionaries(
    {"upload_id": VALID_VALUES["upload_id"], "upload_track_id": VALID_VALUES["upload_track_id"]},
    optional={"callback_url": st.sampled_from(GOOD_CALLBACKS), "metadata": st.just({"t": 1})},
)


@settings(PROPERTY_SETTINGS, max_examples=300)
@given(
    method=METHODS,
    header_map=st.dictionaries(HEADER_NAMES, st.text(max_size=80), max_size=6),
    recipe=weighted((1, st.none()), (3, AUTHORIZATION_RECIPES)),
    json_content_type=st.one_of(st.none(), st.sampled_from(JSON_CONTENT_TYPES)),
    valid=VALID_REQUESTS,
)
def test_arbitrary_header_maps_cause_a_call_only_with_the_token_and_a_json_content_type(
    new_scene: Callable[[], Scene],
    secrets: Secrets,
    *,
    method: str,
    header_map: dict[str, str],
    recipe: tuple[str, Any] | None,
    json_content_type: str | None,
    valid: dict[str, Any],
) -> None:
    scene = new_scene()
    headers = {name.lower(): value for name, value in header_map.items()}  # as main.py does
    authenticated = False
    if recipe is not None:
        authorization, authenticated = render(recipe, secrets.intake_token)
        headers.pop("authorization", None)
        if authorization is not None:
            headers["authorization"] = authorization
    if json_content_type is not None:
        headers["content-type"] = json_content_type
    body = json.dumps(valid).encode()
    reply = call_intake(scene.harness, method=method, headers=headers, body=body)
    expected = expected_statuses(
        authenticated=authenticated,
        method=method,
        content_type=headers.get("content-type"),
        body=body,
    )
    check(scene, reply, expected, body, secrets.intake_token)
