"""Per-principal quotas on what a principal creates: queues (dead-letter queues included)
and durable subscriptions.

The functions run with the template's environment (AUTH_MODE=required), the quotas
lowered through the same environment variables the template sets from its parameters,
so what is tested is the wiring too: template parameter -> Settings -> runtime.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from mqless import assembly, wiring
from mqless.domain.access.principals import GrantPolicy, Principal, parse_grants
from mqless.domain.access.quotas import Limits
from mqless.domain.errors import QuotaExceeded
from mqless.domain.messages import NewMessage
from mqless.settings import Settings
from mqless.storage import quotas
from mqless_cli.local.moto_fixes import atomic_requests
from tests.component.conftest import Aws, RecordingPusher
from tests.component.conftest_http import HttpApi, Reply
from tests.component.test_authorization import (
    Grants,
    as_,
    caller,
    frames,
    grant,
    json_frame,
    ok,
    snapshot,
    stomp,
    stomp_session,
    ws_connect,
)

pytestmark = pytest.mark.usefixtures("wiring_clients_kept")  # no test throttles or retries

MAKER = (grant("jobs.*", "send", "receive", "create"),)


def _stack_environment(aws: Aws) -> dict[str, str]:
    assert aws.stack is not None
    return aws.stack.environment("HttpApiFunction")


@pytest.fixture
def quota(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingPusher]:
    """The functions' environment from the template (quotas lowered with `set_quotas`), and
    pushes recorded instead of posted."""
    for name, value in _stack_environment(aws).items():
        monkeypatch.setenv(name, value)
    recording = RecordingPusher()
    monkeypatch.setattr(wiring, "pusher", lambda: recording)
    wiring.reset()
    yield recording
    wiring.reset()


def set_quotas(
    monkeypatch: pytest.MonkeyPatch, *, queues: int = 100, subscriptions: int = 100
) -> None:
    """Lower the quotas as the template's parameters would (the functions read them once)."""
    monkeypatch.setenv("QUEUES_PER_PRINCIPAL", str(queues))
    monkeypatch.setenv("DURABLE_SUBSCRIPTIONS_PER_PRINCIPAL", str(subscriptions))
    wiring.reset()


@pytest.fixture
def api(aws: Aws) -> HttpApi:
    assert aws.stack is not None
    return HttpApi(aws.stack.http_routes())


def send(api: HttpApi, who: str, grants: Grants, queue: str) -> Reply:
    return as_(api, caller(who, grants), "POST", f"/queues/{queue}/messages", {"body": "x"})


def over_quota(reply: Reply, what: str, quota: str, limit: int, who: str = "maker") -> None:
    """The reply is the 403 a principal over its quota gets, naming the quota."""
    parameter = {"queues": "QueuesPerPrincipal"}.get(quota, "DurableSubscriptionsPerPrincipal")
    noun = quota.replace("_", " ")
    assert reply.status == 403, reply.text
    assert reply.json == {
        "error": "quota_exceeded",
        "message": f"creating {what} would take {who!r} past its quota of {limit} {noun}: "
        f"delete some it created, or ask an operator to raise {parameter}",
        "details": [{"quota": quota, "limit": limit}],
    }


# ---- queues --------------------------------------------------------------------------------


def test_the_templates_quotas_reach_the_functions_as_settings(aws: Aws) -> None:
    # Given the functions' environment, as template.yaml declares it
    environment = _stack_environment(aws)
    # When the settings are read from it
    settings = Settings.from_env(environment)
    # Then the template's defaults are what every principal may create
    assert environment["QUEUES_PER_PRINCIPAL"] == "100"
    assert environment["DURABLE_SUBSCRIPTIONS_PER_PRINCIPAL"] == "100"
    assert settings.limits == Limits(queues=100, durable_subscriptions=100)


def test_a_principal_creates_queues_up_to_its_quota_and_not_one_more(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, api: HttpApi, aws: Aws
) -> None:
    # Given a quota of 4 queues, and a principal that may create jobs.* queues
    set_quotas(monkeypatch, queues=4)
    # When it sends to two new queues (each comes with its dead-letter queue)
    ok(send(api, "maker", MAKER, "jobs.a"), 201)
    ok(send(api, "maker", MAKER, "jobs.b"), 201)
    before = snapshot(aws)
    # and then to a third
    reply = send(api, "maker", MAKER, "jobs.c")
    # Then the third is refused with a problem naming the quota, and nothing is written
    over_quota(reply, "queue 'jobs.c' and its dead-letter queue 'jobs.c.dlq'", "queues", 4)
    assert snapshot(aws) == before
    assert (
        quotas.used(aws.dynamodb, aws.settings.destinations_table, "maker")[quotas.Quota.QUEUES]
        == 4
    )


