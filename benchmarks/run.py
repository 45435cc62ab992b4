"""`make bench`: run the four benchmarks and write `docs/PERFORMANCE.md`.

    python -m benchmarks.run            # everything (a few minutes)
    python -m benchmarks.run --quick    # a small version of each, to try the machinery

Every figure is a ratio against a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import coldstart, polling, ratelimit, report, selector, state, throughput
from devstack.stack import ROOT

OUTPUT = ROOT / "docs" / "PERFORMANCE.md"


def learner_wired() -> bool:
    """Whether the service builds its poll policy with the learned planner."""
    from adapters.service import Service  # noqa: PLC0415

    return "learning" in getattr(Service, "__dataclass_fields__", {})


def cpu_ticks() -> list[int] | None:
    """The machine's CPU time so far, by kind (`/proc/stat`; None where there is none)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            return [int(field) for field in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def stolen(before: list[int] | None, after: list[int] | None) -> float | None:
    """The share of CPU time the host took from this machine in between (steal, the
    8th field): high steal is why figures move between runs."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return None
    spent = [b - a for a, b in zip(before, after, strict=False)]
    total = sum(spent[:8])
    return spent[7] / total if total > 0 else None


class Steps:
    """Announces each benchmark on stderr and notes the CPU steal during the previous one."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.steal: dict[str, float] = {}
        self._last: tuple[str, list[int] | None] | None = None

    def __call__(self, name: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f} s] {name}", file=sys.stderr, flush=True)
        ticks = cpu_ticks()
        if self._last is not None:
            share = stolen(self._last[1], ticks)
            if share is not None:
                self.steal[self._last[0]] = share
        self._last = (name.split(" ", 1)[0], ticks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (not for the record)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    step = Steps(started)
    step("1/6 polling efficiency")
    mixes = polling.run(jobs=200 if quick else 2_000)
    step("2/6 rate-limit ceiling")
    limited = ratelimit.run(deletions=30 if quick else 300, timeout=60 if quick else 240)
    step("3/6 cold start")
    cold = coldstart.run(runs=2 if quick else 10)
    step("4/6 intake overhead")
    through = throughput.run(rounds=1 if quick else 6, duration=1.0 if quick else 2.5)
    step("5/6 state store (Firestore emulator)")
    stored = state.run(requests_=20 if quick else 200, rounds=1 if quick else 4)
    step("6/6 selector fan-out")
    fanout = selector.run(tracks=10 if quick else 50)
    step("done")
    results = report.Results(
        polling=mixes,
        ratelimit=limited,
        coldstart=cold,
        throughput=through,
        state=stored,
        seconds=time.monotonic() - started,
        learner_wired=learner_wired(),
        started=stamp,
        steal=step.steal,
    )
    text = report.render(results) + "\n" + fanout.render()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    step(f"wrote {args.output}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
