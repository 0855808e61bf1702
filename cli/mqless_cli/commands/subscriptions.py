"""`mqless subscriptions list|create|delete`: durable subscriptions (topic pattern -> queue).

`create` never replaces another subscription of the same name silently: the API's PUT
would, so the CLI looks first and asks for `--replace`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from mqless_cli.client import ClientError
from mqless_cli.commands.context import Context, Handler, run
from mqless_cli.output import Output


def topic_of(text: str) -> str:
    """A topic or pattern, as STOMP names it (`/topic/shop.>`) or bare (`shop.>`)."""
    return text.removeprefix("/topic/")


def filter_policy(text: str) -> dict[str, Any]:
    """An SNS-style filter policy: a JSON object."""
    try:
        policy = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(policy, dict):
        raise argparse.ArgumentTypeError(
            'a filter policy is a JSON object, such as \'{"region": ["eu"]}\''
        )
    return policy


def _compact(policy: object) -> str:
    return json.dumps(policy, separators=(",", ":"), ensure_ascii=False)


def _table(out: Output, subscriptions: list[dict[str, Any]]) -> None:
    out.table(
        ["TOPIC", "NAME", "QUEUE", "FILTER", "OWNER"],
        [
            [
                str(s.get("topic")),
                str(s.get("name")),
                str(s.get("queue")),
                _compact(s["filter_policy"]) if s.get("filter_policy") else "-",
                str(s.get("owner") or "-"),
            ]
            for s in subscriptions
        ],
    )


def _list(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    if args.topic is not None:
        patterns = [topic_of(args.topic)]
    else:
        # every pattern the overview names with a durable subscription (no queue counted)
        topics = context.api.overview(limit=0).get("topics", [])
        patterns = [str(t.get("pattern")) for t in topics if t.get("subscriptions")]
    found = [s for pattern in patterns for s in context.api.subscriptions(pattern)]
    if out.as_json:
        for subscription in found:
            out.document(subscription)
    elif found:
        _table(out, found)
    if not found:
        where = f" on {topic_of(args.topic)}" if args.topic is not None else ""
        out.note(
            f"no durable subscriptions{where} "
            "(create one: mqless subscriptions create TOPIC NAME --queue QUEUE)"
        )
    return 0


def _create(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    topic = topic_of(args.topic)
    wanted = {"queue": args.queue, "filter_policy": args.filter}
    existing = next(
        (s for s in context.api.subscriptions(topic) if s.get("name") == args.name), None
    )
    if existing is not None and not args.replace:
        same = all(existing.get(key) == value for key, value in wanted.items())
        if not same:
            policy = existing.get("filter_policy")
            with_filter = f" with filter {_compact(policy)}" if policy else ""
            raise ClientError(
                f"subscription {args.name!r} on {topic} exists, feeding "
                f"{existing.get('queue')}{with_filter}: replace it with --replace"
            )
        if out.as_json:
            out.document(existing)
        else:
            out.line(f"subscription {args.name} on {topic} -> {args.queue} already exists")
        return 0
    subscription, created = context.api.put_subscription(topic, args.name, wanted)
    if out.as_json:
        out.document(subscription)
        return 0
    policy = subscription.get("filter_policy")
    with_filter = f" (filter {_compact(policy)})" if policy else ""
    verb = "created" if created else "replaced"
    out.line(
        f"{verb} subscription {args.name} on {topic} -> {subscription.get('queue')}{with_filter}"
    )
    return 0


def _delete(context: Context, args: argparse.Namespace) -> int:
    topic = topic_of(args.topic)
    context.api.delete_subscription(topic, args.name)
    if context.out.as_json:
        context.out.document({"topic": topic, "name": args.name, "deleted": True})
    else:
        context.out.line(f"deleted subscription {args.name} on {topic} (its queue stays)")
    return 0


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add `subscriptions list|create|delete`."""
    help_text = "durable subscriptions: what is published to a topic pattern goes to a queue"
    group = commands.add_parser("subscriptions", help=help_text, description=help_text)
    verbs = group.add_subparsers(dest="subscriptions_command", metavar="COMMAND", required=True)

    def add(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(
            name, parents=[common], help=text, description=text
        )
        parser.set_defaults(run=run, handler=handler)
        return parser

    listing = add("list", _list, "list durable subscriptions (of one topic pattern, or all)")
    listing.add_argument("topic", metavar="TOPIC", nargs="?", help="a topic or pattern")
    create = add("create", _create, "subscribe a queue to a topic pattern, durably")
    create.add_argument("topic", metavar="TOPIC", help="topic or pattern (`*`, final `>`)")
    create.add_argument("name", metavar="NAME", help="the subscription's name")
    create.add_argument("--queue", required=True, metavar="QUEUE", help="where messages go")
    create.add_argument(
        "--filter",
        type=filter_policy,
        metavar="JSON",
        help='only messages whose attributes match, e.g. \'{"region": ["eu"]}\'',
    )
    create.add_argument(
        "--replace", action="store_true", help="replace a subscription of that name"
    )
    delete = add("delete", _delete, "delete a durable subscription (its queue stays)")
    delete.add_argument("topic", metavar="TOPIC")
    delete.add_argument("name", metavar="NAME")
