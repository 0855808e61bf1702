"""JMS message selectors: the SQL-92 subset of JMS 2.0 (section 3.8.1), as ActiveMQ takes them.

No maintained Python library parses JMS selectors, so this is a small recursive-descent
parser. `parse(text)` checks a selector once, when a consumer subscribes, and refuses a bad
one with `InvalidSelector` naming the position (1-based) where it went wrong; the parsed
`Selector` is then evaluated against each message's properties, in memory.

The grammar, loosest binding first:
```
selector   := or
or         := and ("OR" and)*
and        := not ("AND" not)*
not        := "NOT" not | predicate
predicate  := sum [ ("=" | "<>" | "<" | "<=" | ">" | ">=") sum
                  | ["NOT"] "BETWEEN" sum "AND" sum
                  | ["NOT"] "IN" "(" literal ("," literal)* ")"
                  | ["NOT"] "LIKE" string ["ESCAPE" string]
                  | "IS" ["NOT"] "NULL" ]
sum        := product (("+" | "-") product)*
product    := unary (("*" | "/") unary)*
unary      := ("+" | "-") unary | primary
primary    := literal | identifier | "(" or ")"
```
Keywords are case-insensitive, identifiers case-sensitive. Literals: `'strings'` (`''` is a
quote), exact numbers (`42`, `42L`, `0x2A`), approximate numbers (`4.2`, `4e2`, `4.2F`),
`TRUE`, `FALSE`.

Three-valued logic as JMS specifies: a missing property is NULL, a comparison or arithmetic
with NULL is UNKNOWN (None here), `AND`/`OR`/`NOT` follow the SQL truth tables, and a
message is selected only when the selector is TRUE. Comparing values of unlike types
(a string with a number) is FALSE, not an error; strings and booleans compare only with `=`
and `<>`. Division by zero is UNKNOWN (Java would throw). Integer division truncates toward
zero, as Java's does.

Message properties are strings (STOMP headers and HTTP attributes both are), so by the JMS
rule `age > 18` never selects a message whose `age` is `'21'`. As in ActiveMQ, a selector
that starts with `convert_string_expressions:` compares and computes with string
properties that read as numbers (or `true`/`false`) as those numbers (booleans).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from mqless.domain.models import MAX_SELECTOR_LENGTH
from mqless.domain.selectors.expressions import Context, Expr, Lookup, Value, truth
from mqless.domain.selectors.lexer import InvalidSelector, error, tokenize
from mqless.domain.selectors.parser import Parser

__all__ = [
    "DEFAULT_PRIORITY",
    "MAX_SELECTOR_LENGTH",
    "InvalidSelector",
    "Lookup",
    "Selector",
    "Value",
    "check",
    "matches",
    "message_lookup",
    "parse",
]

CONVERT_PREFIX: Final = "convert_string_expressions:"
DEFAULT_PRIORITY: Final = 4  # JMS's default, what a message sent without a priority has


@dataclass(frozen=True)
class Selector:
    """A parsed selector; `matches` is TRUE only when the selector is TRUE (not UNKNOWN)."""

    text: str
    _expr: Expr
    convert: bool

    def matches(self, lookup: Lookup) -> bool:
        return self.evaluate(lookup) is True

    def evaluate(self, lookup: Lookup) -> bool | None:
        """TRUE, FALSE or UNKNOWN (None): the selector's three-valued result."""
        ctx = Context(lookup, self.convert)
        return truth(self._expr.evaluate(ctx), ctx)


def parse(text: str) -> Selector | None:
    """Parse a selector; None for an empty one (it selects everything, as in ActiveMQ)."""
    if len(text) > MAX_SELECTOR_LENGTH:
        raise InvalidSelector(f"a selector may be at most {MAX_SELECTOR_LENGTH} characters")
    return _parse(text)


@lru_cache(maxsize=256)
def _parse(text: str) -> Selector | None:
    if not text.strip():
        return None
    body, offset, convert = text, 0, False
    stripped = text.lstrip()
    if stripped.startswith(CONVERT_PREFIX):
        offset = len(text) - len(stripped) + len(CONVERT_PREFIX)
        body, convert = text[offset:], True
        if not body.strip():
            raise error(offset, "a condition must follow convert_string_expressions:")
    expr = Parser(tokenize(body, offset)).selector()
    return Selector(text=text, _expr=expr, convert=convert)


def check(text: str | None) -> str | None:
    """A selector as given, checked; None when there is none (absent or blank)."""
    if text is None:
        return None
    return None if parse(text) is None else text


def matches(text: str | None, lookup: Lookup) -> bool:
    """Whether a stored selector (already checked) selects a message; None selects all."""
    if text is None:
        return True
    selector = parse(text)
    return selector is None or selector.matches(lookup)


def message_lookup(
    *,
    message_id: str,
    sent_at: int,
    attributes: Mapping[str, str],
    correlation_id: str | None = None,
    group_id: str | None = None,
    priority: int | None = None,
) -> Lookup:
    """Property values a selector sees for a message: the JMS headers ActiveMQ maps from STOMP
    (`JMSMessageID`, `JMSTimestamp`, `JMSCorrelationID`, `JMSType` from the `type` header,
    `JMSPriority` the message's priority (else an attribute `priority`, else 4),
    `JMSDeliveryMode` always `PERSISTENT`, `JMSXGroupID`) and every attribute by its name."""

    def lookup(name: str) -> Value:
        if name.startswith("JMS"):
            if name == "JMSMessageID":
                return message_id
            if name == "JMSTimestamp":
                return sent_at
            if name == "JMSCorrelationID":
                return correlation_id
            if name == "JMSType":
                return attributes.get("type")
            if name == "JMSPriority":
                if priority is not None:
                    return priority
                return _priority(attributes.get("priority"))
            if name == "JMSDeliveryMode":
                return "PERSISTENT"  # every message is stored before it is acknowledged
            if name == "JMSXGroupID":
                return group_id
        return attributes.get(name)

    return lookup


def _priority(text: str | None) -> int:
    if text is not None and text.isascii() and text.isdigit() and 0 <= int(text) <= 9:
        return int(text)
    return DEFAULT_PRIORITY
