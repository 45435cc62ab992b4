"""One setting shared by the service's `requests` sessions (DatoCMS, Firestore)."""

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
