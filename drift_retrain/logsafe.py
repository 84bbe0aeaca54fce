"""Event values made safe to log: one line, bounded, every control character visible.

A value from a delivery (a run id, an event id, a header, an error message quoting them) could carry
CR/LF to forge a log line, ESC to rewrite a terminal, NUL or a line separator to cut a record. Every
such value passes through :func:`log_value` before it reaches a log call.
"""

from __future__ import annotations

#: Characters of a value kept in a log line; the rest is counted, not written.
MAX_LOGGED = 200


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable() or char == " ":
        return char
    return char.encode("unicode_escape").decode("ascii")  # \n, \x1b, \u2028, \U000e0001


def log_value(value: object, limit: int = MAX_LOGGED) -> str:
    """``value`` as one printable line of at most ``limit`` characters (before escaping), with a count of
    what was cut. Backslashes are doubled, so an escape in the output always means a character that was
    there, never one the sender typed as text."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    if not (text.isprintable() and "\\" not in text):
        text = "".join(_escape(c) for c in text)
    return f"{text}...(+{cut} chars)" if cut > 0 else text
