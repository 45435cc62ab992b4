"""`FirestoreStateStore` specifics: the stored field layout and how failures surface."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
import requests

from adapters.state_firestore import FirestoreStateStore, to_fields
from core.errors import StateUnavailable
from core.state import Document
from tests.netguard import loopback_guard

pytestmark = pytest.mark.xdist_group("firestore")
T = 1_900_000_000.0


def test_documents_have_the_field_layout_terraform_expects(firestore_emulator_host: str) -> None:
    project = f"test-{secrets.token_hex(6)}"
    store = FirestoreStateStore(
        project=project, collection="requests", emulator_host=firestore_emulator_host
    )
    store.create(Document("a", {"é": [1, {"b": None}]}, T + 0.25, dead_letter_at=T - 1), now=T)
    store.create(Document("b", {}, T + 60, due_at=T), now=T)

    base = f"http://{firestore_emulator_host}/v1/projects/{project}/databases/(default)/documents"
    raw_a = requests.get(f"{base}/requests/a", timeout=5).json()
    raw_b = requests.get(f"{base}/requests/b", timeout=5).json()

    fields = raw_a["fields"]
    expire_at = datetime.fromisoformat(fields.pop("expire_at")["timestampValue"])
    assert expire_at == datetime(2030, 3, 17, 17, 46, 40, 250000, tzinfo=UTC)
    assert fields == {
        "data": {"stringValue": '{"é":[1,{"b":null}]}'},
        "expires": {"doubleValue": T + 0.25},
        "dead_letter_at": {"doubleValue": T - 1},
    }
    assert set(raw_b["fields"]) == {"data", "expire_at", "expires", "due_at"}
    assert store.get("a", now=T) is not None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_store_pointed_at_a_closed_port_raises_state_unavailable_quickly() -> None:
    store = FirestoreStateStore(
        project="p", collection="requests", emulator_host=f"127.0.0.1:{closed_port()}"
    )
    started = time.monotonic()

    for call in (
        lambda: store.get("a", now=T),
        lambda: store.create(Document("a", {}, T + 1), now=T),
        lambda: store.replace(Document("a", {}, T + 1), version="2030-01-01T00:00:00Z"),
        lambda: store.delete("a", version="2030-01-01T00:00:00Z"),
        lambda: store.dead_letters(now=T, limit=5),
        lambda: store.due(now=T, limit=5),
    ):
        with pytest.raises(StateUnavailable, match="ConnectionError"):
            call()

    assert time.monotonic() - started < 5


@pytest.fixture
def answering() -> Iterator[tuple[list[int], str]]:
    """A loopback server answering every request with the status at the head of a list."""
    statuses: list[int] = [503]

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b'{"error": {"status": "X"}}'
            self.send_response(statuses[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield statuses, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [500, 503, 401, 403, 429, 400])
def test_error_answers_raise_state_unavailable(
    answering: tuple[list[int], str], status: int
) -> None:
    statuses, host = answering
    statuses[0] = status
    store = FirestoreStateStore(project="p", collection="requests", emulator_host=host)

    with pytest.raises(StateUnavailable, match=str(status)):
        store.get("a", now=T)
    with pytest.raises(StateUnavailable, match=str(status)):
        store.replace(Document("a", {}, T + 1), version="2030-01-01T00:00:00Z")
    with pytest.raises(StateUnavailable, match=str(status)):
        store.due(now=T, limit=1)


def test_production_uses_the_firestore_endpoint_and_missing_credentials_are_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    store = FirestoreStateStore(project="proj", collection="shared", database="db-1")

    with loopback_guard() as refused, pytest.raises(StateUnavailable, match="credentials"):
        store.get("a", now=T)

    assert (
        store.base == "https://firestore.googleapis.com/v1/projects/proj/databases/db-1/documents"
    )
    assert refused == []


def test_a_document_of_another_shape_raises_state_unavailable(firestore_emulator_host: str) -> None:
    project = f"test-{secrets.token_hex(6)}"
    base = f"http://{firestore_emulator_host}/v1/projects/{project}/databases/(default)/documents"
    requests.post(
        f"{base}/requests", params={"documentId": "odd"}, json={"fields": {}}, timeout=5
    ).raise_for_status()
    store = FirestoreStateStore(
        project=project, collection="requests", emulator_host=firestore_emulator_host
    )

    with pytest.raises(StateUnavailable, match="another shape"):
        store.get("odd", now=T)


def test_an_invalid_write_fails_alone_though_firestore_refuses_its_whole_batch(
    firestore_emulator_host: str,
) -> None:
    store = FirestoreStateStore(
        project=f"test-{secrets.token_hex(6)}",
        collection="requests",
        emulator_host=firestore_emulator_host,
    )
    valid = {
        "update": {"name": store._name("ok"), "fields": to_fields(Document("ok", {}, T + 60))},
        "currentDocument": {"exists": False},
    }
    invalid = {
        "update": {"name": store._name("bad"), "fields": {}},
        "currentDocument": {"updateTime": "not a time"},
    }
    outcomes = store._write_batch([valid, invalid])
    assert isinstance(outcomes[0], str) and outcomes[0]  # applied, with its update time
    assert isinstance(outcomes[1], StateUnavailable)
    assert store.get("ok", now=T) is not None
