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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs (not for the record)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    quick = args.quick
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def step(name: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {name}", file=sys.stderr, flush=True)

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
    results = report.Results(
        polling=mixes,
        ratelimit=limited,
        coldstart=cold,
        throughput=through,
        state=stored,
        seconds=time.monotonic() - started,
        learner_wired=learner_wired(),
        started=stamp,
    )
    step("6/6 selector fan-out")
    text = report.render(results) + "\n" + selector.run(tracks=10 if quick else 50).render()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    step(f"wrote {args.output}")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
