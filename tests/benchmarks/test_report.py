"""`docs/PERFORMANCE.md` is rendered from results: figures, baselines, goals, and misses."""

from __future__ import annotations

from dataclasses import replace

from benchmarks.coldstart import ColdStartReport, ImportLine
from benchmarks.polling import Cell, GridReport, Result, ShapeReport
from benchmarks.ratelimit import RateLimitReport
from benchmarks.report import Results, render
from benchmarks.throughput import ThroughputReport


def results(*, cold: float = 0.5, throughput: float = 250.0) -> Results:
    def shape(name: str, learned: float) -> ShapeReport:
        baselines = (
            Result("JS client (1, 2, 3 s, ...)", 3.0, 1.0, 2.0),
            Result("Ruby client (every 1 s)", 4.0, 0.5, 1.0),
            Result("google-api-core", 3.0, 2.0, 4.0),
        )
        cells = tuple(Cell(n, Result("service", learned, 0.5, 1.0), (1.0, 2.0)) for n in (1, 100))
        return ShapeReport(name, "a shape", 100, baselines, baselines[0], cells)

    limited = RateLimitReport(
        deletions=10,
        job_seconds=2.0,
        elapsed=1.1,
        complete=True,
        requests=20,
        rate_limited=0,
        early=0,
        deletes=10,
        polls=10,
        intake_statuses={202: 10},
        intake_bodies={"pending": 10},
        callbacks_per_request={1: 10},
        failed_deliveries=0,
        intake_seconds=[0.1] * 10,
    )
    imports = [
        ImportLine("main", 100, 5000, 0),
        ImportLine("handlers.intake", 200, 4000, 1),
        ImportLine("jsonschema", 3000, 3500, 2),
    ]
    return Results(
        polling=GridReport((shape("constant", 1.5), shape("pareto", 2.0)), (1, 100)),
        ratelimit=limited,
        coldstart=ColdStartReport(2, [cold, cold], [0.4, 0.4], imports, [0.45, 0.45]),
        throughput=ThroughputReport(1.0, 8, [throughput], [300.0], 0),
        state=None,
        seconds=12.0,
        learner_wired=True,
        started="2026-11-28 12:00 UTC",
    )


def test_every_figure_stands_next_to_its_baseline_and_goal() -> None:
    text = render(results())
    for heading in ("## Summary", "## 1. Polling", "## 2. The rate", "## 3. Cold", "## 4. Intake"):
        assert heading in text
    assert "Every goal is met in this run." in text
    assert (
        "| 3 | cold start to first 2xx (median of 2) | 500 ms | 400 ms (hello world) | 1.25" in text
    )
    assert "`jsonschema`" in text


def test_missed_goals_are_reported_with_the_reason() -> None:
    text = render(results(cold=0.9, throughput=100.0))
    assert "Goals not met, and why:" in text
    assert "- 3: `delete_track` starts 2.25 x slower than a hello world" in text
    assert "compiles the service's own modules" in text
    assert "ratio 1.12 to hello world" in text  # what shipping bytecode would give
    assert "- 4: the intake serves under 0.6 x" in text
    assert text.count("**not met**") == 2


def test_every_cell_of_the_polling_grid_is_reported_with_its_ratio() -> None:
    text = render(results())
    assert "| constant | 4.00 | 4.50 | 5.00 | 4.00 (1.000) | 2.00 (0.500) | 2.00 (0.500) |" in text
    assert "| 1 | average saving over the grid | 43.8% | | 0.562 | <= 0.92 | met |" in text


def test_a_cell_costlier_than_the_best_official_client_is_named() -> None:
    base = results()
    grid = base.polling
    costly = ShapeReport(
        "heavy",
        "a shape",
        100,
        grid.shapes[0].baselines,
        grid.shapes[0].cold,
        (Cell(5, Result("service", 4.5, 0.5, 1.0), ()),),
    )
    text = render(replace(base, polling=GridReport((*grid.shapes, costly), (1, 5, 100))))
    assert "in the cell(s) heavy / 5 (1.250)" in text


def test_the_state_store_section_reports_losses_and_the_throughput_ratio() -> None:
    from dataclasses import replace

    from benchmarks.state import StateReport

    state = StateReport(200, 5, 200, 200, 0, {"202": 200, "409": 780, "200": 20}, [60.0], [240.0])
    text = render(replace(results(), state=state))
    assert "## 5. The state store" in text
    assert "| 200 | 200 | 0 | 200: 20, 202: 200, 409: 780 |" in text
    assert "| 60 | 240 | 0.25 |" in text and "**not met**" in text
