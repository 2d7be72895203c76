"""How error messages show values and paths: on one line, and short, whatever they hold.

A file name may contain a newline, a list from a damaged file may hold a million items, and
an integer from JSON may have thousands of digits (which ``repr`` refuses to print at all).
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = ["escaped", "shown"]

# Every character str.splitlines() breaks at, and the other C0 controls.
_ESCAPES = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7F, 0x85)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})

_BIG_INT_BITS = 128


def escaped(text: str) -> str:
    """``text`` with line breaks and control characters written as escapes (``\\n``)."""
    return text.translate(_ESCAPES)


def _big_int(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}an integer of {value.bit_length()} bits"


class _ShortRepr(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxtuple = self.maxlist = self.maxdict = self.maxset = 8
        self.maxstring = self.maxother = 80

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > _BIG_INT_BITS:
            return _big_int(x)
        return repr(x)


_REPR = _ShortRepr()


def shown(value: Any) -> str:
    """A short one-line ``repr`` of ``value`` for an error message (long containers and
    strings are cut with ``...``; huge integers are described by their size)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _big_int(value) if value.bit_length() > _BIG_INT_BITS else repr(value)
    try:
        text = _REPR.repr(value)
    except Exception:  # a broken __repr__ must not hide the error being reported
        text = f"<{type(value).__name__}>"
    return escaped(text)
