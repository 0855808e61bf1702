"""The JMS selector lexer: a selector's text as tokens (strings, numbers, names, keywords,
operators), each with its position, and the error that names where a selector went wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mqless.domain.errors import InvalidRequest
from mqless.domain.selectors.expressions import Value

_KEYWORDS: Final = frozenset(
    {"AND", "OR", "NOT", "BETWEEN", "LIKE", "IN", "IS", "NULL", "TRUE", "FALSE", "ESCAPE"}
)


class InvalidSelector(InvalidRequest):
    """A selector that does not parse; the message names the position."""

    code = "invalid_selector"


@dataclass(frozen=True)
class Token:
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


def tokenize(text: str, offset: int) -> list[Token]:
    """The tokens of `text`, a selector's body that starts at `offset` in the selector."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        c = text[i]
        at = offset + i
        if c.isspace():
            i += 1
            continue
        if c == "'":
            token, i = _string(text, i, at)
        elif c in _DIGITS or (c == "." and i + 1 < len(text) and text[i + 1] in _DIGITS):
            token, i = _number_token(text, i, at)
        elif c.isalpha() or c in "_$":
            token, i = _word(text, i, at)
        else:
            token, i = _operator(text, i, at)
        tokens.append(token)
    tokens.append(Token("end", "", offset + len(text)))
    return tokens


def _string(text: str, i: int, at: int) -> tuple[Token, int]:
    """The string literal that starts at `i` (`''` is a quote), and where it ends."""
    j = i + 1
    parts: list[str] = []
    while True:
        end = text.find("'", j)
        if end < 0:
            raise error(at, "a string literal is not closed (a quote is written '')")
        parts.append(text[j:end])
        if text.startswith("'", end + 1):
            parts.append("'")
            j = end + 2
            continue
        return Token("string", text[i : end + 1], at, "".join(parts)), end + 1


def _number_token(text: str, i: int, at: int) -> tuple[Token, int]:
    """The number literal that starts at `i`, and where it ends."""
    match = _NUMBER.match(text, i)
    assert match is not None
    literal = match.group()
    if match.end() < len(text) and (text[match.end()].isalnum() or text[match.end()] in "_$."):
        raise error(at, f"{text[i : match.end() + 1]!r} is not a number")
    return Token("number", literal, at, _number(literal)), match.end()


def _word(text: str, i: int, at: int) -> tuple[Token, int]:
    """The keyword (any case) or property name that starts at `i`, and where it ends."""
    j = i + 1
    while j < len(text) and (text[j].isalnum() or text[j] in "_$"):
        j += 1
    word = text[i:j]
    if word.upper() in _KEYWORDS:
        return Token("keyword", word.upper(), at), j
    return Token("name", word, at), j


def _operator(text: str, i: int, at: int) -> tuple[Token, int]:
    """The operator that starts at `i`, and where it ends."""
    for op in _OPERATORS:
        if text.startswith(op, i):
            return Token("op", op, at), i + len(op)
    raise error(at, f"unexpected character {text[i]!r}")


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


def error(position: int, problem: str) -> InvalidSelector:
    return InvalidSelector(f"invalid selector at position {position + 1}: {problem}")
