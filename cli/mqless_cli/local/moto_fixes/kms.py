"""`kms_key_pairs_made_on_first_use`: a KMS key's asymmetric pair generated when first used."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from mqless_cli.local.moto_fixes.patching import patched


class _KeyPairOnFirstUse:
    """Stands in for moto's key pair of a KMS key until something uses it: then the pair is
    generated (as moto would have at CreateKey) and every attribute is the real pair's."""

    def __init__(self, make: Callable[[str], Any], key_spec: str) -> None:
        self._make = make
        self._key_spec = key_spec
        self._pair: Any = None
        self._lock = threading.Lock()

    def made(self) -> bool:
        return self._pair is not None

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            if self._pair is None:
                self._pair = self._make(self._key_spec)
        return getattr(self._pair, name)


@contextmanager
def kms_key_pairs_made_on_first_use() -> Iterator[None]:
    """Generate a KMS key's asymmetric key pair when a request first uses it.

    Upstream behaviour: `Key.__init__` calls `generate_private_key(key_spec)` for every key,
    and for SYMMETRIC_DEFAULT (and HMAC) specs that is an RSA 2048 pair: a tenth of a second
    or more of CPU per CreateKey for a pair that Encrypt, Decrypt and GenerateDataKey never
    touch (they use the key's own `key_material`). Every moto a test provisions pays it.

    Here the pair is made the first time Sign, Verify or GetPublicKey use it, of the same
    spec, with the same library call: what each request answers is unchanged.
    """
    from moto.kms import models, utils

    original = utils.generate_private_key

    def on_first_use(key_spec: str) -> Any:
        return _KeyPairOnFirstUse(original, key_spec)

    with patched(models, "generate_private_key", on_first_use):
        yield
