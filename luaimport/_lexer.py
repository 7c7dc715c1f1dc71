"""Stage 1: a Lua 5.1 lexer, the only way luaimport reads Lua source.

It follows llex.c of Lua 5.1.5 as Redis builds it (``LUA_COMPAT_LSTR == 1``):
short strings with escapes, long brackets of any level, short and long
comments, numerals, names, keywords and operators.  Comments are tokens here,
because markers, directives and docstrings live in them.  Tokens keep their
exact text and position, so later stages can point at any token and copy user
text verbatim; nothing in luaimport ever pattern-matches raw source.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ._errors import LuaSyntaxError
from ._source import Source

NAME = "name"
KEYWORD = "keyword"
NUMBER = "number"
STRING = "string"
COMMENT = "comment"
OP = "op"

KEYWORDS = frozenset(
    [
        "and",
        "break",
        "do",
        "else",
        "elseif",
        "end",
        "false",
        "for",
        "function",
        "if",
        "in",
        "local",
        "nil",
        "not",
        "or",
        "repeat",
        "return",
        "then",
        "true",
        "until",
        "while",
    ]
)

_DIGITS = frozenset("0123456789")
_SPACE = re.compile(r"[ \t\f\v]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# llex.c read_numeral: digits and dots, then an optional 'E'/'e' with an optional sign (the only
# place a sign may appear), then letters, digits and '_'.  _NUMERAL is that scan.
_NUMERAL = re.compile(r"[0-9.]+(?:[eE][+-]?)?[0-9A-Za-z_]*")
# The scanned text is a number when luaO_str2d accepts all of it: C strtod (glibc), then strtoul
# base 16 when strtod stopped at an 'x'.  strtod reads decimals with an optional exponent, and
# hex with an optional binary exponent ('p' and decimal digits).  A hex numeral can hold neither
# a '.' (the scan above stops there: 0x1.8p3 is 0x1 then the malformed .8p3) nor a signed 'p'
# exponent (0x1p-4 scans as 0x1p).  On glibc, strtoul never reads further than strtod did.
_VALID_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+(?:[pP][0-9]+)?|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
)
_LONG_OPEN = re.compile(r"\[(=*)\[")
_SHORT_STRING_RUN = {'"': re.compile(r'[^"\\\n]*'), "'": re.compile(r"[^'\\\n]*")}
#: the operators longer than one character, but for ``...``
_OPERATORS = frozenset({"..", "==", "~=", "<=", ">="})
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\n": "\n"}


class Token(NamedTuple):
    """One lexeme: its kind, its exact source text, and where it starts."""

    kind: str
    text: str
    line: int
    start: int

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def end_line(self) -> int:
        return self.line + self.text.count("\n")

    @property
    def is_long(self) -> bool:
        """A long string or long comment (``[==[ ... ]==]``)."""
        body = self.text[2:] if self.kind == COMMENT else self.text
        return _LONG_OPEN.match(body) is not None


#: ``Token(...)`` without the Python-level ``__new__`` a NamedTuple adds: the lexer makes one per token
_new = tuple.__new__


def tokenize(source: Source) -> list[Token]:
    """Lex a whole module; raise :class:`LuaSyntaxError` at the first lexical error."""
    return _Lexer(source).run()


def string_value(token: Token) -> str:
    """The value of a string token, escapes resolved, as Lua would see it."""
    text = token.text
    match = _LONG_OPEN.match(text)
    if match:
        level = len(match.group(1))
        body = text[match.end() : len(text) - level - 2]
        return body[1:] if body.startswith("\n") else body
    out: list[str] = []
    i, end = 1, len(text) - 1
    while i < end:
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in _DIGITS:
            j = i + 1
            while j < i + 4 and text[j] in _DIGITS:
                j += 1
            out.append(chr(int(text[i + 1 : j])))
            i = j
        else:
            out.append(_ESCAPES.get(nxt, nxt))
            i += 2
    return "".join(out)


class _Lexer:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.text = source.text
        self.line = 1
        self.tokens: list[Token] = []

    def fail(self, message: str, line: int) -> LuaSyntaxError:
        return LuaSyntaxError(message, self.source.filename, line, self.source.line(line))

    def emit(self, kind: str, start: int, end: int) -> int:
        text = self.text[start:end]
        self.tokens.append(Token(kind, text, self.line, start))
        self.line += text.count("\n")
        return end

    def run(self) -> list[Token]:
        text, n, pos = self.text, len(self.text), 0
        tokens = self.tokens
        while pos < n:
            c = text[pos]
            if c == "\n":
                self.line += 1
                pos += 1
            elif c in " \t\f\v":
                pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
            elif c in _NAME_START:  # the commonest token: appended here, since a name holds no newline
                end = _NAME.match(text, pos).end()  # type: ignore[union-attr]
                word = text[pos:end]
                tokens.append(_new(Token, (KEYWORD if word in KEYWORDS else NAME, word, self.line, pos)))
                pos = end
            elif c == "-" and text.startswith("--", pos):
                pos = self.comment(pos)
            elif c in _DIGITS or (c == "." and text[pos + 1 : pos + 2] in _DIGITS):
                pos = self.numeral(pos)
            elif c in "\"'":
                pos = self.short_string(pos)
            elif c == "[":
                pos = self.bracket(pos)
            else:
                if text.startswith("...", pos):
                    op = "..."
                elif text[pos : pos + 2] in _OPERATORS:
                    op = text[pos : pos + 2]
                else:
                    op = c
                tokens.append(_new(Token, (OP, op, self.line, pos)))
                pos += len(op)
        return tokens

    def comment(self, pos: int) -> int:
        match = _LONG_OPEN.match(self.text, pos + 2)
        if match:
            return self.emit(COMMENT, pos, self.long_bracket_end(pos, match, "comment"))
        end = self.text.find("\n", pos)
        return self.emit(COMMENT, pos, len(self.text) if end < 0 else end)

    def bracket(self, pos: int) -> int:
        match = _LONG_OPEN.match(self.text, pos)
        if match:
            return self.emit(STRING, pos, self.long_bracket_end(pos, match, "string"))
        if self.text.startswith("[=", pos):
            raise self.fail("invalid long string delimiter (a '[' and '='s not followed by '[')", self.line)
        return self.emit(OP, pos, pos + 1)

    def long_bracket_end(self, start: int, match: re.Match[str], what: str) -> int:
        level = len(match.group(1))
        close = self.text.find("]" + "=" * level + "]", match.end())
        if level == 0:
            nested = self.text.find("[[", match.end(), close if close >= 0 else len(self.text))
            if nested >= 0:
                line = self.line + self.text.count("\n", start, nested)
                raise self.fail("nesting of [[...]] is deprecated (use a level, [=[ ... ]=])", line)
        if close < 0:
            raise self.fail(
                f"unfinished long {what}: no closing ]{'=' * level}] for the [{'=' * level}[ opened here",
                self.line,
            )
        return close + level + 2

    def short_string(self, pos: int) -> int:
        text, quote = self.text, self.text[pos]
        run = _SHORT_STRING_RUN[quote]
        i = pos + 1
        while True:
            i = run.match(text, i).end()  # type: ignore[union-attr]
            c = text[i : i + 1]
            if c == quote:
                return self.emit(STRING, pos, i + 1)
            if c in ("", "\n"):
                raise self.fail("unfinished string", self.line)
            # a backslash escape
            nxt = text[i + 1 : i + 2]
            if nxt == "":
                raise self.fail("unfinished string", self.line)
            if nxt in _DIGITS:
                j = i + 1
                while j < i + 4 and text[j : j + 1] in _DIGITS:
                    j += 1
                if int(text[i + 1 : j]) > 255:
                    raise self.fail("escape sequence too large", self.line + text.count("\n", pos, i))
                i = j
            else:
                i += 2

    def numeral(self, pos: int) -> int:
        end = _NUMERAL.match(self.text, pos).end()  # type: ignore[union-attr]
        if not _VALID_NUMBER.fullmatch(self.text, pos, end):
            raise self.fail(f"malformed number near '{self.text[pos:end]}'", self.line)
        return self.emit(NUMBER, pos, end)