def test_a_queue_and_its_dead_letter_queue_are_created_together_or_not_at_all(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, api: HttpApi, aws: Aws
) -> None:
    # Given a quota of 3 queues, two of them used
    set_quotas(monkeypatch, queues=3)
    ok(send(api, "maker", MAKER, "jobs.a"), 201)
    before = snapshot(aws)
    # When the principal sends to a new queue, which needs a dead-letter queue too
    reply = send(api, "maker", MAKER, "jobs.b")
    # Then neither is created: no queue without its dead-letter queue
    over_quota(reply, "queue 'jobs.b' and its dead-letter queue 'jobs.b.dlq'", "queues", 3)
    assert snapshot(aws) == before


def test_deleting_its_queues_gives_the_creator_its_quota_back(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, api: HttpApi
) -> None:
    # Given a principal at its quota of 4 queues
    set_quotas(monkeypatch, queues=4)
    for queue in ("jobs.a", "jobs.b"):
        ok(send(api, "maker", MAKER, queue), 201)
    # When an admin (not the creator) deletes one queue and its dead-letter queue
    for queue in ("jobs.a", "jobs.a.dlq"):
        ok(api.delete(f"/queues/{queue}"), 204)
    # Then the creator may create two again
    ok(send(api, "maker", MAKER, "jobs.c"), 201)
    assert ok(api.get("/queues/jobs.c.dlq"))["created_by"] == "maker"


def test_an_operators_put_of_a_new_queue_counts_and_a_replace_does_not(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, api: HttpApi
) -> None:
    # Given a quota of 2 queues, and an operator of jobs.* (not of everything)
    set_quotas(monkeypatch, queues=2)
    operator = caller("opx", (grant("jobs.*", "admin"),))
    # When it creates a queue with PUT, changes it, then creates another
    created = as_(api, operator, "PUT", "/queues/jobs.a", {})
    replaced = as_(api, operator, "PUT", "/queues/jobs.a", {"visibility_timeout": 60})
    refused = as_(api, operator, "PUT", "/queues/jobs.b", {})
    # Then the first (with its dead-letter queue) used the quota, changing it took none,
    # and the second is refused
    assert (created.status, replaced.status) == (201, 200)
    over_quota(refused, "queue 'jobs.b' and its dead-letter queue 'jobs.b.dlq'", "queues", 2, "opx")


def test_an_admin_of_everything_is_not_counted(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, api: HttpApi, aws: Aws
) -> None:
    # Given a quota of 2 queues
    set_quotas(monkeypatch, queues=2)
    # When an admin of everything creates three queues (six, with dead-letter queues)
    for queue in ("jobs.a", "jobs.b", "jobs.c"):
        ok(api.put(f"/queues/{queue}", {}), 201)
    # Then all are made, recorded as its doing, and nothing is charged to it
    assert ok(api.get("/queues/jobs.c.dlq"))["created_by"] == "test-admin"
    used = quotas.used(aws.dynamodb, aws.settings.destinations_table, "test-admin")
    assert set(used.values()) == {0}


def test_dead_lettering_into_a_missing_declared_queue_still_works_and_charges_no_one(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, api: HttpApi, aws: Aws
) -> None:
    # Given a queue whose declared dead-letter queue was deleted, and a consumer whose quota
    # allows it to create nothing
    set_quotas(monkeypatch, queues=0)
    ok(api.put("/queues/jobs.a", {"max_receive_count": 1, "dead_letter_queue": "graveyard"}), 201)
    ok(api.delete("/queues/graveyard"), 204)
    ok(api.post("/queues/jobs.a/messages", {"body": "poison"}), 201)
    consumer = caller("worker", (grant("jobs.a", "receive"),))
    # When the consumer's receives take the message past its limit
    for _ in range(2):
        as_(api, consumer, "POST", "/queues/jobs.a/receive", {"visibility_timeout": 0})
    # Then the broker made the dead-letter queue again, as its own act, and moved the
    # message there
    graveyard = ok(api.get("/queues/graveyard"))
    assert graveyard["created_by"] is None
    browsed = ok(api.get("/queues/graveyard/messages"))["messages"]
    assert [m["body"] for m in browsed] == ["poison"]
    used = quotas.used(aws.dynamodb, aws.settings.destinations_table, "worker")
    assert set(used.values()) == {0}


