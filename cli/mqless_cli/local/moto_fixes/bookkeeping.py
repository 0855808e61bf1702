"""moto's per-request bookkeeping made cheap: data models it does not track, a handler's
methods listed once, random strings drawn at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    return object.__new__(cls)


@contextmanager
def data_models_untracked() -> Iterator[None]:
    """Keep no list of every DynamoDB item, stream record and shard iterator ever made.

    Upstream behaviour: every `BaseModel` subclass appends each instance it creates to a
    class-level `instances_tracked` list (for the moto dashboard), which is emptied only
    when moto is reset. For DynamoDB that is every `Item` ever built (each write, each copy
    made for a query result, a stream image or a rollback), every `StreamRecord` and every
    `ShardIterator`: memory grows with every request, and Python's full garbage
    collections, which walk all of it, grow from milliseconds to seconds, stalling
    whichever request they fall in.

    Here those three classes are created without being tracked (the dashboard does not
    list them); what a table holds is unchanged, and is freed when deleted.
    """
    from moto.dynamodb.models.dynamo_type import Item
    from moto.dynamodb.models.table import StreamRecord
    from moto.dynamodbstreams.models import ShardIterator

    with ExitStack() as stack:
        for model in (Item, StreamRecord, ShardIterator):
            stack.enter_context(patched(model, "__new__", staticmethod(_untracked_new)))
        yield


# ---- responses: a handler's methods listed once ---------------------------------------------


@contextmanager
def handler_methods_listed_once() -> Iterator[None]:
    """List a response handler's methods once per class, not on every request.

    Upstream behaviour: `BaseResponse.call_action` calls `method_names_from_class`, which
    runs `inspect.getmembers` over every attribute of the handler class, for each request
    (about a tenth of an in-process DynamoDB call). A class's methods do not change while
    requests are served, so the list is kept per class.
    """
    from moto.core import responses

    original = responses.method_names_from_class  # type: ignore[attr-defined]
    listed: dict[Any, list[str]] = {}

    def method_names(clazz: object) -> list[str]:
        names = listed.get(clazz)
        if names is None:
            names = listed[clazz] = original(clazz)
        return names

    with patched(responses, "method_names_from_class", method_names):
        yield


def _byte_table(pool: str) -> tuple[bytes, bytes]:
    """(translation, deleted) that turn random bytes into characters of `pool` uniformly:
    the first `256 - 256 % len(pool)` byte values each stand for one character (every
    character for as many byte values), the others are dropped."""
    kept = 256 - 256 % len(pool)
    table = bytes(ord(pool[value % len(pool)]) if value < kept else 0 for value in range(256))
    return table, bytes(range(kept, 256))


@contextmanager
def random_strings_drawn_at_once() -> Iterator[None]:
    """Draw moto's random strings from one run of random bytes, not a `choice` per character.

    Upstream behaviour: `MotoRandom.get_random_string` calls `self.choice(pool)` once per
    character, and every response gets a 52-character request id that way: about 2% of an
    in-process DynamoDB request (one `choices` call for the whole string is still ~10 µs).
    Here the generator's `randbytes` gives a run of bytes that `bytes.translate` turns into
    the pool's characters in one step: each character stands for as many byte values as any
    other and the few values left over are dropped (more bytes are drawn if too few are
    left), so each character is drawn uniformly and independently, as by `choice`, from the
    same (seedable) generator. A seeded moto still repeats its strings; they are only not
    the same strings as upstream's for a given seed.
    """
    import string

    from moto.moto_api._internal.moto_random import MotoRandom

    tables = {
        pool: _byte_table(pool)
        for pool in (string.ascii_letters, string.ascii_letters + string.digits)
    }

    def get_random_string(
        self: MotoRandom, length: int = 20, include_digits: bool = True, lower_case: bool = False
    ) -> str:
        pool = string.ascii_letters + (string.digits if include_digits else "")
        table, dropped = tables[pool]
        drawn = self.randbytes(length + length // 4 + 8).translate(table, dropped)
        while len(drawn) < length:
            drawn += self.randbytes(8).translate(table, dropped)
        text = drawn[:length].decode("ascii")
        return text.lower() if lower_case else text

    with patched(MotoRandom, "get_random_string", get_random_string):
        yield
