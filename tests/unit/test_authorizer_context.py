"""The caller an API function reads from its authorizer's context (`principal_from_context`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from mqless.domain.errors import Unauthorized
from mqless.transports import authorizer
from mqless.transports.authorizer import principal_from_context

GRANTS = json.dumps([{"pattern": ">", "actions": ["send", "receive"]}], separators=(",", ":"))


def _context(**values: Any) -> dict[str, Any]:
    # a principal id of its own: what one test reads is nothing another has read
    return {
        "principal": f"app-{uuid.uuid4().hex[:8]}",
        "kind": "api_key",
        "grants": GRANTS,
        **values,
    }


def test_a_callers_context_is_read_once_for_all_its_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a caller's context (API Gateway's cached answer) and grant parsing watched
    parsed: list[Any] = []
    parse_grants = authorizer.parse_grants
    monkeypatch.setattr(
        authorizer, "parse_grants", lambda raw: parsed.append(raw) or parse_grants(raw)
    )
    context = _context(key_id="k1")

    # When ten of its requests read their caller
    principals = [principal_from_context(dict(context), now_s=0) for _ in range(10)]

    # Then each is the same principal, and its grants were parsed for the first alone
    assert {p.id for p in principals} == {context["principal"]}
    assert principals[0].grants[0].pattern == ">" and principals[0].key_id == "k1"
    assert len(parsed) == 1


def test_a_principal_read_before_its_credential_expired_is_refused_after() -> None:
    # Given a context whose credential expires at 1,000 s, read before then
    context = _context(expires_at="1000")
    assert principal_from_context(context, now_s=999).expires_at == 1000

    # When a request carrying the same context comes at 1,000 s
    # Then it is refused
    with pytest.raises(Unauthorized):
        principal_from_context(context, now_s=1000)


def test_contexts_that_differ_only_in_the_type_of_a_value_are_different_callers() -> None:
    # Given two contexts of one principal whose kinds are 1 and True (equal as keys)
    first = _context(kind=1)
    second = {**first, "kind": True}

    # When both are read
    # Then each kind is read as written
    assert principal_from_context(first, now_s=0).kind == "1"
    assert principal_from_context(second, now_s=0).kind == "True"


def test_a_context_with_grants_as_a_list_is_read_all_the_same() -> None:
    # Given a context whose grants are a list (not the JSON text this authorizer writes)
    context = _context(grants=[{"pattern": "orders", "actions": ["send"]}])

    # When it is read
    # Then its grants are the list's
    assert principal_from_context(context, now_s=0).grants[0].pattern == "orders"


def test_a_context_with_no_principal_or_unreadable_grants_is_refused() -> None:
    # Given contexts with no principal, and with grants that are not JSON
    # When they are read
    # Then each is refused (every time: a refusal is not kept)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            principal_from_context({"grants": GRANTS}, now_s=0)
        with pytest.raises(Unauthorized):
            principal_from_context(_context(grants="[not json"), now_s=0)
