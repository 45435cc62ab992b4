"""Start and stop `functions-framework` processes for the benchmarks (loopback only)."""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping

from devstack.stack import ROOT, FunctionProcess, service_free_environment

FUNCTIONS_SOURCE = ROOT / "benchmarks" / "functions.py"
HELLO_SOURCE = ROOT / "benchmarks" / "hello.py"
TUTORIAL_SOURCE = ROOT / "benchmarks" / "tutorial.py"


def base_env() -> dict[str, str]:
    """The current environment without the service's settings, plus PYTHONPATH."""
    env = service_free_environment()
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Function(FunctionProcess):
    """A function process that can also be timed to its first 2xx answer."""

    def first_success(
        self, body: bytes, headers: Mapping[str, str], *, timeout: float = 30.0
    ) -> float:
        """POST `body` until the first 2xx answer; seconds since the process was started."""
        deadline = self.started + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited:\n{self.output()}")
            # The whole time left: a first request slower than a socket timeout must not be
            # sent twice (the second would find the first one still deciding: 409).
            left = max(deadline - time.monotonic(), 0.1)
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=left)
            try:
                connection.request("POST", "/", body=body, headers=dict(headers))
                status = connection.getresponse().status
                if 200 <= status < 300:
                    return time.monotonic() - self.started
                raise RuntimeError(f"{self.target} answered {status}:\n{self.output()}")
            except (ConnectionError, http.client.HTTPException, OSError):
                time.sleep(0.005)
            finally:
                connection.close()
        raise TimeoutError(f"{self.target} gave no 2xx answer in {timeout} s:\n{self.output()}")
