"""Benchmark 3: cold start of `delete_track`, in two configurations, against baselines.

Each run starts a fresh `functions-framework` process and POSTs until the first
2xx answer: for `delete_track`, a valid deletion request (so the first answer
includes building the service, validating, the DELETE to the DatoCMS simulator
and enqueueing the first poll). Two pairs, each function of a pair in turn:

- local configuration (in-process task queue) against `benchmarks/hello.py`, a
  hello world importing nothing but `functions_framework`;
- production configuration (`TASKS_BACKEND=cloudtasks`, the real
  `google-cloud-tasks` client against the Cloud Tasks emulator; the state
  store through `PRODUCTION_STATE`, see there) against `benchmarks/tutorial.py`,
  one function creating one Cloud Task with `google-cloud-tasks`.

Every start is a fresh instance: no bytecode of the project's own modules (the
deployment archive ships the sources only; `__pycache__` folders are removed
before each start and none are written). Installed packages keep theirs, as
pip compiles them when it installs them during the build.

Also: the import time of `main.py`, by module, from `python -X importtime`,
on top of `functions_framework` (which both functions import anyway).
"""

from __future__ import annotations

import compileall
import contextlib
import json
import py_compile
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.processes import HELLO_SOURCE, TUTORIAL_SOURCE, Function, base_env
from devstack.datocms_simulator import DatoCMSSimulator
from devstack.stack import ROOT, Secrets, free_port
from devstack.tasks_emulator import TasksEmulator
from tests.emulators import firestore_emulator

PROJECT, LOCATION, QUEUE = "bench", "europe-west1", "steps"
QUEUE_PATH = f"projects/{PROJECT}/locations/{LOCATION}/queues/{QUEUE}"
OWN_PACKAGES = ("core", "adapters", "handlers", "benchmarks", "devstack")

#: The production configuration's state store: Firestore, against its official emulator.
PRODUCTION_STATE = "STATE_BACKEND=firestore (Firestore emulator)"

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
    #: `delete_track`, local configuration, had the project's own bytecode been shipped
    #: (`compileall --invalidation-mode unchecked-hash`, as Cloud Functions' build does for
    #: the installed dependencies only): what shipping it would give. Not how it deploys.
    with_bytecode: list[float]
    production: list[float] = field(default_factory=list)  # delete_track, Cloud Tasks emulator
    tutorial: list[float] = field(default_factory=list)  # one create_task, same emulator
    production_state: str = "default (not wired)"

    @property
    def production_ratio(self) -> float | None:
        if not self.production or not self.tutorial:
            return None
        return statistics.median(self.production) / statistics.median(self.tutorial)

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
    def bytecode_ratio(self) -> float | None:
        if not self.with_bytecode:
            return None
        return statistics.median(self.with_bytecode) / self.hello_median

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
            # A fresh state file: records of an earlier run would answer "duplicate".
            "STATE_PATH": str(Path(tempfile.mkdtemp(prefix="bench-state-")) / "state.sqlite3"),
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


def compile_own_bytecode() -> None:
    """What a build that shipped bytecode would do: `compileall`, hashes unchecked."""
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    compileall.compile_file(ROOT / "main.py", quiet=2, invalidation_mode=mode)
    for package in ("core", "adapters", "handlers"):
        compileall.compile_dir(ROOT / package, quiet=2, invalidation_mode=mode)


def drop_own_bytecode() -> None:
    """Remove the compiled bytecode of the project's own modules: a fresh instance has none."""
    shutil.rmtree(ROOT / "__pycache__", ignore_errors=True)
    for package in OWN_PACKAGES:
        for folder in (ROOT / package).rglob("__pycache__"):
            shutil.rmtree(folder, ignore_errors=True)


