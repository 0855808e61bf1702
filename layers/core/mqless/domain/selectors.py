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

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, Final

from mqless.domain.errors import InvalidRequest

Value = bool | int | float | str | None
Lookup = Callable[[str], Value]

MAX_SELECTOR_LENGTH: Final = 4096
MAX_DEPTH: Final = 100  # nesting: deep enough for any real selector, far from the stack's end
CONVERT_PREFIX: Final = "convert_string_expressions:"
DEFAULT_PRIORITY: Final = 4  # JMS's default, what a message sent without a priority has

_KEYWORDS: Final = frozenset(
    {"AND", "OR", "NOT", "BETWEEN", "LIKE", "IN", "IS", "NULL", "TRUE", "FALSE", "ESCAPE"}
)


class InvalidSelector(InvalidRequest):
    """A selector that does not parse; the message names the position."""

    code = "invalid_selector"


# ---- tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "string", "number", "name", "keyword", "op", "end"
    text: str
    position: int  # 0-based offset in the selector
    value: Value = None


_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+[lL]?"
    r"|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[fFdDlL]?"
)
_DIGITS: Final = frozenset("0123456789")  # str.isdigit takes other scripts' digits too
_OPERATORS: Final = ("<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "(", ")", ",")


def _tokens(text: str, offset: int) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        at = offset + i
        if c.isspace():
            i += 1
            continue
        if c == "'":
            j = i + 1
            parts: list[str] = []
            while True:
                end = text.find("'", j)
                if end < 0:
                    raise _error(at, "a string literal is not closed (a quote is written '')")
                parts.append(text[j:end])
                if text.startswith("'", end + 1):
                    parts.append("'")
                    j = end + 2
                    continue
                i = end + 1
                break
            tokens.append(_Token("string", text[at - offset : i], at, "".join(parts)))
            continue
        if c in _DIGITS or (c == "." and i + 1 < len(text) and text[i + 1] in _DIGITS):
            match = _NUMBER.match(text, i)
            assert match is not None
            literal = match.group()
            if match.end() < len(text) and (
                text[match.end()].isalnum() or text[match.end()] in "_$."
            ):
                raise _error(at, f"{text[i : match.end() + 1]!r} is not a number")
            tokens.append(_Token("number", literal, at, _number(literal)))
            i = match.end()
            continue
        if c.isalpha() or c in "_$":
            j = i + 1
            while j < len(text) and (text[j].isalnum() or text[j] in "_$"):
                j += 1
            word = text[i:j]
            if word.upper() in _KEYWORDS:
                tokens.append(_Token("keyword", word.upper(), at))
            else:
                tokens.append(_Token("name", word, at))
            i = j
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(_Token("op", op, at))
                i += len(op)
                break
        else:
            raise _error(at, f"unexpected character {c!r}")
    tokens.append(_Token("end", "", offset + len(text)))
    return tokens


def _number(literal: str) -> int | float:
    if literal[:2] in ("0x", "0X"):
        return int(literal.rstrip("lL"), 16)
    if literal[-1] in "lL":
        return int(literal[:-1])
    if literal[-1] in "fFdD":
        return float(literal[:-1])
    if any(c in literal for c in ".eE"):
        return float(literal)
    return int(literal)


def _error(position: int, problem: str) -> InvalidSelector:
    return InvalidSelector(f"invalid selector at position {position + 1}: {problem}")


# ---- expressions ------------------------------------------------------------------------


class _Context:
    """One evaluation: where property values come from, and whether strings convert."""

    __slots__ = ("convert", "lookup")

    def __init__(self, lookup: Lookup, convert: bool) -> None:
        self.lookup = lookup
        self.convert = convert


class _Expr:
    condition: ClassVar[bool] = False  # whether it may stand as a condition

    @property
    def boolean(self) -> bool:
        """Whether the expression is a condition (TRUE, FALSE or UNKNOWN)."""
        return self.condition

    def evaluate(self, ctx: _Context) -> Value:
        raise NotImplementedError


@dataclass(frozen=True)
class _Literal(_Expr):
    value: Value

    @property
    def boolean(self) -> bool:
        return isinstance(self.value, bool)

    def evaluate(self, ctx: _Context) -> Value:
        return self.value


@dataclass(frozen=True)
class _Property(_Expr):
    name: str
    condition = True  # a boolean property may stand as a condition

    def evaluate(self, ctx: _Context) -> Value:
        return ctx.lookup(self.name)


@dataclass(frozen=True)
class _Not(_Expr):
    operand: _Expr
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        value = _truth(self.operand.evaluate(ctx), ctx)
        return None if value is None else not value


@dataclass(frozen=True)
class _And(_Expr):
    left: _Expr
    right: _Expr
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        left = _truth(self.left.evaluate(ctx), ctx)
        if left is False:
            return False
        right = _truth(self.right.evaluate(ctx), ctx)
        if right is False:
            return False
        return None if left is None or right is None else True


@dataclass(frozen=True)
class _Or(_Expr):
    left: _Expr
    right: _Expr
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        left = _truth(self.left.evaluate(ctx), ctx)
        if left is True:
            return True
        right = _truth(self.right.evaluate(ctx), ctx)
        if right is True:
            return True
        return None if left is None or right is None else False


@dataclass(frozen=True)
class _Compare(_Expr):
    op: str
    left: _Expr
    right: _Expr
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        return _compare(self.op, self.left.evaluate(ctx), self.right.evaluate(ctx), ctx)


@dataclass(frozen=True)
class _Between(_Expr):
    operand: _Expr
    low: _Expr
    high: _Expr
    negated: bool
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        value = self.operand.evaluate(ctx)
        above = _compare(">=", value, self.low.evaluate(ctx), ctx)
        below = _compare("<=", value, self.high.evaluate(ctx), ctx)
        if above is False or below is False:
            inside: bool | None = False
        elif above is None or below is None:
            inside = None
        else:
            inside = True
        return inside if inside is None or not self.negated else not inside


@dataclass(frozen=True)
class _In(_Expr):
    operand: _Expr
    choices: tuple[Value, ...]
    negated: bool
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        value = self.operand.evaluate(ctx)
        if value is None:
            return None
        found = any(_compare("=", value, choice, ctx) is True for choice in self.choices)
        return found != self.negated


@dataclass(frozen=True)
class _Like(_Expr):
    operand: _Expr
    pattern: re.Pattern[str]
    negated: bool
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        value = self.operand.evaluate(ctx)
        if value is None:
            return None
        if not isinstance(value, str):
            return False
        return (self.pattern.fullmatch(value) is not None) != self.negated


@dataclass(frozen=True)
class _IsNull(_Expr):
    operand: _Expr
    negated: bool
    condition = True

    def evaluate(self, ctx: _Context) -> Value:
        return (self.operand.evaluate(ctx) is None) != self.negated


@dataclass(frozen=True)
class _Arithmetic(_Expr):
    op: str
    left: _Expr
    right: _Expr

    def evaluate(self, ctx: _Context) -> Value:
        left = _numeric(self.left.evaluate(ctx), ctx)
        right = _numeric(self.right.evaluate(ctx), ctx)
        if left is None or right is None:
            return None
        if self.op == "+":
            return left + right
        if self.op == "-":
            return left - right
        if self.op == "*":
            return left * right
        if right == 0:
            return None  # Java throws; a selector cannot, so the result is UNKNOWN
        if isinstance(left, int) and isinstance(right, int):
            quotient = abs(left) // abs(right)  # Java truncates toward zero
            return quotient if (left < 0) == (right < 0) else -quotient
        return left / right


@dataclass(frozen=True)
class _Negate(_Expr):
    operand: _Expr

    def evaluate(self, ctx: _Context) -> Value:
        value = _numeric(self.operand.evaluate(ctx), ctx)
        return None if value is None else -value


def _truth(value: Value, ctx: _Context) -> bool | None:
    """A value used as a condition: a boolean, or UNKNOWN."""
    if isinstance(value, bool):
        return value
    if ctx.convert and isinstance(value, str):
        lowered = value.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def _numeric(value: Value, ctx: _Context) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if ctx.convert and isinstance(value, str):
        return _as_number(value)
    return None


def _as_number(text: str) -> int | float | None:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        number = float(text.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _compare(op: str, left: Value, right: Value, ctx: _Context) -> bool | None:
    if left is None or right is None:
        return None
    if ctx.convert:
        left, right = _converted(left, right), _converted(right, left)
    if (
        isinstance(left, bool)
        or isinstance(right, bool)
        or isinstance(left, str)
        or isinstance(right, str)
    ):
        if type(left) is not type(right):
            return False  # unlike types: FALSE, as JMS says
        if op == "=":
            return left == right
        if op == "<>":
            return left != right
        return False  # strings and booleans compare only by = and <>
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if op == "=":
        return left == right
    if op == "<>":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _converted(value: Value, other: Value) -> Value:
    """convert_string_expressions: a string compared with a number (boolean) reads as one."""
    if not isinstance(value, str):
        return value
    if isinstance(other, bool):
        lowered = value.lower()
        return lowered == "true" if lowered in ("true", "false") else value
    if isinstance(other, int | float):
        number = _as_number(value)
        return value if number is None else number
    return value


def _like_pattern(pattern: str, escape: str | None) -> re.Pattern[str]:
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(parts), re.DOTALL)


# ---- the parser -------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._depth = 0

    @property
    def _next(self) -> _Token:
        return self._tokens[self._at]

    def _take(self) -> _Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _keyword(self, *words: str) -> bool:
        token = self._next
        if token.kind == "keyword" and token.text in words:
            self._at += 1
            return True
        return False

    def _op(self, *ops: str) -> str | None:
        token = self._next
        if token.kind == "op" and token.text in ops:
            self._at += 1
            return token.text
        return None

    def _expect_keyword(self, word: str) -> None:
        if not self._keyword(word):
            raise self._unexpected(f"{word}")

    def _unexpected(self, wanted: str) -> InvalidSelector:
        token = self._next
        found = "the end of the selector" if token.kind == "end" else repr(token.text)
        return _error(token.position, f"expected {wanted}, found {found}")

    def selector(self) -> _Expr:
        expr = self._or()
        if self._next.kind != "end":
            raise self._unexpected("AND, OR or the end of the selector")
        if not expr.boolean:
            raise _error(0, "a selector must be a condition (TRUE, FALSE or a comparison)")
        return expr

    def _condition(self, expr: _Expr, token: _Token) -> _Expr:
        if not expr.boolean:
            raise _error(token.position, "AND, OR and NOT need conditions on both sides")
        return expr

    def _or(self) -> _Expr:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _error(self._next.position, f"nested more than {MAX_DEPTH} deep")
        start = self._next
        expr = self._and()
        while self._keyword("OR"):
            right_start = self._next
            expr = _Or(self._condition(expr, start), self._condition(self._and(), right_start))
        self._depth -= 1
        return expr

    def _and(self) -> _Expr:
        start = self._next
        expr = self._not()
        while self._keyword("AND"):
            right_start = self._next
            expr = _And(self._condition(expr, start), self._condition(self._not(), right_start))
        return expr

    def _not(self) -> _Expr:
        if self._keyword("NOT"):
            start = self._next
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise _error(start.position, f"nested more than {MAX_DEPTH} deep")
            operand = self._condition(self._not(), start)
            self._depth -= 1
            return _Not(operand)
        return self._predicate()

    def _predicate(self) -> _Expr:
        left = self._sum()
        op = self._op("=", "<>", "<", "<=", ">", ">=")
        if op is not None:
            return _Compare(op, left, self._sum())
        if self._keyword("IS"):
            negated = self._keyword("NOT")
            self._expect_keyword("NULL")
            return _IsNull(left, negated)
        negated = self._keyword("NOT")
        if self._keyword("BETWEEN"):
            low = self._sum()
            self._expect_keyword("AND")
            return _Between(left, low, self._sum(), negated)
        if self._keyword("IN"):
            if not isinstance(left, _Property):
                raise _error(self._tokens[self._at - 1].position, "IN needs a property on its left")
            return _In(left, self._choices(), negated)
        if self._keyword("LIKE"):
            if not isinstance(left, _Property):
                raise _error(
                    self._tokens[self._at - 1].position, "LIKE needs a property on its left"
                )
            pattern = self._string("a string pattern after LIKE")
            escape: str | None = None
            if self._keyword("ESCAPE"):
                escape_token = self._next
                escape = self._string("a one-character string after ESCAPE")
                if len(escape) != 1:
                    raise _error(escape_token.position, "ESCAPE takes exactly one character")
            return _Like(left, _like_pattern(pattern, escape), negated)
        if negated:
            raise self._unexpected("BETWEEN, IN or LIKE after NOT")
        return left

    def _string(self, wanted: str) -> str:
        token = self._next
        if token.kind != "string":
            raise self._unexpected(wanted)
        self._at += 1
        assert isinstance(token.value, str)
        return token.value

    def _choices(self) -> tuple[Value, ...]:
        if self._op("(") is None:
            raise self._unexpected("'(' after IN")
        choices: list[Value] = []
        while True:
            token = self._next
            if token.kind in ("string", "number"):
                choices.append(token.value)
            elif token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
                choices.append(token.text == "TRUE")
            else:
                raise self._unexpected("a literal in the IN list")
            self._at += 1
            if self._op(")") is not None:
                return tuple(choices)
            if self._op(",") is None:
                raise self._unexpected("',' or ')' in the IN list")

    def _sum(self) -> _Expr:
        expr = self._product()
        while (op := self._op("+", "-")) is not None:
            expr = _Arithmetic(op, self._value(expr), self._value(self._product()))
        return expr

    def _product(self) -> _Expr:
        expr = self._unary()
        while (op := self._op("*", "/")) is not None:
            expr = _Arithmetic(op, self._value(expr), self._value(self._unary()))
        return expr

    def _value(self, expr: _Expr) -> _Expr:
        if isinstance(expr, _Literal) and not isinstance(expr.value, int | float):
            raise _error(self._tokens[self._at - 1].position, "arithmetic needs numbers")
        if expr.boolean and not isinstance(expr, _Property | _Literal):
            raise _error(self._tokens[self._at - 1].position, "arithmetic needs numbers")
        return expr

    def _unary(self) -> _Expr:
        op = self._op("+", "-")
        if op is None:
            return self._primary()
        operand = self._value(self._unary())
        if op == "+":
            return operand
        if isinstance(operand, _Literal) and isinstance(operand.value, int | float):
            return _Literal(-operand.value)
        return _Negate(operand)

    def _primary(self) -> _Expr:
        token = self._take()
        if token.kind in ("string", "number"):
            return _Literal(token.value)
        if token.kind == "name":
            return _Property(token.text)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return _Literal(token.text == "TRUE")
        if token.kind == "keyword" and token.text == "NULL":
            raise _error(token.position, "NULL is tested with IS NULL or IS NOT NULL")
        if token.kind == "op" and token.text == "(":
            expr = self._or()
            if self._op(")") is None:
                raise self._unexpected("')'")
            return expr
        self._at -= 1
        raise self._unexpected("a value, a property name or '('")


# ---- the public face --------------------------------------------------------------------


@dataclass(frozen=True)
class Selector:
    """A parsed selector; `matches` is TRUE only when the selector is TRUE (not UNKNOWN)."""

    text: str
    _expr: _Expr
    convert: bool

    def matches(self, lookup: Lookup) -> bool:
        return self.evaluate(lookup) is True

    def evaluate(self, lookup: Lookup) -> bool | None:
        """TRUE, FALSE or UNKNOWN (None): the selector's three-valued result."""
        ctx = _Context(lookup, self.convert)
        return _truth(self._expr.evaluate(ctx), ctx)


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
            raise _error(offset, "a condition must follow convert_string_expressions:")
    expr = _Parser(_tokens(body, offset)).selector()
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
