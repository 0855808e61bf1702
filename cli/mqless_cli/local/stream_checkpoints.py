"""How far each local stream poller of a shard has handled its records; what all of them
have handled is dropped from the (moto) stream."""

from __future__ import annotations

import threading

from mqless_cli.local.moto_fixes import discard_stream_records

__all__ = ["CHECKPOINTS", "StreamCheckpoints"]


class StreamCheckpoints:
    """How far each local poller of a shard has handled its records; what all of them have
    handled is dropped from the (moto) stream.

    DynamoDB keeps records 24 hours for any reader. Under `mqless dev` the pollers are a
    stream's only readers (moto lives inside the process), so a record every one of them
    has handled can never be read again: keeping it for a day would make memory grow with
    every write (and every full garbage collection slower).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._positions: dict[tuple[str, str], dict[int, int | None]] = {}

    def join(self, stream_arn: str, shard_id: str, reader: int) -> None:
        """A reader starts on a shard (nothing handled yet: nothing is dropped meanwhile)."""
        with self._lock:
            self._positions.setdefault((stream_arn, shard_id), {})[reader] = None

    def leave(self, stream_arn: str, shard_id: str, reader: int) -> None:
        with self._lock:
            readers = self._positions.get((stream_arn, shard_id), {})
            readers.pop(reader, None)
            if not readers:
                self._positions.pop((stream_arn, shard_id), None)

    def handled(self, stream_arn: str, shard_id: str, reader: int, sequence: str) -> None:
        """`reader` is done with every record up to `sequence`."""
        with self._lock:
            readers = self._positions.get((stream_arn, shard_id))
            if readers is None or reader not in readers:
                return
            readers[reader] = int(sequence)
            positions = [p for p in readers.values() if p is not None]
            everyone = len(positions) == len(readers)
        if everyone:
            discard_stream_records(stream_arn, shard_id, min(positions))


CHECKPOINTS = StreamCheckpoints()
"""The checkpoints of every poller of this process."""
