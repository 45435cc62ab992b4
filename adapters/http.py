"""How the service's `requests` sessions call out: the environment read once (DatoCMS,
Firestore), and DatoCMS calls through the session's transport adapter."""

from __future__ import annotations

import requests


def settle_environment(session: requests.Session, url: str) -> requests.Session:
    """Read the proxy and CA settings for `url` from the environment once, into `session`.

    With `trust_env`, `requests` scans the whole environment (and stats `~/.netrc`) on
    every call: a sixth of an intake request's time. A `~/.netrc` entry could also
    replace the `Authorization` header the service sets.
    """
    settings = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(settings["proxies"] or {})
    if settings["verify"] is not None:
        session.verify = settings["verify"]
    session.trust_env = False
    return session


def call_streamed(
    session: requests.Session,
    method: str,
    url: str,
    headers: dict[str, str],
    *,
    timeout: tuple[float, float],
) -> requests.Response:
    """One call through the session's transport adapter, streamed (the caller reads the
    body and closes the answer).

    `Session.request` spends a third of a call's time on what the service never uses:
    cookies (none are sent or kept), auth and hooks (none), redirects (none followed).
    The session's connection pool, headers and settled proxy and CA settings apply.
    """
    prepared = requests.PreparedRequest()
    prepared.prepare_method(method)
    prepared.prepare_url(url, None)
    prepared.prepare_headers({**session.headers, **headers})
    prepared.prepare_body(None, None)
    adapter = session.get_adapter(url)
    return adapter.send(
        prepared,
        stream=True,
        timeout=timeout,
        verify=True if session.verify is None else session.verify,
        cert=session.cert,
        proxies=session.proxies,
    )
