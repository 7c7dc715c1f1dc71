"""Stage 0: bytes of a ``.lua`` file -> one normalised text.

Every later stage counts lines the way Lua does, so newlines are normalised
here, once: Lua treats ``\\n``, ``\\r``, ``\\r\\n`` and ``\\n\\r`` each as one line
break (llex.c ``inclinenumber``), and this never changes what a Lua program
means (a raw newline cannot sit in a short string; long strings store any of
them as ``\\n``).  After this, a line is exactly what lies between two ``\\n``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import LuaSyntaxError

_NEWLINE = re.compile(r"\r\n|\n\r|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class Source:
    """A module's text as luaimport reads it: ``\\n`` line ends, no BOM."""

    name: str
    filename: str
    text: str

    @property
    def lines(self) -> list[str]:
        """The lines without their ends; ``lines[n - 1]`` is Lua's line ``n``."""
        return self.text.split("\n")

    def line(self, lineno: int) -> str:
        lines = self.lines
        return lines[lineno - 1] if 0 < lineno <= len(lines) else ""


def normalise_newlines(text: str) -> str:
    return _NEWLINE.sub("\n", text)


def decode(data: bytes | str, name: str, filename: str) -> Source:
    """Decode UTF-8 (a leading BOM is dropped) and normalise line ends.

    Redis accepts any bytes, but a ``.lua`` module is text that Python shows in
    tracebacks and docstrings; bytes that are not UTF-8 are reported at their
    line rather than guessed at.  Write binary data in strings as ``\\ddd``.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            prefix = normalise_newlines(data[: exc.start].decode("utf-8"))
            lineno = prefix.count("\n") + 1
            raise LuaSyntaxError(
                f"byte 0x{data[exc.start]:02x} is not UTF-8 (write binary data as \\ddd escapes)",
                filename,
                lineno,
                prefix.rsplit("\n", 1)[-1],
            ) from None
    else:
        text = data
    if text.startswith(_BOM):
        text = text[1:]
    return Source(name, filename, normalise_newlines(text))
