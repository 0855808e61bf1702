"""A function's start-up objects, made without the garbage collector and then kept out of it.

Importing a handler makes some 140,000 objects the collector tracks (modules, classes,
botocore's models, pydantic's validators), and CPython's collector runs while they are made:
every full collection walks all of them made so far, 20-40 ms of a function's cold import,
for objects that live as long as the execution environment (issue 18). In Lambda, the
handler module's imports run inside `start_up_frozen()`: the collector is paused while they
run, then what they made moves to the permanent generation (`gc.freeze()`, which CPython's
documentation gives for objects made at start-up that live as long as the process), so no
later collection walks it either. The price is that reference cycles the imports left
behind are never collected: ~27,000 objects, 8.6 MB traced by tracemalloc, most of it
the X-Ray SDK's first botocore session (its sampler makes one at import, then replaces it);
RSS just after import is 0.3-1.4 MB above main's, but that memory is never reused.

What the first request builds once per process is start-up too: each `mqless.wiring`
builder (boto3 clients with their service models, the services and the modules they
import) and each HTTP routes module (`transports/http/api.py`) runs inside
`start_up_frozen()` as well. Without it the first request ran 45-90 collections over
those objects, 6-15 ms CPU of it; with it, about none. The freeze at the end of a build also
keeps whatever the request had made by then: the cyclic garbage among it (~100-200
objects) is never collected.

Only where Lambda's runtime runs the function: it reads the address of its Runtime API from
`AWS_LAMBDA_RUNTIME_API`, which Lambda sets in every execution environment (a reserved
variable). Tests and `mqless dev` import the handlers without it and keep CPython's default;
`mqless dev` freezes its own start-up once it is ready
(`mqless_cli/local/runtime.py`, `full_collections.py`).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from contextlib import contextmanager

LAMBDA_RUNTIME_API = "AWS_LAMBDA_RUNTIME_API"


def in_lambda() -> bool:
    """Whether Lambda's runtime runs this process (it sets AWS_LAMBDA_RUNTIME_API)."""
    return LAMBDA_RUNTIME_API in os.environ


@contextmanager
def start_up_frozen() -> Iterator[None]:
    """In Lambda, what the block imports is made with the collector paused, then frozen."""
    if not in_lambda():
        yield
        return
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        # a failed import too: the runtime reports it, and its process goes on collecting
        if was_enabled:
            gc.enable()
