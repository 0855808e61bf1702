"""The JMS selector parser: recursive descent over the grammar in `selectors/__init__.py`,
one method per rule, building the expression tree (`expressions.py`).
"""

from __future__ import annotations

from typing import Final

from mqless.domain.selectors.expressions import (
    And,
    Arithmetic,
    Between,
    Compare,
    Expr,
    In,
    IsNull,
    Like,
    Literal,
    Negate,
    Not,
    Or,
    Property,
    Value,
    like_pattern,
)
from mqless.domain.selectors.lexer import InvalidSelector, Token, error

MAX_DEPTH: Final = 100  # nesting: deep enough for any real selector, far from the stack's end


class Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._depth = 0

    @property
    def _next(self) -> Token:
        return self._tokens[self._at]

    def _take(self) -> Token:
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
        return error(token.position, f"expected {wanted}, found {found}")

    def selector(self) -> Expr:
        expr = self._or()
        if self._next.kind != "end":
            raise self._unexpected("AND, OR or the end of the selector")
        if not expr.boolean:
            raise error(0, "a selector must be a condition (TRUE, FALSE or a comparison)")
        return expr

    def _condition(self, expr: Expr, token: Token) -> Expr:
        if not expr.boolean:
            raise error(token.position, "AND, OR and NOT need conditions on both sides")
        return expr

    def _or(self) -> Expr:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise error(self._next.position, f"nested more than {MAX_DEPTH} deep")
        start = self._next
        expr = self._and()
        while self._keyword("OR"):
            right_start = self._next
            expr = Or(self._condition(expr, start), self._condition(self._and(), right_start))
        self._depth -= 1
        return expr

    def _and(self) -> Expr:
        start = self._next
        expr = self._not()
        while self._keyword("AND"):
            right_start = self._next
            expr = And(self._condition(expr, start), self._condition(self._not(), right_start))
        return expr

    def _not(self) -> Expr:
        if self._keyword("NOT"):
            start = self._next
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise error(start.position, f"nested more than {MAX_DEPTH} deep")
            operand = self._condition(self._not(), start)
            self._depth -= 1
            return Not(operand)
        return self._predicate()

    def _predicate(self) -> Expr:
        left = self._sum()
        op = self._op("=", "<>", "<", "<=", ">", ">=")
        if op is not None:
            return Compare(op, left, self._sum())
        if self._keyword("IS"):
            negated = self._keyword("NOT")
            self._expect_keyword("NULL")
            return IsNull(left, negated)
        negated = self._keyword("NOT")
        if self._keyword("BETWEEN"):
            low = self._sum()
            self._expect_keyword("AND")
            return Between(left, low, self._sum(), negated)
        if self._keyword("IN"):
            if not isinstance(left, Property):
                raise error(self._tokens[self._at - 1].position, "IN needs a property on its left")
            return In(left, self._choices(), negated)
        if self._keyword("LIKE"):
            if not isinstance(left, Property):
                raise error(
                    self._tokens[self._at - 1].position, "LIKE needs a property on its left"
                )
            pattern = self._string("a string pattern after LIKE")
            escape: str | None = None
            if self._keyword("ESCAPE"):
                escape_token = self._next
                escape = self._string("a one-character string after ESCAPE")
                if len(escape) != 1:
                    raise error(escape_token.position, "ESCAPE takes exactly one character")
            return Like(left, like_pattern(pattern, escape), negated)
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

    def _sum(self) -> Expr:
        expr = self._product()
        while (op := self._op("+", "-")) is not None:
            expr = Arithmetic(op, self._value(expr), self._value(self._product()))
        return expr

    def _product(self) -> Expr:
        expr = self._unary()
        while (op := self._op("*", "/")) is not None:
            expr = Arithmetic(op, self._value(expr), self._value(self._unary()))
        return expr

    def _value(self, expr: Expr) -> Expr:
        if isinstance(expr, Literal) and not isinstance(expr.value, int | float):
            raise error(self._tokens[self._at - 1].position, "arithmetic needs numbers")
        if expr.boolean and not isinstance(expr, Property | Literal):
            raise error(self._tokens[self._at - 1].position, "arithmetic needs numbers")
        return expr

    def _unary(self) -> Expr:
        op = self._op("+", "-")
        if op is None:
            return self._primary()
        operand = self._value(self._unary())
        if op == "+":
            return operand
        if isinstance(operand, Literal) and isinstance(operand.value, int | float):
            return Literal(-operand.value)
        return Negate(operand)

    def _primary(self) -> Expr:
        token = self._take()
        if token.kind in ("string", "number"):
            return Literal(token.value)
        if token.kind == "name":
            return Property(token.text)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return Literal(token.text == "TRUE")
        if token.kind == "keyword" and token.text == "NULL":
            raise error(token.position, "NULL is tested with IS NULL or IS NOT NULL")
        if token.kind == "op" and token.text == "(":
            expr = self._or()
            if self._op(")") is None:
                raise self._unexpected("')'")
            return expr
        self._at -= 1
        raise self._unexpected("a value, a property name or '('")
