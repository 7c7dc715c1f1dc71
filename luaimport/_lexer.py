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
from typing import NamedTuple, NoReturn

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

# The scanned text is a number when luaO_str2d accepts all of it: C strtod (glibc), then strtoul
# base 16 when strtod stopped at an 'x'.  strtod reads decimals with an optional exponent, and
# hex with an optional binary exponent ('p' and decimal digits).  A hex numeral can hold neither
# a '.' (the scan stops there: 0x1.8p3 is 0x1 then the malformed .8p3) nor a signed 'p'
# exponent (0x1p-4 scans as 0x1p).  On glibc, strtoul never reads further than strtod did.
_VALID_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+(?:[pP][0-9]+)?|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
)
_LONG_OPEN = re.compile(r"\[(=*)\[")
#: llex.c read_string's escapes: a backslash and up to three decimal digits, or any one character
_ESCAPE = re.compile(r"\\(?:([0-9]{1,3})|[\s\S])")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\n": "\n"}

#: llex.c read_string: any character but the quote and a raw newline; a backslash escapes the next.
#: These are a string up to its closing quote.
_STRING_BODIES = r"\"[^\"\\\n]*+(?:\\[\s\S][^\"\\\n]*+)*+", r"'[^'\\\n]*+(?:\\[\s\S][^'\\\n]*+)*+"

#: One token, after any spaces on its line, as llex.c reads it.  Alternatives are tried in order,
#: so each group matches only what the ones before it left.  Every character starts a match, so
#: ``finditer`` never skips text; each error group is the start of a token llex.c rejects.
_TOKEN = re.compile(
    r"[ \t\f\v]*+(?:"
    r"(?P<name>[A-Za-z_][A-Za-z0-9_]*+)"
    r"|(?P<newline>\n)"
    # any other character is an operator of its own, but where it starts a comment, a numeral, a
    # long bracket or a string (llex.c's default case)
    r"|(?P<op>\.\.\.|\.\.|==|~=|<=|>=|(?!--|\.[0-9]|\[[\[=])[^ \t\f\v\nA-Za-z0-9_\"'])"
    # llex.c read_long_string: a long comment or string runs to the first close of its level
    r"|(?P<long_comment>--\[(?P<comment_level>=*)\[[\s\S]*?\](?P=comment_level)\])"
    r"|(?P<comment>--(?!\[=*\[)[^\n]*+)"
    r"|(?P<long_string>\[(?P<string_level>=*)\[[\s\S]*?\](?P=string_level)\])"
    rf"|(?P<string>{_STRING_BODIES[0]}\"|{_STRING_BODIES[1]}')"
    # llex.c read_numeral: digits and dots, then an optional 'E'/'e' with an optional sign (the only
    # place a sign may appear), then letters, digits and '_'
    r"|(?P<number>(?=\.?[0-9])[0-9.]++(?:[eE][+-]?)?+[0-9A-Za-z_]*+)"
    r"|(?P<unfinished_long>(?:--)?\[=*\[)"
    r"|(?P<bad_delimiter>\[=)"
    rf"|(?P<unfinished_string>{_STRING_BODIES[0]}|{_STRING_BODIES[1]})"
    r")"
)
_NAME_GROUP, _OP_GROUP, _NEWLINE_GROUP = (_TOKEN.groupindex[g] for g in ("name", "op", "newline"))
_LONG = {"long_comment": COMMENT, "long_string": STRING}


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
        return body.startswith("[") and _LONG_OPEN.match(body) is not None


#: A token as :meth:`_Lexer.other` reads it, ``(kind, text, line, start)``.
Lexeme = tuple[str, str, int, int]


class Lexemes:
    """A module's tokens as four parallel lists: kind, text, line and start of each.

    Strings and ints are not tracked by the garbage collector, and these are
    four objects however long the module: a :class:`Token` per token (a tuple
    subclass, which the collector never stops tracking) would have hundreds
    of thousands traversed again at every full collection while later ones
    are made.  Later stages read the lists, and make a :class:`Token` only
    for the tokens they look at.
    """

    __slots__ = ("kinds", "lines", "starts", "texts")

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.texts: list[str] = []
        self.lines: list[int] = []
        self.starts: list[int] = []

    def __len__(self) -> int:
        return len(self.kinds)

    def token(self, i: int) -> Token:
        """Token ``i``, built without the Python-level ``__new__`` of a NamedTuple."""
        return tuple.__new__(Token, (self.kinds[i], self.texts[i], self.lines[i], self.starts[i]))