def production_env(env: dict[str, str], emulator: TasksEmulator, firestore: str) -> dict[str, str]:
    env = dict(env)
    env.update(
        {
            "TASKS_BACKEND": "cloudtasks",
            "TASKS_PROJECT": PROJECT,
            "TASKS_LOCATION": LOCATION,
            "TASKS_QUEUE": QUEUE,
            "CLOUD_TASKS_EMULATOR_HOST": emulator.host,
        }
    )
    env.update(
        {
            "STATE_BACKEND": "firestore",
            "FIRESTORE_EMULATOR_HOST": firestore,
            "FIRESTORE_PROJECT": PROJECT,
        }
    )
    return env


def measure(runs: int, *, production: bool = False) -> tuple[list[float], list[float], list[float]]:
    """Seconds to the first 2xx of `delete_track` and of its baseline, `runs` each, in turn,
    and (local only) of `delete_track` with the project's own bytecode.

    Local: against hello world. Production: both against the Cloud Tasks emulator,
    `delete_track` in the production configuration, the baseline `tutorial.py`.
    """
    secrets = Secrets()
    service: list[float] = []
    baseline: list[float] = []
    compiled: list[float] = []
    with contextlib.ExitStack() as stack:
        simulator = stack.enter_context(DatoCMSSimulator(api_token=secrets.datocms_token))
        env = with_bytecode_cache(service_env(secrets, simulator.base_url), None)
        other_env = with_bytecode_cache(base_env(), None)
        target, source, body = "hello", HELLO_SOURCE, b"{}"
        if production:
            emulator = stack.enter_context(TasksEmulator([QUEUE_PATH]))
            firestore = stack.enter_context(firestore_emulator())
            env = production_env(env, emulator, firestore)
            other_env.update(
                {
                    "CLOUD_TASKS_EMULATOR_HOST": emulator.host,
                    "TUTORIAL_QUEUE": QUEUE_PATH,
                    "TUTORIAL_TARGET_URL": f"http://127.0.0.1:{free_port()}/",
                }
            )
            target, source, body = "create_task", TUTORIAL_SOURCE, _deletion("tutorial")
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {secrets.intake_token}",
        }
        for index in range(runs):
            track = f"cold_{'p' if production else 'l'}{index}"
            arms = ["service", "baseline"] if production else ["service", "baseline", "compiled"]
            for which in arms[index % len(arms) :] + arms[: index % len(arms)]:
                if which == "baseline":
                    baseline.append(
                        _start(lambda: Function(target, other_env, source=source), body, {})
                    )
                    continue
                simulator.add_track(UPLOAD_ID, f"{track}_{which}", job_seconds=1)
                start = _start(
                    lambda: Function("delete_track", env),
                    f"{track}_{which}",
                    headers,
                    bytecode=which == "compiled",
                )
                (service if which == "service" else compiled).append(start)
    return service, baseline, compiled


def _start(
    make: Callable[[], Function],
    body: str | bytes,
    headers: dict[str, str],
    *,
    bytecode: bool = False,
    tries: int = 2,
) -> float:
    """Seconds from a fresh start to the first 2xx; a process that dies before answering
    (seen once in a long run, without output) is started again, once. `bytecode`: the
    project's own modules compiled first, as a build would ship them."""
    data = _deletion(body) if isinstance(body, str) else body
    for attempt in range(tries):
        drop_own_bytecode()
        if bytecode:
            compile_own_bytecode()
        try:
            with make() as function:
                return function.first_success(data, headers)
        except RuntimeError as error:
            if attempt == tries - 1 or "exited" not in str(error):
                raise
            print(f"cold start: {error}; starting again", file=sys.stderr)
    raise AssertionError("unreachable")


def run(runs: int = 10, import_repeats: int = 3) -> ColdStartReport:
    service, hello, compiled = measure(runs)
    production, tutorial, _ = measure(runs, production=True)
    imports = import_profile(import_repeats)
    state = PRODUCTION_STATE
    return ColdStartReport(
        runs,
        service,
        hello,
        imports,
        compiled,
        production,
        tutorial,
        state or "default (not wired)",
    )


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
