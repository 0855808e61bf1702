"""The flags of a queue's settings (`mqless create` and `mqless update`), with their ranges."""

from __future__ import annotations

import argparse

from mqless_cli.commands.arguments import bounded, duration_within

# the API's limits (mqless.domain.models), repeated so that a mistake is a usage error at once
MAX_VISIBILITY_SECONDS = 12 * 60 * 60
MIN_RETENTION_SECONDS = 60
MAX_RETENTION_SECONDS = 14 * 24 * 60 * 60
MAX_DELAY_SECONDS = 900
MAX_RECEIVE_COUNT = 1000
MAX_SHARDS = 64
MAX_PRIORITY = 9


def setting_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a queue's settings, as `create` and `update` take them."""
    _delivery_flags(parser)
    _storage_flags(parser)


def _delivery_flags(parser: argparse.ArgumentParser) -> None:
    """How messages are leased and when they are dead-lettered."""
    parser.add_argument(
        "--visibility-timeout",
        dest="visibility_timeout",
        type=duration_within(0, MAX_VISIBILITY_SECONDS),
        metavar="DURATION",
        help="lease length: SECONDS or 30s, 5m, 1h (0-12h; default 30 s)",
    )
    redelivery = parser.add_mutually_exclusive_group()
    redelivery.add_argument(
        "--max-receive-count",
        dest="max_receive_count",
        type=bounded(1, MAX_RECEIVE_COUNT),
        metavar="N",
        help="deliveries before a message goes to the dead-letter queue (1-1000; default 10)",
    )
    redelivery.add_argument(
        "--no-dead-letter",
        action="store_true",
        help="never dead-letter: redeliver until acked or expired",
    )
    parser.add_argument(
        "--dead-letter-queue",
        dest="dead_letter_queue",
        metavar="QUEUE",
        help="where over-limit messages go (default QUEUE.dlq; BASE.dlq.fifo for FIFO)",
    )


def _storage_flags(parser: argparse.ArgumentParser) -> None:
    """How long messages live, when they may first go out, and how the queue is laid out."""
    parser.add_argument(
        "--retention",
        dest="retention_seconds",
        type=duration_within(MIN_RETENTION_SECONDS, MAX_RETENTION_SECONDS),
        metavar="DURATION",
        help="message lifetime: SECONDS or 12h, 4d (1m-14d; default 4d)",
    )
    parser.add_argument(
        "--delay",
        dest="delay_seconds",
        type=duration_within(0, MAX_DELAY_SECONDS),
        metavar="SECONDS",
        help="hold every message back this long (0-900; default 0)",
    )
    parser.add_argument(
        "--shards",
        dest="shards",
        type=bounded(1, MAX_SHARDS),
        metavar="N",
        help="partitions (1-64; default 8; a standard queue's may grow, a FIFO queue's are "
        "fixed at creation)",
    )
    parser.add_argument(
        "--max-priority",
        dest="max_priority",
        type=bounded(1, MAX_PRIORITY),
        metavar="N",
        help="deliver higher priorities first: lanes for priorities 0..N (1-9; 9: every JMS "
        "priority; standard queues only, fixed at creation)",
    )
