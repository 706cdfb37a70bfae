"""User-facing errors: the CLI turns these into one line and exit code 2."""
from __future__ import annotations

from typing import Any

# A message quotes at most this much of a value the user gave: a 10 MB file or a 5,000-digit number must not come
# back as a 10 MB error line.
EXCERPT_CHARS = 60
PATH_CHARS = 300  # paths are quoted longer: they are the user's own and usually short enough


class UserError(ValueError):
    """Bad input from the user (config, space, flags, data, storage). Message is one line."""


class NoFeasibleTrial(RuntimeError):
    """A search finished but no trial reached the accuracy target (CLI exit code 3)."""


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """`repr(value)` cut to about `limit` characters (one line: repr escapes newlines in strings). Big ints are
    not formatted in full: Python refuses to print ints of more than 4,300 digits, and it would be slow."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    if isinstance(value, (list, tuple, dict, set)) and len(value) > 8:  # the first few items, and how many
        head = ", ".join(excerpt(v, limit // 4) for v in list(value)[:3])
        text = f"<a {type(value).__name__} of {len(value)} items: {head}, ...>"
        return text if len(text) <= limit else text[: limit - 4] + "...>"
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # e.g. a self-referencing list from a YAML alias
        return f"<a {type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = 1000) -> str:
    """The CLI's last guard for any message: no line breaks or control characters, bounded length."""
    text = "".join(c if c.isprintable() else " " for c in str(message))
    return text if len(text) <= limit else text[: limit - 3] + "..."