def test_concurrent_creators_never_pass_the_quota(aws: Aws) -> None:
    # Given one principal allowed 6 queues, and eight workers (separate clients, as
    # separate Lambda invocations would be) that each send to a new queue at once
    settings = aws.settings.model_copy(update={"queues_per_principal": 6})
    policy = GrantPolicy()
    maker = Principal(id="maker", grants=parse_grants(list(MAKER)))
    workers = [
        assembly.build_queue_service(
            settings,
            dynamodb=boto3.client("dynamodb", region_name="us-east-1"),
            kms=boto3.client("kms", region_name="us-east-1"),
            policy=policy,
        )
        for _ in range(8)
    ]
    start = threading.Barrier(len(workers))

    def create(index: int) -> str:
        start.wait()
        try:
            workers[index].send(maker, f"jobs.q{index}", NewMessage(body=b"x"))
        except QuotaExceeded:
            return "refused"
        return "created"

    # When they all run (moto made atomic per request, as DynamoDB is)
    with atomic_requests(), ThreadPoolExecutor(max_workers=len(workers)) as pool:
        outcomes = list(pool.map(create, range(len(workers))))
    # Then exactly three queues (six with their dead-letter queues) were made, and the
    # counter says six
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5
    made = [
        i["sk"]["S"]
        for i in aws.dynamodb.scan(TableName=settings.destinations_table)["Items"]
        if i["pk"]["S"] == "QUEUE"
    ]
    assert len(made) == 6
    assert quotas.used(aws.dynamodb, settings.destinations_table, "maker")[quotas.Quota.QUEUES] == 6


# ---- durable subscriptions -------------------------------------------------------------------

SUBSCRIBER = (grant("feed.a", "receive", "create"), grant("sub.*", "receive", "create"))


def test_a_consumer_creates_durable_subscriptions_up_to_its_quota(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch, aws: Aws
) -> None:
    # Given a quota of one durable subscription, already used by this consumer
    set_quotas(monkeypatch, subscriptions=1)
    stomp_session("c1", caller("maker", SUBSCRIBER))
    stomp(
        "c1",
        "SUBSCRIBE",
        destination="/topic/feed.a",
        id="0",
        **{"activemq.subscriptionName": "sub.one"},
    )
    ws_connect("c2", caller("maker", SUBSCRIBER))
    before = snapshot(aws)
    # When it makes a second one
    json_frame("c2", action="subscribe", destination="/topic/feed.a", id="s", durable="sub.two")
    # Then it is refused naming the quota, and nothing is stored (not even its queue)
    [error] = quota.json_frames("c2")
    assert error == {
        "type": "error",
        "error": "quota_exceeded",
        "message": "creating durable subscription 'sub.two' of 'feed.a' would take 'maker' "
        "past its quota of 1 durable subscriptions: delete some it created, or ask an "
        "operator to raise DurableSubscriptionsPerPrincipal",
    }
    assert snapshot(aws) == before


def test_unsubscribing_a_durable_subscription_gives_its_owner_the_quota_back(
    quota: RecordingPusher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a consumer at its quota of one durable subscription
    set_quotas(monkeypatch, subscriptions=1)
    durable = {"activemq.subscriptionName": "sub.one"}
    stomp_session("c1", caller("maker", SUBSCRIBER))
    stomp("c1", "SUBSCRIBE", destination="/topic/feed.a", id="0", **durable)
    # When it unsubscribes it, naming it, and makes another
    stomp("c1", "UNSUBSCRIBE", id="0", **durable)
    stomp(
        "c1",
        "SUBSCRIBE",
        destination="/topic/feed.a",
        id="1",
        receipt="r",
        **{"activemq.subscriptionName": "sub.two"},
    )
    # Then the new one is made
    assert frames(quota, "c1", "ERROR") == []
    assert [f.header("receipt-id") for f in frames(quota, "c1", "RECEIPT")] == ["r"]
