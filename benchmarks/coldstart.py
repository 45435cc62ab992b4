"""Benchmark 3: cold start of `delete_track` against a hello-world function served the same way.

Each run starts a fresh `functions-framework` process and POSTs until the first
2xx answer: for `delete_track`, a valid deletion request (so the first answer
includes building the service, validating, the DELETE to the DatoCMS simulator
and enqueueing the first poll); for the baseline, `benchmarks.functions.hello`.
Runs alternate between the two; the figure is the median of each.

Also: the import time of `main.py`, by module, from `python -X importtime`,
on top of `functions_framework` (which both functions import anyway).
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from benchmarks.processes import FUNCTIONS_SOURCE, Function, base_env
from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import ROOT, Secrets, free_port

UPLOAD_ID = "cold_start_upload"


@dataclass(frozen=True)
class ImportLine:
    module: str
    self_us: int
    cumulative_us: int
    depth: int


@dataclass
class ColdStartReport:
    runs: int
    service: list[float]
    hello: list[float]
    imports: list[ImportLine]  # what `import main` adds on top of functions_framework
    service_uncached: list[float]  # the same, every start compiling the sources again
    hello_uncached: list[float]

    @property
    def service_median(self) -> float:
        return statistics.median(self.service)

    @property
    def hello_median(self) -> float:
        return statistics.median(self.hello)

    @property
    def ratio(self) -> float:
        return self.service_median / self.hello_median

    @property
    def uncached_ratio(self) -> float | None:
        if not self.service_uncached or not self.hello_uncached:
            return None
        return statistics.median(self.service_uncached) / statistics.median(self.hello_uncached)

    @property
    def main_import_us(self) -> int:
        return sum(line.self_us for line in self.imports)


def service_env(secrets: Secrets, base_url: str) -> dict[str, str]:
    env = base_env()
    env.update(
        {
            "DATOCMS_API_TOKEN": secrets.datocms_token,
            "DATOCMS_BASE_URL": base_url,
            "INTAKE_TOKEN": secrets.intake_token,
            "TASK_SIGNING_SECRET": secrets.task_secret,
            "CALLBACK_SIGNING_SECRET": secrets.callback_secret,
            "TASKS_BACKEND": "local",
            # Nothing listens there, and the first poll would come after the process is gone.
            "POLL_URL": f"http://127.0.0.1:{free_port()}/",
            "POLL_INITIAL_DELAY_SECONDS": "600",
            "POLL_MAX_DELAY_SECONDS": "600",
        }
    )
    return env


def _deletion(track: str) -> bytes:
    return json.dumps({"upload_id": UPLOAD_ID, "upload_track_id": track}).encode()


def with_bytecode_cache(env: dict[str, str], cache: str | None) -> dict[str, str]:
    """`env` with Python's bytecode cache in `cache` (None: no cache at all)."""
    env = dict(env)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache
    return env


def measure(runs: int, cache: str | None) -> tuple[list[float], list[float]]:
    """Seconds to the first 2xx of `delete_track` and of hello world, `runs` each, alternating.

    With a `cache`, one unmeasured start of each fills it first, as a deployment's build
    leaves compiled bytecode behind; without, every start compiles the sources again.
    """
    secrets = Secrets()
    service: list[float] = []
    hello: list[float] = []
    with DatoCMSSimulator(api_token=secrets.datocms_token) as simulator:
        env = with_bytecode_cache(service_env(secrets, simulator.base_url), cache)
        hello_env = with_bytecode_cache(base_env(), cache)
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {secrets.intake_token}",
        }
        warm_up = 1 if cache is not None else 0
        for index in range(runs + warm_up):
            track = f"cold_{index}"
            simulator.add_track(UPLOAD_ID, track, job_seconds=1)
            order = ("service", "hello") if index % 2 == 0 else ("hello", "service")
            for which in order:
                if which == "service":
                    with Function("delete_track", env) as function:
                        seconds = function.first_success(_deletion(track), headers)
                    measured = service
                else:
                    with Function("hello", hello_env, source=FUNCTIONS_SOURCE) as function:
                        seconds = function.first_success(b"{}", {})
                    measured = hello
                if index >= warm_up:
                    measured.append(seconds)
    return service, hello


def run(runs: int = 10, uncached_runs: int = 5, import_repeats: int = 3) -> ColdStartReport:
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        service, hello = measure(runs, cache)
    uncached = measure(uncached_runs, None) if uncached_runs else ([], [])
    imports = import_profile(import_repeats)
    return ColdStartReport(runs, service, hello, imports, uncached[0], uncached[1])


_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def _importtime(cache: str) -> list[ImportLine]:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import functions_framework; import main"],
        cwd=ROOT,
        env=with_bytecode_cache(base_env(), cache),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = []
    for raw in completed.stderr.splitlines():
        match = _LINE.match(raw)
        if match:
            self_us, cumulative, indent, module = match.groups()
            lines.append(ImportLine(module, int(self_us), int(cumulative), (len(indent) - 1) // 2))
    # What `import main` added: every line after the last top-level `functions_framework` line.
    last_ff = max(i for i, line in enumerate(lines) if line.module == "functions_framework")
    return lines[last_ff + 1 :]


def import_profile(repeats: int = 3) -> list[ImportLine]:
    """The `import main` lines of the run whose total is the median of `repeats` runs
    (after one that fills the bytecode cache)."""
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        _importtime(cache)
        profiles = sorted((_importtime(cache) for _ in range(repeats)), key=_total)
    return profiles[len(profiles) // 2]


def _total(lines: list[ImportLine]) -> int:
    return sum(line.self_us for line in lines)


def top_imports(lines: list[ImportLine], count: int = 12) -> list[ImportLine]:
    """The heaviest direct imports of `main` (depth 1), by cumulative time."""
    direct = [line for line in lines if line.depth == 1]
    return sorted(direct, key=lambda line: line.cumulative_us, reverse=True)[:count]


def own_modules(lines: list[ImportLine]) -> list[ImportLine]:
    """The service's own modules, by cumulative time."""
    own = ("main", "core", "adapters", "handlers")
    mine = [line for line in lines if line.module.split(".")[0] in own]
    return sorted(mine, key=lambda line: line.cumulative_us, reverse=True)
