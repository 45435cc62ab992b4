"""The intake-overhead baseline, served by `functions-framework` like `main.py`.

`loopback` makes one loopback request per call, to `LOOPBACK_URL`: the least any
function calling an API must do. (The cold-start baselines live in files of their
own, `hello.py` and `tutorial.py`, so that each imports only what it needs.)
"""

from __future__ import annotations

import os

import flask
import functions_framework
import requests

#: One session, kept alive, that does not scan the environment for proxies on every call:
#: the cheapest way to make a request with the library the service uses.
_SESSION = requests.Session()
_SESSION.trust_env = False


@functions_framework.http
def loopback(request: flask.Request) -> tuple[str, int]:
    answer = _SESSION.get(os.environ["LOOPBACK_URL"], timeout=10)
    answer.close()
    return "ok", 200
