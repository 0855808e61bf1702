"""Work botocore repeats on every request of `mqless dev` that gives the same result each time.

Every AWS request of the local runtime (the functions' and its own) is answered in-process by
moto, so botocore's client side is a large share of a request's CPU time. What is kept here
is the same output for less work: requests, responses and errors are unchanged.

- `user_agents_built_once`: botocore builds the User-Agent header from a dozen components,
  each sanitized character by character, twice per request (when the request is made and
  again in a `request-created` handler): about a twelfth of an in-process DynamoDB request.
  The string depends only on the builder's fields and the features of the request's context,
  so it is built once per distinct set of them.

`botocore_shortcuts()` applies them all (`LocalCloud` does, for its lifetime).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from mqless_cli.local.shared_patches import SharedPatches

__all__ = ["botocore_shortcuts", "user_agents_built_once"]

_USER_AGENTS_KEPT = 256  # distinct (builder, features) pairs: a few per client and operation


def _hashable(value: Any) -> Any:
    """A builder field as part of a cache key (sets and lists by content, the rest as is:
    a Config object is hashed by identity, which the key keeps alive)."""
    if isinstance(value, set | frozenset):
        return frozenset(value)
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


@contextmanager
def user_agents_built_once() -> Iterator[None]:
    """Keep each User-Agent string botocore builds, keyed by everything it is built from.

    `UserAgentString.to_string` reads only the builder's own fields (platform, session and
    client config, client features) and the features recorded in the current request
    context; the key is all of them, so the string returned is the one botocore would
    build. A field that cannot be part of a key builds the string as before.
    """
    from botocore.context import get_context
    from botocore.useragent import UserAgentString

    original: Any = UserAgentString.to_string
    built: dict[Any, str] = {}
    lock = threading.Lock()

    def to_string(self: UserAgentString) -> str:
        context = get_context()
        features = frozenset(context.features) if context is not None else frozenset()
        try:
            key = (tuple((k, _hashable(v)) for k, v in vars(self).items()), features)
            found = built.get(key)
        except TypeError:  # an unhashable field: no key, build it
            return str(original(self))
        if found is not None:
            return found
        value = str(original(self))
        with lock:
            if len(built) >= _USER_AGENTS_KEPT:
                built.clear()
            built[key] = value
        return value

    UserAgentString.to_string = to_string  # type: ignore[method-assign]
    try:
        yield
    finally:
        UserAgentString.to_string = original  # type: ignore[method-assign]


_SHORTCUTS = SharedPatches(user_agents_built_once)


def botocore_shortcuts() -> AbstractContextManager[None]:
    """Every shortcut of this module while the block runs; blocks may overlap in any order
    (the patches go on with the first and come off with the last)."""
    return _SHORTCUTS.applied()
