"""Shared fixtures: a moto-backed AWS built from template.yaml, and the broker over it."""

from __future__ import annotations

import copy
import functools
import gc
import json
import os
import resource
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import settings as hypothesis_settings
from moto import mock_aws

from mqless import assembly, wiring
from mqless.domain.clock import ManualClock
from mqless.domain.queues.service import QueueService
from mqless.settings import Settings
from mqless.storage.destinations import QueueRegistry
from mqless.storage.envelope import EnvelopeCipher, KmsKeyProvider
from mqless_cli.cfn import Stack, Template, load_template, provision
from mqless_cli.local.botocore_shortcuts import botocore_shortcuts
from mqless_cli.local.moto_fixes import fixed_moto
from mqless_cli.local.realism import RealismReport, parse_realism, realistic_aws
from mqless_cli.local.unsigned_requests import requests_unsigned
from tests.inline_dispatch import INLINE_DISPATCH

# Hypothesis' deadline (200 ms an example) measures the machine, not the code: on a shared
# 2-core machine a property test of the envelope failed it once. What the properties assert
# is unchanged; a slow example is not a failure.
hypothesis_settings.register_profile("mqless", deadline=None)
hypothesis_settings.load_profile("mqless")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
# moto normally gives boto3 a new default session on every start, and each new session
# loads the service models again (~0.1 s a client): keep one for the whole run.
MOTO_CONFIG: dict[str, Any] = {"core": {"reset_boto3_session": False}}


@functools.cache
def _parsed_template() -> Template:
    return load_template(TEMPLATE)


def project_template() -> Template:
    """template.yaml, parsed once per run (a copy each time: callers may change theirs)."""
    return copy.deepcopy(_parsed_template())


GC_THRESHOLDS = (20_000, 10, 10)
"""The garbage collector runs after 20,000 allocations, not 700 (older generations as often
relative to that): moto and botocore allocate containers by the thousand per request, and
with the defaults some 5,000 collections ran in 400 component tests, a fifth of their CPU
time. Not for `mqless dev`: there it cost ~9 MB resident for no gain, its startup objects
being frozen already."""

DURATIONS = ROOT / "tests" / "durations.json"
"""Seconds each test file took in a whole run (setup and teardown included), longest first:
the order in which `make test` hands files to its workers. Refresh it with
`pytest -n 4 --dist loadfile --store-durations`, on 4 workers as `make test` runs them (the
files run are updated, the others kept); a file it does not list counts a second a test."""

CPU_SECONDS = ROOT / "test-output" / "cpu-seconds.json"
"""`--store-durations` also writes here the CPU time (user + system) each test file used:
its test process's and that of the processes it started and waited for (`mqless dev`, CLI
calls, `mqless invoke`, node). On a shared machine wall time says more about the neighbours
than about the tests; CPU time says where `make test`'s time goes once both cores are busy."""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store-durations",
        action="store_true",
        help=f"write how long each test file took to {DURATIONS.relative_to(ROOT)}",
    )


def pytest_configure(config: pytest.Config) -> None:
    # before any client is made: every boto3 client indexes the log items it writes
    INLINE_DISPATCH.install()
    gc.set_threshold(*GC_THRESHOLDS)
    # pytest-xdist (--dist loadfile) gives its workers the files in collection order; left to
    # itself it first sorts them by how many tests they have, which sends the longest file
    # (one schemathesis test of minutes) last, to run alone while the other worker idles.
    # The order of pytest_collection_modifyitems below (longest first) is kept instead.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False
    if config.getoption("--store-durations"):
        # on each process that runs tests (the workers under xdist): what each report cost
        config.pluginmanager.register(_CpuMeter(), "mqless-cpu-meter")
        if not hasattr(config, "workerinput"):
            config.pluginmanager.register(_DurationRecorder(), "mqless-durations")


def pytest_collection_finish(session: pytest.Session) -> None:
    # what is loaded by now (pytest, boto3's service models, moto, the test modules) lives
    # as long as the run: out of the collector's sight, full collections stay short
    gc.collect()
    gc.freeze()


def _cpu_seconds() -> float:
    """User + system time of this process, of its children that have been waited for, and
    of those still running."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + _running()


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _running() -> float:
    """CPU seconds of this process's running descendants so far, from Linux's /proc (0
    elsewhere). getrusage counts a child only once it has been waited for: a module's
    `mqless dev` (or the browser of test_console) would charge all it did for the module's
    tests to the teardown that stops it, as 94 of the suite's 433 CPU-s were. A descendant
    that ends up reaped outside this tree (some of Chromium's, under test_console) takes
    what it was counted with it: that file's module teardown shows a negative figure, and
    its whole (setup + call + teardown) stays close to what `time` measures."""
    total, parents = 0.0, [os.getpid()]
    while parents:
        parent = parents.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as listed:
                    children = listed.read().split()
            except OSError:
                continue
            for child in children:
                try:
                    with open(f"/proc/{child}/stat") as stat:
                        fields = stat.read().rpartition(")")[2].split()
                except OSError:
                    continue
                # utime, stime and those of its children it has waited for (cutime, cstime)
                total += sum(int(ticks) for ticks in fields[11:15]) / _TICKS
                parents.append(int(child))
    return total


class _CpuMeter:
    """`--store-durations`: each report (setup, call, teardown) carries the CPU time used
    since the one before it in this process; a module fixture's teardown (a `mqless dev`
    reaped) counts in its file. Only then: reading /proc for every thread of the process at
    each of the ~9,000 reports of a run costs a worker ~0.1-3 ms a report (more threads,
    more files read), for a figure nothing else reads."""

    def __init__(self) -> None:
        self.mark = 0.0

    def pytest_collection_finish(self) -> None:
        self.mark = _cpu_seconds()  # the first test's setup is not charged with the collection

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self) -> Iterator[None]:
        outcome = yield
        now = _cpu_seconds()
        outcome.get_result().user_properties.append(("cpu_seconds", now - self.mark))
        self.mark = now


@pytest.hookimpl(tryfirst=True)  # before --ff/--lf, which then reorder as they say
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the test files longest first (tests/durations.json), each file's tests in their
    own order: the longest-processing-time-first rule, which keeps two workers finishing
    together instead of one running the last long file alone."""
    known: dict[str, float] = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    counts = Counter(_file_of(item) for item in items)
    first_seen = {name: n for n, name in enumerate(dict.fromkeys(map(_file_of, items)))}

    def weight(name: str) -> tuple[float, int]:
        return -known.get(name, float(counts[name])), first_seen[name]

    items.sort(key=lambda item: weight(_file_of(item)))


