"""Paths built from ids stay under their root: the one helper every id-to-path join goes through.

A drift run id, monitor, model or ledger key that becomes a file name is text someone else chose (an event
field, in the end). ``under`` refuses any part that could leave the root (absolute, a separator, ``.`` or
``..``, a NUL or other control character) and then checks the resolved path, symlinks followed, is still
inside the resolved root, so neither a crafted id nor a planted link reads or writes outside it.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class UnsafePath(ValueError):
    """A path part would leave its root; the message names the part and the rule it broke."""


def _check(part: object) -> None:
    if not isinstance(part, str) or not part:
        raise UnsafePath(f"path part {part!r:.80} must be non-empty text")
    shown = repr(part[:80])
    if _CONTROL.search(part):
        raise UnsafePath(f"path part {shown} contains a control character (NUL included)")
    if "/" in part or "\\" in part:
        raise UnsafePath(f"path part {shown} contains a path separator ('/' or '\\')")
    if part in (".", ".."):
        raise UnsafePath(f"path part {shown} is '.' or '..'")
    if PurePosixPath(part).is_absolute() or PureWindowsPath(part).drive:
        raise UnsafePath(f"path part {shown} is absolute or names a drive")


def under(root: Path, *parts: str) -> Path:
    """``root / part / ...``, refused with ``UnsafePath`` unless every part is one plain name and the result,
    resolved, lies inside ``root`` resolved."""
    for part in parts:
        _check(part)
    path = root.joinpath(*parts)
    base = root.resolve()
    resolved = path.resolve()
    if resolved != base and not resolved.is_relative_to(base):
        raise UnsafePath(f"{path} resolves to {resolved}, outside {base}")
    return path
