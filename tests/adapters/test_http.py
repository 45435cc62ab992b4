"""The service's `requests` sessions read the environment once, not on every call."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from adapters.http import settle_environment
from adapters.state_firestore import FirestoreStateStore


def test_proxy_and_ca_settings_are_read_once_and_netrc_is_never_consulted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read here")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = settle_environment(requests.Session(), "https://firestore.googleapis.com/v1/x")
    assert session.trust_env is False
    assert session.proxies == {"https": "http://proxy.invalid:3128"}
    assert session.verify == str(bundle)
    (tmp_path / ".netrc").write_text("machine firestore.googleapis.com login a password leaked\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    prepared = session.prepare_request(requests.Request("GET", "https://firestore.googleapis.com/"))
    assert "Authorization" not in prepared.headers


def test_the_firestore_emulator_session_does_not_scan_the_environment() -> None:
    store = FirestoreStateStore(project="p", collection="c", emulator_host="127.0.0.1:1")
    assert store.session.trust_env is False
    assert store.session.headers["Authorization"] == "Bearer owner"