def _file_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


class _DurationRecorder:
    """`--store-durations`: adds up each test file's setup, call and teardown times."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.split("::", 1)[0]
        self.seconds[name] = self.seconds.get(name, 0.0) + report.duration
        cpu = sum(value for key, value in report.user_properties if key == "cpu_seconds")
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        total_cpu, total_wall = sum(self.cpu.values()), sum(self.seconds.values())
        terminalreporter.write_sep("=", "test files: wall and CPU seconds (longest CPU first)")
        terminalreporter.write_line(f"{total_wall:8.1f} {total_cpu:8.1f}  all files")
        for name, cpu in sorted(self.cpu.items(), key=lambda kv: -kv[1])[:25]:
            terminalreporter.write_line(f"{self.seconds[name]:8.1f} {cpu:8.1f}  {name}")

    def pytest_sessionfinish(self) -> None:
        CPU_SECONDS.parent.mkdir(exist_ok=True)
        ranked_cpu = sorted(self.cpu.items(), key=lambda kv: (-kv[1], kv[0]))
        CPU_SECONDS.write_text(json.dumps({k: round(v, 1) for k, v in ranked_cpu}, indent=1) + "\n")
        # files this run did not run keep their figures; files gone from tests/ are dropped
        stored = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
        merged = {k: v for k, v in stored.items() if (ROOT / k).exists()} | self.seconds
        ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
        DURATIONS.write_text(json.dumps({k: round(v, 1) for k, v in ranked}, indent=1) + "\n")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; never reach real AWS."""
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        # boto3 >= 1.36 sends DynamoDB Streams calls to account endpoints moto cannot match
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    """moto as `mqless dev` runs it: its fixes (mqless_cli.local.moto_fixes), botocore's
    shortcuts and unsigned requests (mqless_cli.local.botocore_shortcuts)."""
    with (
        mock_aws(config=MOTO_CONFIG),  # type: ignore[call-overload]
        fixed_moto(),
        botocore_shortcuts(),
        requests_unsigned(),
    ):
        yield


@pytest.fixture
def realism(request: pytest.FixtureRequest) -> Iterator[RealismReport]:
    """The AWS behaviours moto hides (`mqless dev --realism`), on for one test: the spec of
    the test's `realism` marker, else $MQLESS_REALISM, else `aws`. Yields what they did."""
    marker = request.node.get_closest_marker("realism")
    spec = marker.args[0] if marker else os.environ.get("MQLESS_REALISM") or "aws"
    with realistic_aws(parse_realism(spec)) as report:
        yield report


@pytest.fixture
def dynamodb(moto_aws: None) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def kms(moto_aws: None) -> Any:
    return boto3.client("kms", region_name="us-east-1")


@pytest.fixture
def stack(dynamodb: Any, kms: Any) -> Stack:
    """Every table, key and alias that template.yaml declares, created in moto."""
    stack = provision(project_template(), dynamodb=dynamodb, kms=kms)
    INLINE_DISPATCH.serve(Settings.from_env(stack.environment("HttpApiFunction")))
    return stack


@pytest.fixture
def settings(stack: Stack) -> Settings:
    return Settings.from_env(stack.environment("HttpApiFunction"))


@pytest.fixture
def clock() -> ManualClock:
    import time

    return ManualClock(start_ms=time.time_ns() // 1_000_000)


@pytest.fixture
def cipher(kms: Any, settings: Settings, clock: ManualClock) -> EnvelopeCipher:
    return EnvelopeCipher(KmsKeyProvider(kms, settings.kms_key_id), clock)


@pytest.fixture
def service(
    dynamodb: Any, kms: Any, settings: Settings, cipher: EnvelopeCipher, clock: ManualClock
) -> QueueService:
    """The broker on a manual clock: tests move time instead of sleeping."""
    INLINE_DISPATCH.serve(settings, clock)
    return assembly.build_queue_service(
        settings,
        dynamodb=dynamodb,
        kms=kms,
        cipher=cipher,
        registry=QueueRegistry(dynamodb, settings.destinations_table, clock),
        time=clock,
    )


@pytest.fixture
def function_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The HTTP function's environment from the template, applied as Lambda would."""
    env = stack.environment("HttpApiFunction")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    yield env
    wiring.reset()


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # a developer's shell must not leak table names into tests
    for name in ("MESSAGES_TABLE", "DESTINATIONS_TABLE", "KMS_KEY_ID"):
        if name in os.environ:
            monkeypatch.delenv(name)
