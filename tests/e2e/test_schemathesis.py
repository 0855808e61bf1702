"""Bad input, proven: schemathesis against the OpenAPI document that `mqless dev` serves.

Every operation of GET /openapi.json is called with generated requests (schemathesis'
examples, coverage and fuzzing phases; valid and invalid input) against one `mqless dev`.
Each response must be no 5xx, have a documented status and content type, and a body valid
against the documented schema (errors: the `default` Problem). The cases are counted and
the total must reach MIN_CASES, so the floor is enforced rather than assumed.

Random input rarely names an existing queue, so a few queues, messages, leases and a
subscription are seeded first, and the generated path parameters and receipts are
sometimes swapped for those (schema hooks below): such cases get past the 404s into the
broker itself.

Every request carries the dev token (an administrator of everything), so the cases reach
the operations rather than the authorizer; the `dev` principal itself is never a generated
path parameter, since replacing or deleting it would lock the rest of the run out.

Undocumented methods (TRACE, QUERY, ...) are sent by a test of their own, so that a failure
there does not cut the fuzzing of the documented ones short. There is no stateful test:
the document has no links, and scenarios along the links schemathesis infers draw from live
responses of a server that keeps its state between scenarios, which Hypothesis reports as
FlakyStrategyDefinition.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.transport.requests import ManagedCookiesSession

from tests.e2e.conftest import ROOT, DevServer, start_dev

# Fuzzing examples per operation. The examples and coverage phases send ~1,600 cases of
# their own whatever this is (each documented example; boundary values, missing required
# fields, wrong types for every parameter); each fuzzing example adds about one case per
# operation (~35). At 25 a run sends ~2,500 cases over the 39 operations: every operation,
# and every status that 60 (~3,700 cases, half as many again) met more than once in a hundred
# cases; rarer ones (a fuzzed move or nack that succeeds) come and go between runs at 60 too.
MAX_EXAMPLES = 25
MIN_CASES = 1_000
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # generated bodies can be large and many are filtered; neither is a test failure here
    suppress_health_check=list(HealthCheck),
)

QUEUES = ("orders", "orders.fifo", "poison", "poison.dlq")
SCRATCH = tuple(f"scratch-{n}" for n in range(5))
RECEIPT_PATHS = ("/ack", "/nack", "/visibility")
TOPICS = ("orders.created", "orders.*", "orders.>")
PRINCIPALS = ("fuzzed", "fuzzed.other")
DEV_PRINCIPAL = "dev"
VALID_NAME = st.from_regex(re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}"), fullmatch=True)
# long polls are proven in test_http_tour; here they would only add wall time
MAX_WAIT_SECONDS = 0.2


@dataclass
class Seeded:
    """What exists in the broker before the run: names, message ids and live receipts."""

    message_ids: list[str] = field(default_factory=list)
    receipts: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """Cases sent, by test, operation and status, over the whole module."""

    cases: dict[tuple[str, str], Counter[int]] = field(default_factory=dict)
    started: float | None = None

    def record(self, test: str, case: schemathesis.Case, status: int) -> None:
        if self.started is None:
            self.started = time.monotonic()
        label = f"{case.operation.method.upper()} {case.operation.path}"
        self.cases.setdefault((test, label), Counter())[status] += 1

    @property
    def total(self) -> int:
        return sum(sum(statuses.values()) for statuses in self.cases.values())

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started if self.started is not None else 0.0
        lines = [f"schemathesis: {self.total} cases in {elapsed:.0f} s"]
        for (test, label), statuses in sorted(self.cases.items()):
            by_status = " ".join(f"{code}:{n}" for code, n in sorted(statuses.items()))
            lines.append(f"  {sum(statuses.values()):5d}  {test:<8} {label:<48} {by_status}")
        return "\n".join(lines)


TALLY = Tally()


def _seed(http: httpx.Client) -> Seeded:
    seeded = Seeded()

    def ok(response: httpx.Response) -> dict[str, Any]:
        assert response.status_code < 300, (response.request.url, response.text)
        return response.json() if response.content else {}

    ok(http.put("/queues/orders", json={}))
    ok(http.put("/queues/orders.fifo", json={}))
    ok(http.put("/queues/poison", json={"max_receive_count": 1}))
    for n in range(20):
        body = {"body": f"order {n}", "attributes": {"tenant": "acme"}}
        seeded.message_ids.append(ok(http.post("/queues/orders/messages", json=body))["message_id"])
    for n in range(5):
        body = {"body": f"fifo {n}", "group_id": f"g{n % 2}"}
        seeded.message_ids.append(
            ok(http.post("/queues/orders.fifo/messages", json=body))["message_id"]
        )
    # leased for the whole run: receipts that ack, nack and visibility accept
    leased = ok(
        http.post(
            "/queues/orders/receive",
            json={"max_messages": 10, "visibility_timeout": 43200, "wait_seconds": 5},
        )
    )
    seeded.receipts += [m["receipt"] for m in leased["messages"]]
    # one message over its receive limit: dead-lettered at its next delivery attempt
    ok(http.post("/queues/poison/messages", json={"body": "poison"}))
    # (receivable once indexed: the first receive waits for it)
    first = ok(
        http.post("/queues/poison/receive", json={"visibility_timeout": 0, "wait_seconds": 5})
    )
    assert len(first["messages"]) == 1
    for _ in range(2):
        ok(http.post("/queues/poison/receive", json={"visibility_timeout": 0}))
    # the dead letter is in poison.dlq once the stream has indexed it there
    deadline = time.monotonic() + 10
    while ok(http.get("/queues/poison.dlq"))["counts"]["visible"] != 1:
        assert time.monotonic() < deadline, "the dead letter never reached poison.dlq"
        time.sleep(0.05)
    ok(http.put("/topics/orders.created/subscriptions/audit", json={"queue": "orders"}))
    for name in PRINCIPALS:
        grants = [{"pattern": "orders.*", "actions": ["send", "receive"]}]
        ok(http.put(f"/access/principals/{name}", json={"grants": grants}))
    for name in SCRATCH:
        ok(http.post(f"/queues/{name}/messages", json={"body": "scratch"}))
    return seeded


def _not_the_dev_principal(path_parameters: dict[str, Any]) -> dict[str, Any]:
    if path_parameters.get("principal_id") == DEV_PRINCIPAL:
        return {**path_parameters, "principal_id": PRINCIPALS[0]}
    return path_parameters


def _forged_receipt(queue: str, key: str, lease: str) -> str:
    raw = "\x1f".join((queue, key, lease)).encode()
    return "r1." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _with_hooks(loaded: schemathesis.BaseSchema, seeded: Seeded) -> None:
    """Swap some generated values for ones that name what was seeded.

    Each swapped field keeps its generated value as one choice, so the generated input
    (valid or not) is still sent too.
    """
    queues = st.sampled_from(QUEUES)
    message_ids = st.sampled_from(seeded.message_ids)
    receipts = st.sampled_from(seeded.receipts) | st.builds(
        _forged_receipt,
        st.just("orders") | queues,
        message_ids.map(lambda i: f"M#{i}") | st.text(min_size=1),
        st.text(min_size=1),
    )
    receipt_lists = st.lists(receipts, min_size=1, max_size=10)

    def swapped(values: dict[str, Any], swaps: dict[str, st.SearchStrategy[Any]]) -> Any:
        return st.fixed_dictionaries(
            {
                key: st.one_of(swaps[key], st.just(value)) if key in swaps else st.just(value)
                for key, value in values.items()
            }
        )

    @loaded.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        if not isinstance(path_parameters, dict) or context.operation is None:
            return st.just(path_parameters)
        operation = context.operation
        if operation.path.startswith("/topics/"):
            names = st.sampled_from(TOPICS)
        elif operation.path in ("/queues/{name}/purge", "/queues/{name}") and (
            operation.method.upper() != "GET"
        ):
            # deleting, purging or resetting the seeded queues would starve every later operation
            names = st.sampled_from(SCRATCH) | VALID_NAME
        elif "message_id" in path_parameters or operation.path.endswith(RECEIPT_PATHS):
            names = st.just("orders")  # where the seeded messages and leases are
        else:
            names = queues | VALID_NAME
        swaps = {
            "name": names,
            "message_id": message_ids,
            "sub": st.just("audit") | VALID_NAME,
            "principal_id": st.sampled_from(PRINCIPALS),
        }
        return swapped(path_parameters, swaps).map(_not_the_dev_principal)

    @loaded.hook
    def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
        if not isinstance(body, dict):
            return st.just(body)
        swaps = {
            "receipts": receipt_lists,
            "to": queues,
            "destination": queues,
            "queue": queues,
            "dead_letter_queue": queues,
        }
        return swapped(body, swaps)

    @loaded.hook
    def map_body(context: schemathesis.HookContext, body: Any) -> Any:
        if (
            context.operation is not None
            and context.operation.path.endswith("/receive")
            and isinstance(body, dict)
        ):
            wait = body.get("wait_seconds")
            if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 < wait <= 20:
                return {**body, "wait_seconds": min(wait, MAX_WAIT_SECONDS)}
        return body


@pytest.fixture(scope="module")
def fuzzed_dev() -> Iterator[tuple[DevServer, Seeded]]:
    """One `mqless dev` for this module (not the shared one: the fuzzing litters it)."""
    server = start_dev(ROOT / "template.yaml")
    try:
        assert server.token, f"`mqless dev` printed no dev token:\n{server.output()}"
        with httpx.Client(
            base_url=server.http_url, headers=server.auth_headers(), timeout=30
        ) as http:
            seeded = _seed(http)
        yield server, seeded
    finally:
        code = server.stop()
    assert code == 0, f"`mqless dev` exited with {code}:\n{server.output()}"


def _load(server: DevServer, seeded: Seeded) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_url(f"{server.http_url}/openapi.json")
    loaded.config.update(base_url=server.http_url, headers=server.auth_headers())
    _with_hooks(loaded, seeded)
    return loaded


@pytest.fixture(scope="module")
def served_schema(fuzzed_dev: tuple[DevServer, Seeded]) -> schemathesis.BaseSchema:
    """The document as served, for its own methods (every phase)."""
    loaded = _load(*fuzzed_dev)
    loaded.config.phases.coverage.unexpected_methods = set()
    return loaded


@pytest.fixture(scope="module")
def served_schema_other_methods(
    fuzzed_dev: tuple[DevServer, Seeded],
) -> schemathesis.BaseSchema:
    """The document as served, coverage phase only: it also sends undocumented methods."""
    loaded = _load(*fuzzed_dev)
    loaded.config.phases.examples.enabled = False
    loaded.config.phases.fuzzing.enabled = False
    return loaded


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32.5's from_fixture reads and rewrites `item._nodeid`, which pytest 9.2
    # no longer has; give it one (pytest itself ignores the attribute)
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="module")
def keep_alive() -> Iterator[requests.Session]:
    """One keep-alive connection for every case.

    Without a session `case.call` makes a session per case, so a new TCP connection (and a
    new handler thread in `mqless dev`) for each of some 2,000 cases. The requests stay the
    ones it sends without a session: the same session class, no default headers (schemathesis
    sends none of a session's own), no cookies carried from one case to the next. Proxy
    variables and ~/.netrc are not read for each request (`trust_env`): the server is on
    loopback and the dev token is the credential.
    """
    with ManagedCookiesSession() as session:
        session.headers.clear()
        session.trust_env = False
        yield session


def _call_and_validate(test: str, case: schemathesis.Case, session: requests.Session) -> None:
    response = case.call(session=session, timeout=30)
    TALLY.record(test, case, response.status_code)
    case.validate_response(response, checks=CHECKS)


schema = schemathesis.pytest.from_fixture("served_schema")
schema_other_methods = schemathesis.pytest.from_fixture("served_schema_other_methods")


@schema.parametrize()
@HYPOTHESIS
def test_every_operation_answers_as_documented(
    case: schemathesis.Case, keep_alive: requests.Session
) -> None:
    # Given a case schemathesis made from /openapi.json as `mqless dev` serves it, for a documented
    # operation
    # When it is sent
    # Then the answer is no 5xx, and its status, content type, body and headers are as documented
    _call_and_validate("fuzz", case, keep_alive)


@schema_other_methods.parametrize()
@HYPOTHESIS
def test_undocumented_methods_are_not_server_errors(
    case: schemathesis.Case, keep_alive: requests.Session
) -> None:
    # Given a case for a path, with a method its operation does not document
    # the first test already sent this phase's cases with the documented methods
    if case.method.upper() == case.operation.method.upper():
        return
    # When it is sent
    # Then the answer is no 5xx and conforms to the document
    _call_and_validate("methods", case, keep_alive)


def test_enough_cases_ran(
    fuzzed_dev: tuple[DevServer, Seeded], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the fuzzing tests above have run against one `mqless dev`
    server, _ = fuzzed_dev
    # When their cases are tallied
    summary = TALLY.summary()
    with capsys.disabled():
        print("\n" + summary)
    # Then at least MIN_CASES ran, and no function logged an ERROR while fuzzed
    # a failure ends its operation's run early, so failures elsewhere can show up here too
    assert TALLY.total >= MIN_CASES, summary
    failures = [line for line in server.output().splitlines() if " ERROR " in line]
    assert not failures, "functions failed while being fuzzed:\n" + "\n".join(failures)
