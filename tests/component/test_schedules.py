"""The local schedule runner invokes scheduled functions as EventBridge Scheduler does.

The stream fixture app's TickFunction (a ScheduleV2 `rate(1 minute)`) journals each event.
It calls no AWS service, so these tests need the template but not moto.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mqless_cli.cfn import Schedule, Stack, load_template
from mqless_cli.local.functions import FunctionHost
from mqless_cli.local.schedules import ScheduleRunner

APP = Path(__file__).resolve().parents[1] / "e2e" / "fixtures" / "stream_app" / "template.yaml"


class TickApp:
    """The fixture app's functions, with the tick function's journal."""

    def __init__(self, stack: Stack, journal: Path) -> None:
        self.stack = stack
        self.functions = FunctionHost(stack, APP.parent)
        self.journal = journal
        self.runners: list[ScheduleRunner] = []

    def runner(self, schedules: list[Schedule] | None = None, **options: Any) -> ScheduleRunner:
        runner = ScheduleRunner(
            self.stack.schedules() if schedules is None else schedules,
            self.functions,
            region=self.stack.region,
            account_id=self.stack.account_id,
            **options,
        )
        self.runners.append(runner)
        return runner

    def ticks(self) -> list[dict[str, Any]]:
        if not self.journal.exists():
            return []
        # the function may be writing right now: a last line without its newline is not yet whole
        lines = self.journal.read_text(encoding="utf-8").split("\n")[:-1]
        return [entry for entry in map(json.loads, lines) if entry["kind"] == "tick"]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickApp]:
    journal = tmp_path / "journal.jsonl"
    monkeypatch.setenv("STREAM_APP_JOURNAL", str(journal))
    tick_app = TickApp(Stack(load_template(APP)), journal)
    yield tick_app
    for runner in tick_app.runners:
        runner.stop()


def wait_for_ticks(app: TickApp, count: int, timeout: float = 3.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(app.ticks()) < count:
        assert time.monotonic() < deadline, f"only {len(app.ticks())} of {count} ticks came"
        time.sleep(0.01)
    return app.ticks()


def test_a_rate_schedule_fires_at_the_override_rate(app: TickApp) -> None:
    # Given the template's rate(1 minute) schedule run every 0.1 s
    runner = app.runner(rate_override_seconds=0.1)
    began = time.monotonic()
    runner.start()
    # When four runs have happened
    ticks = wait_for_ticks(app, 4)
    elapsed = time.monotonic() - began
    # Then they came at about the override rate, not once a minute
    assert 0.35 <= elapsed < 1.5
    gaps = [b["received_at"] - a["received_at"] for a, b in zip(ticks, ticks[1:], strict=False)]
    assert all(0.05 < gap < 0.3 for gap in gaps), gaps
    assert runner.runs["TickFunction"] >= 4


def test_the_default_event_is_eventbridge_schedulers_notification(app: TickApp) -> None:
    # Given a schedule without an Input
    runner = app.runner(rate_override_seconds=0.05)
    runner.start()
    # When it fires
    event = wait_for_ticks(app, 1)[0]["event"]
    # Then the function gets Scheduler's default notification for a Lambda target
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
    assert event["version"] == "0"
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.scheduler"
    assert event["account"] == app.stack.account_id
    assert event["region"] == "us-east-1"
    assert event["detail"] == "{}"
    assert event["resources"] == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/TickFunction"
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["time"])
    fired = datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - fired).total_seconds()) < 5


def test_run_now_invokes_the_function_at_once_and_returns_its_result(app: TickApp) -> None:
    # Given a runner that is not even started
    runner = app.runner()
    # When a run is asked for
    result = runner.run_now("TickFunction")
    # Then the function ran with the scheduled event and its result comes back
    assert result == {"ticked": True, "function": "mqless-TickFunction"}
    assert [tick["event"]["source"] for tick in app.ticks()] == ["aws.scheduler"]
    with pytest.raises(KeyError):
        runner.run_now("ChangesFunction")


def test_an_input_is_sent_as_is_with_context_attributes_filled_in(app: TickApp) -> None:
    # Given a schedule with an Input that uses Scheduler's context attributes
    schedule = Schedule(
        function="TickFunction",
        expression="rate(5 minutes)",
        input='{"job": "sweep", "schedule": "<aws.scheduler.schedule-arn>", '
        '"attempt": "<aws.scheduler.attempt-number>"}',
    )
    # When it runs
    app.runner([schedule]).run_now("TickFunction")
    # Then the function gets that JSON, not the default notification
    assert app.ticks()[0]["event"] == {
        "job": "sweep",
        "schedule": "arn:aws:scheduler:us-east-1:123456789012:schedule/default/TickFunction",
        "attempt": "1",
    }


def test_an_input_that_is_not_json_is_refused(app: TickApp) -> None:
    # Given a schedule whose input is not JSON
    schedule = Schedule(function="TickFunction", expression="rate(1 minute)", input="sweep now")
    # When a runner is made for it
    # Then it is refused: the input must be well-formed JSON
    with pytest.raises(ValueError, match="well-formed JSON"):
        app.runner([schedule])


def test_a_cron_schedule_runs_only_with_a_rate_override(
    app: TickApp, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a cron schedule
    cron = Schedule(function="TickFunction", expression="cron(0 3 * * ? *)")
    # When it runs without a rate override
    with caplog.at_level(logging.WARNING):
        idle = app.runner([cron])
    idle.start()
    # Then it is logged as not run locally
    assert "not run locally" in caplog.text
    # When it runs with a rate override
    app.runner([cron], rate_override_seconds=0.05).start()
    # Then it fires at that rate, and the run without one never fired
    wait_for_ticks(app, 2)
    assert idle.runs == {}


def test_stop_ends_the_timers_promptly(app: TickApp) -> None:
    # Given a started runner whose timer waits (rate 1 minute)
    runner = app.runner()  # rate(1 minute): the timer is waiting
    runner.start()
    # When it is stopped
    began = time.monotonic()
    runner.stop()
    # Then stop returns within a second, and nothing ran
    assert time.monotonic() - began < 1.0
    assert app.ticks() == []