def lex(source: Source) -> Lexemes:
    """Lex a whole module; raise :class:`LuaSyntaxError` at the first lexical error."""
    return _Lexer(source).run()


def tokenize(source: Source) -> list[Token]:
    """:func:`lex` as :class:`Token` objects."""
    lexemes = lex(source)
    return [lexemes.token(i) for i in range(len(lexemes))]


def string_value(token: Token) -> str:
    """The value of a string token, escapes resolved, as Lua would see it."""
    text = token.text
    match = _LONG_OPEN.match(text)
    if match:
        level = len(match.group(1))
        body = text[match.end() : len(text) - level - 2]
        return body[1:] if body.startswith("\n") else body
    return _ESCAPE.sub(_unescape, text[1:-1])


def _unescape(escape: re.Match[str]) -> str:
    digits = escape[1]
    return chr(int(digits)) if digits else _ESCAPES.get(escape[0][1], escape[0][1])


class _Lexer:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.text = source.text

    def fail(self, message: str, line: int) -> LuaSyntaxError:
        return LuaSyntaxError(message, self.source.filename, line, self.source.line(line))

    def run(self) -> Lexemes:
        """One pass of :data:`_TOKEN`; names, operators and newlines, most of any module, stay inline."""
        lexemes = Lexemes()
        kind, text, at, start = (
            lexemes.kinds.append,
            lexemes.texts.append,
            lexemes.lines.append,
            lexemes.starts.append,
        )
        line = 1
        for match in _TOKEN.finditer(self.text):
            group = match.lastindex
            if group == _NAME_GROUP:
                word = match[group]
                kind(KEYWORD if word in KEYWORDS else NAME)
            elif group == _OP_GROUP:
                word = match[group]
                kind(OP)
            elif group == _NEWLINE_GROUP:
                line += 1
                continue
            else:
                other = self.other(match, line)
                kind(other[0])
                text(other[1])
                at(line)
                start(other[3])
                line += other[1].count("\n")
                continue
            text(word)
            at(line)
            start(match.start(group))
        return lexemes

    def other(self, match: re.Match[str], line: int) -> Lexeme:
        """The rarer tokens: comments, strings and numerals, checked as llex.c checks them."""
        kind = match.lastgroup
        assert kind is not None  # every alternative of _TOKEN is a group
        start, text = match.start(kind), match[kind]
        if kind == "comment":
            return (COMMENT, text, line, start)
        if kind == "number":
            if not _VALID_NUMBER.fullmatch(text):
                raise self.fail(f"malformed number near '{text}'", line)
            return (NUMBER, text, line, start)
        if kind in ("string", "unfinished_string"):
            # llex.c reads escapes as it goes: one too large is found before the end of the string
            for escape in _ESCAPE.finditer(text):
                if escape[1] and int(escape[1]) > 255:
                    raise self.fail("escape sequence too large", line + text.count("\n", 0, escape.start()))
            if kind == "string":
                return (STRING, text, line, start)
        if kind in _LONG:
            what = _LONG[kind]
            brackets = text[2:] if what == COMMENT else text
            if brackets.startswith("[[") and "[[" in brackets[2:-2]:
                self.long_bracket_error(start, line, what)  # raises: Lua 5.1 rejects a nested [[ at level 0
            return (what, text, line, start)
        if kind == "unfinished_long":
            self.long_bracket_error(start, line, COMMENT if text.startswith("--") else STRING)
        if kind == "bad_delimiter":
            raise self.fail("invalid long string delimiter (a '[' and '='s not followed by '[')", line)
        raise self.fail("unfinished string", line)

    def long_bracket_error(self, start: int, line: int, what: str) -> NoReturn:
        """Raise the error of a long bracket that :data:`_TOKEN` could not match (or matched nested)."""
        opening = start + 2 if what == COMMENT else start
        match = _LONG_OPEN.match(self.text, opening)
        assert match is not None
        level = len(match.group(1))
        close = self.text.find("]" + "=" * level + "]", match.end())
        if level == 0:
            nested = self.text.find("[[", match.end(), close if close >= 0 else len(self.text))
            if nested >= 0:
                line += self.text.count("\n", start, nested)
                raise self.fail("nesting of [[...]] is deprecated (use a level, [=[ ... ]=])", line)
        raise self.fail(
            f"unfinished long {what}: no closing ]{'=' * level}] for the [{'=' * level}[ opened here", line
        )
