"""The verbs of `mqless`, one module per verb group, each adding its own subcommands:

- `dev`: the whole stack on this machine; `invoke`: `sam local invoke` without Docker;
- `messages`: send, receive, consume; `settling`: ack, nack, extend;
- `topics`: publish, subscribe (tail); `subscriptions`: durable subscriptions;
- `queues`: queues, stats, purge, redrive; `queue_admin`: create, update, delete, browse, move;
- `access`: principals and keys; `bootstrap`: a deployed stack's first admin key.

The client commands share `context` (the `Context` each gets and `run`, which maps every
expected failure to `mqless: <message>` and an exit status in one place) and `arguments`
(argument types and the flags every client command takes).
"""

from __future__ import annotations

from typing import Any

from mqless_cli.commands import (
    access,
    bootstrap,
    dev,
    invoke,
    messages,
    queue_admin,
    queues,
    settling,
    subscriptions,
    topics,
)
from mqless_cli.commands.arguments import common_flags
from mqless_cli.commands.context import command_adder


def register(commands: Any) -> None:
    """Add every verb to the `mqless` subcommand parsers, in the order `--help` lists them."""
    common = common_flags()
    add = command_adder(commands, common)
    dev.register(commands)
    messages.register(add)
    topics.register(add)
    queues.register(add)
    settling.register(add)
    queue_admin.register(add)
    subscriptions.register(commands, common)
    access.register(commands, common)
    bootstrap.register(commands)
    invoke.register(commands)
