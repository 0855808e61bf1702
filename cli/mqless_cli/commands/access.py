"""`mqless principals ...` and `mqless keys ...`: the Access API (admin on everything)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

from mqless_cli.commands.arguments import parse_duration
from mqless_cli.commands.context import Context, Handler, run
from mqless_cli.output import (
    Output,
    expires,
    expiry,
    grants_text,
    key_status,
    timestamp,
)

AUTHORIZER_CACHE_NOTE = (
    "API Gateway caches each token's authorization for up to 5 minutes: "
    "a token already in use may keep its old access that long"
)


def _principals_list(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    principals = context.api.principals()
    if out.as_json:
        out.document({"principals": principals})
        return 0
    if not principals:
        out.note("no principals yet (create one: mqless principals set ID --grant PATTERN=ACTIONS)")
        return 0
    out.table(
        ["PRINCIPAL", "GRANTS", "UPDATED"],
        [
            [str(p.get("id")), grants_text(p.get("grants")), timestamp(p.get("updated_at"))]
            for p in sorted(principals, key=lambda p: str(p.get("id")))
        ],
    )
    return 0


def _principals_show(context: Context, args: argparse.Namespace) -> int:
    principal = context.api.principal(args.id)
    if context.out.as_json:
        context.out.document(principal)
        return 0
    grants = [grants_text([grant]) for grant in principal.get("grants") or []] or ["(none)"]
    rows = [["principal", str(principal.get("id"))]]
    rows += [["grants" if n == 0 else "", grant] for n, grant in enumerate(grants)]
    rows += [
        ["created", timestamp(principal.get("created_at"))],
        ["updated", timestamp(principal.get("updated_at"))],
    ]
    context.out.table(["FIELD", "VALUE"], rows, show_header=False)
    return 0


def _principals_set(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    principal, created = context.api.put_principal(args.id, args.grant)
    if out.as_json:
        out.document(principal)
        return 0
    grants = grants_text(principal.get("grants"))
    out.line(f"{'created' if created else 'updated'} principal {args.id}: {grants}")
    if not created:
        out.note(AUTHORIZER_CACHE_NOTE)
    return 0


def _principals_delete(context: Context, args: argparse.Namespace) -> int:
    context.api.delete_principal(args.id)
    if context.out.as_json:
        context.out.document({"principal": args.id, "deleted": True})
        return 0
    context.out.line(f"deleted principal {args.id} and revoked its keys")
    context.out.note(AUTHORIZER_CACHE_NOTE)
    return 0


def _keys_issue(context: Context, args: argparse.Namespace) -> int:
    """The token alone on stdout (`export MQLESS_TOKEN=$(mqless keys issue ...)`)."""
    issued = context.api.issue_key(args.principal, ttl_seconds=args.ttl)
    print_issued(context.out, issued)
    return 0


def print_issued(out: Output, issued: Mapping[str, Any], *, where: str = "") -> None:
    if out.as_json:
        out.document(dict(issued))
        return
    out.line(str(issued.get("token")))
    out.note(
        f"issued key {issued.get('key_id')} for {issued.get('principal')}{where}; "
        f"{expiry(issued.get('expires_at'))}"
    )
    out.note("the token is shown only now: keep it secret (use it as MQLESS_TOKEN or --token)")


def _keys_list(context: Context, args: argparse.Namespace) -> int:
    out = context.out
    keys = context.api.keys(args.principal)
    if out.as_json:
        out.document({"keys": keys})
        return 0
    if not keys:
        whose = f" for {args.principal}" if args.principal else ""
        out.note(f"no API keys{whose} (issue one: mqless keys issue PRINCIPAL)")
        return 0
    now = time.time()
    out.table(
        ["KEY ID", "PRINCIPAL", "CREATED", "EXPIRES", "STATUS"],
        [
            [
                str(key.get("key_id")),
                str(key.get("principal")),
                timestamp(key.get("created_at")),
                expires(key.get("expires_at")),
                key_status(key, now),
            ]
            for key in sorted(
                keys, key=lambda k: (str(k.get("principal")), k.get("created_at") or 0)
            )
        ],
    )
    return 0


def _keys_revoke(context: Context, args: argparse.Namespace) -> int:
    context.api.revoke_key(args.key_id)
    if context.out.as_json:
        context.out.document({"key_id": args.key_id, "revoked": True})
        return 0
    context.out.line(f"revoked key {args.key_id}")
    context.out.note(AUTHORIZER_CACHE_NOTE)
    return 0


ACTIONS = ("send", "receive", "create", "admin")  # mqless.domain.access.principals.Action


def parse_grant(text: str) -> dict[str, Any]:
    """`PATTERN=ACTIONS` (`orders.*=send,receive`, `>=admin`) as the API's grant document."""
    pattern, sep, listed = text.rpartition("=")
    if not sep or not pattern:
        raise argparse.ArgumentTypeError(
            f"expected PATTERN=ACTIONS such as 'orders.*=send,receive', got {text!r}"
        )
    actions = [action.strip().lower() for action in listed.split(",") if action.strip()]
    if not actions:
        raise argparse.ArgumentTypeError(
            f"no actions in {text!r}: give some of {','.join(ACTIONS)}"
        )
    unknown = [action for action in actions if action not in ACTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown action {unknown[0]!r} in {text!r}: the actions are {', '.join(ACTIONS)}"
        )
    # the broker's own rule, so a pattern refused here would be refused by the API too
    from mqless.domain.access.principals import MAX_PATTERN, validate_grant_pattern
    from mqless.domain.errors import InvalidRequest

    if len(pattern) > MAX_PATTERN:
        raise argparse.ArgumentTypeError(f"pattern longer than {MAX_PATTERN} characters")
    try:
        validate_grant_pattern(pattern)
    except InvalidRequest as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return {"pattern": pattern, "actions": list(dict.fromkeys(actions))}


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """`mqless principals ...` and `mqless keys ...` (the Access API; admin on everything)."""

    def group(name: str, help_text: str) -> Any:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    def add(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        parser.set_defaults(run=run, handler=handler)
        return parser

    principals = group("principals", "who may do what: principals and their grants")
    add(principals, "list", _principals_list, "list principals with their grants")
    show = add(principals, "show", _principals_show, "one principal's grants")
    show.add_argument("id", metavar="ID")
    put = add(
        principals,
        "set",
        _principals_set,
        "create a principal or replace its grants (its keys get the new grants)",
    )
    put.add_argument("id", metavar="ID", help="1-128 of A-Z a-z 0-9 _ . @ : + = , -")
    put.add_argument(
        "--grant",
        action="append",
        type=parse_grant,
        required=True,
        metavar="PATTERN=ACTIONS",
        help="actions (send, receive, create, admin) on destinations matching PATTERN "
        "(`orders.*=send,receive`, `'>=admin'` for everything); repeatable",
    )
    delete = add(principals, "delete", _principals_delete, "delete a principal and revoke its keys")
    delete.add_argument("id", metavar="ID")

    keys = group("keys", "API keys: issue, list, revoke")
    issue = add(keys, "issue", _keys_issue, "issue an API key for a principal (printed once)")
    issue.add_argument("principal", metavar="PRINCIPAL")
    issue.add_argument(
        "--ttl",
        type=parse_duration,
        metavar="DURATION",
        help="expire after SECONDS or a duration such as 30d, 12h (default: never)",
    )
    listing = add(keys, "list", _keys_list, "list API keys (never their secrets)")
    listing.add_argument("--principal", metavar="ID", help="only this principal's keys")
    revoke = add(keys, "revoke", _keys_revoke, "revoke an API key")
    revoke.add_argument("key_id", metavar="KEY_ID")
