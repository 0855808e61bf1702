"""What a dead letter's reference says of where it came from and why.

A reference written into a dead-letter queue (or a quarantine log) carries
``<source queue>\\n<reason>``; every other reference carries "". Browsing, delivering and
redriving read it back.
"""

from __future__ import annotations


def dead_letter_reason(source: str, reason: str) -> str:
    """The reason text a dead letter's reference carries."""
    return f"{source}\n{reason}"


def origin(text: str) -> tuple[str | None, str | None]:
    """(source queue, reason) of a dead letter's reference; (None, None) for any other."""
    if not text:
        return None, None
    source, _, why = text.partition("\n")
    return source or None, why or None
