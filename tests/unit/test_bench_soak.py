"""bench/bench_local.py's soak: the RSS it reports at 50,000 messages, measured or projected."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "bench_local.py"
    spec = importlib.util.spec_from_file_location("bench_local_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_soak_that_stops_short_projects_its_growth_to_50000(bench: ModuleType) -> None:
    # Given a soak that began at 10,000 messages and 200 MB and ended at 30,000 and 300 MB
    figures = bench.Figures(messages=30_000, rss_mb=300.0, soak_from=(10_000, 200.0))
    # When the bench projects it
    projection = bench.rss_projection(figures)
    # Then it is 5 KB a message, 100 MB more for the 20,000 messages not sent: 400 MB
    assert projection is not None
    per_message_kb, projected = projection
    assert per_message_kb == pytest.approx(5.12)
    assert projected == pytest.approx(400.0)


def test_a_soak_that_reached_50000_is_measured_not_projected(bench: ModuleType) -> None:
    # Given a soak that sent 50,000 messages
    figures = bench.Figures(messages=50_000, rss_mb=380.0, soak_from=(10_000, 200.0))
    # When the bench reports it, Then there is no projection: the RSS row is the measurement
    assert bench.rss_projection(figures) is None
