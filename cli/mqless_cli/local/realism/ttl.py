"""TTL deletes as DynamoDB makes them: at a random moment after expiry, or at once."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from mqless_cli.local.realism.settings import Realism, RealismReport

log = logging.getLogger(__name__)


class TtlReaper:
    """Deletes expired items of every table with TTL on, as DynamoDB's background process
    does: each at its own moment after expiry (`random`) or at once (`at-once`), with the
    stream record a TTL delete writes (a REMOVE by `dynamodb.amazonaws.com`)."""

    def __init__(self, realism: Realism, report: RealismReport, *, every_s: float = 0.5) -> None:
        self._mode = realism.ttl
        self._max_delay = realism.ttl_max_delay_s
        self._report = report
        self._every = every_s
        self._draw = random.Random(realism.seed)
        self._due: dict[tuple[str, str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="realism-ttl", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                self.sweep()
            except Exception:  # a table deleted midway: the next sweep sees the new state
                log.exception("realism: TTL sweep failed")

    def sweep(self, now: float | None = None) -> int:
        """Delete what is due now; returns how many items were deleted."""
        from moto.dynamodb.models import dynamodb_backends

        from mqless_cli.local.moto_fixes import REQUEST_LOCK

        now = time.time() if now is None else now
        deleted = 0
        with REQUEST_LOCK.lock:
            for account in list(dynamodb_backends.keys()):
                for region, backend in list(dynamodb_backends[account].items()):
                    for table in list(backend.tables.values()):
                        deleted += self._sweep_table(f"{account}/{region}", table, now)
        if deleted:
            self._report.count("ttl_deleted", deleted)
        return deleted

    def _sweep_table(self, where: str, table: Any, now: float) -> int:
        if table.ttl.get("TimeToLiveStatus") != "ENABLED":
            return 0
        attribute = table.ttl.get("AttributeName")
        deleted = 0
        for item in list(table.all_items()):
            value = item.attrs.get(attribute)
            if value is None or value.type != "N":
                continue  # DynamoDB ignores a TTL attribute that is not a number
            expires = float(value.value)
            if expires > now:
                continue
            identity = (where, table.name, repr((item.hash_key, item.range_key)))
            due = self._due.get(identity)
            if due is None:
                delay = 0.0 if self._mode == "at-once" else self._draw.uniform(0, self._max_delay)
                due = self._due[identity] = expires + delay
            if due > now:
                continue
            self._due.pop(identity, None)
            shard = table.stream_shard
            last = shard.items[-1] if shard is not None and shard.items else None
            table.delete_item(item.hash_key, item.range_key)
            if shard is not None and shard.items and shard.items[-1] is not last:
                # what marks a TTL delete in the stream (DynamoDB Developer Guide, *TTL and
                # DynamoDB Streams*)
                shard.items[-1].record["userIdentity"] = {
                    "Type": "Service",
                    "PrincipalId": "dynamodb.amazonaws.com",
                }
            deleted += 1
        return deleted
