"""`mqless bootstrap`: a deployed stack's first admin principal and key, written to
DynamoDB with the operator's own AWS credentials (no HTTP, no token).
"""

from __future__ import annotations

import argparse
from typing import Any

from mqless_cli.client import (
    ClientError,
)
from mqless_cli.commands.access import print_issued
from mqless_cli.commands.arguments import parse_duration
from mqless_cli.commands.context import Terminal, reported
from mqless_cli.output import (
    Output,
)

DESTINATIONS_TABLE_ID = "DestinationsTable"


def run_bootstrap(
    args: argparse.Namespace, *, terminal: Terminal | None = None, session: Any = None
) -> int:
    """`mqless bootstrap`: no HTTP and no token; the operator's AWS credentials write it."""
    terminal = terminal or Terminal.system()
    out = Output(terminal.stdout, terminal.stderr, as_json=args.json)
    return reported(lambda: _bootstrap(out, args, session), terminal)


def _bootstrap(out: Output, args: argparse.Namespace, session: Any) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, NoCredentialsError, NoRegionError
    from botocore.exceptions import ClientError as AwsError

    from mqless.assembly import build_access_control
    from mqless.domain.access.users import bootstrap_admin
    from mqless.domain.clock import SystemClock
    from mqless.domain.errors import MqlessError

    session = session or boto3.Session()
    table: str | None = args.table
    try:
        if args.stack:
            cloudformation = session.client("cloudformation", region_name=args.region)
            table = _stack_table(cloudformation, args.stack)
        else:
            table = args.table
        dynamodb = session.client("dynamodb", region_name=args.region)
        access = build_access_control(dynamodb, table, SystemClock())
        issued = bootstrap_admin(access, args.principal, ttl_seconds=args.ttl)
    except NoRegionError as exc:
        raise ClientError("no AWS region: pass --region or set AWS_REGION") from exc
    except NoCredentialsError as exc:
        raise ClientError(
            "no AWS credentials: bootstrap writes to the stack's table with your own "
            "(set AWS_PROFILE, or run `aws sso login` or `aws configure`)"
        ) from exc
    except AwsError as exc:
        raise ClientError(_aws_failure(exc, table, args.stack)) from exc
    except BotoCoreError as exc:
        raise ClientError(f"AWS call failed: {exc}") from exc
    except MqlessError as exc:
        raise ClientError(exc.message) from exc
    region = dynamodb.meta.region_name
    print_issued(
        out,
        issued.model_dump(mode="json"),
        where=f" (admin of everything) in {table} ({region})",
    )
    return 0


def _stack_table(cloudformation: Any, stack: str) -> str:
    """The physical name of the stack's destinations table."""
    answer = cloudformation.describe_stack_resource(
        StackName=stack, LogicalResourceId=DESTINATIONS_TABLE_ID
    )
    return str(answer["StackResourceDetail"]["PhysicalResourceId"])


def _aws_failure(exc: Any, table: str | None, stack: str | None) -> str:
    """One sentence for an AWS refusal during bootstrap."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", "")) or str(exc)
    if code == "ResourceNotFoundException":
        return (
            f"no table {table!r} in this region: give the stack's {DESTINATIONS_TABLE_ID} "
            "(or --stack NAME) and its --region"
        )
    if code == "ValidationError" and stack:
        return f"cannot find the destinations table of stack {stack!r}: {message}"
    if "AccessDenied" in code or code == "UnrecognizedClientException":
        return f"AWS refused: {message}"
    return f"AWS error {code}: {message}"


def register(commands: Any) -> None:
    help_text = (
        "create (or reset) a deployed stack's first admin principal and issue it a key, "
        "writing to DynamoDB with your own AWS credentials"
    )
    bootstrap = commands.add_parser("bootstrap", help=help_text, description=help_text)
    where = bootstrap.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--table", metavar="NAME", help=f"the stack's destinations table ({DESTINATIONS_TABLE_ID})"
    )
    where.add_argument(
        "--stack", metavar="NAME", help="find the table in this CloudFormation stack"
    )
    bootstrap.add_argument(
        "--principal", default="admin", metavar="ID", help="its id (default: %(default)s)"
    )
    bootstrap.add_argument(
        "--ttl",
        type=parse_duration,
        metavar="DURATION",
        help="the key expires after SECONDS or a duration such as 30d (default: never)",
    )
    bootstrap.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    bootstrap.add_argument("--json", action="store_true", help="machine-readable output")
    bootstrap.set_defaults(run=run_bootstrap)
