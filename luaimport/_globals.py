"""Globals, checked offline: what a linked script reads that no sandbox provides, and what it assigns.

The compiler decides what is a global, so the check asks it: the script is
compiled by a real Lua 5.1 and every ``GETGLOBAL``/``SETGLOBAL`` is read from
the bytecode (:mod:`._bytecode`), nested functions included.  No scoping rule
is re-implemented here.

Only the line needs care.  Lua gives an instruction the line of the last
token consumed when it was emitted, which for a global can be a later line
than its name's (``x = prefix`` then ``.. name`` on the next line puts the
read of ``prefix`` on the second line; an assignment is emitted after its
whole right-hand side).  So the script is compiled a second time with one
token per line (comments dropped; a ``(`` stays on its token's line, where
Lua wants a call's parenthesis), which changes nothing but line numbers:
an instruction's line is then the exact token after which it was emitted.
From there the name is found among the tokens:

- a read is emitted at most a few tokens after its name (an operator, a
  ``,``, a ``)``, or ``:method``), so it is the nearest preceding token of
  that name that is not a field (after ``.`` or ``:``);
- a write is emitted at the end of its assignment, so it is the bare name
  of that name in the variable list before the statement's ``=`` (found
  walking back over balanced brackets and blocks); ``function name()`` is
  emitted at its ``function`` keyword, followed by the name.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass

from ._bytecode import global_accesses
from ._lexer import COMMENT, KEYWORD, NAME, OP, Token, tokenize
from ._sandbox import SERVERS
from ._source import Source

#: The globals every measured server provides: what the check accepts without a declaration.
PROVIDED: frozenset[str] = frozenset.intersection(*(frozenset(g) for g in SERVERS.values()))
#: For each global only some servers provide, those servers.
PROVIDERS: dict[str, tuple[str, ...]] = {
    name: tuple(server for server, globals_ in SERVERS.items() if name in globals_)
    for name in sorted(set().union(*SERVERS.values()) - PROVIDED)
}

_OPEN = {"(": -1, "[": -1, "{": -1, ")": 1, "]": 1, "}": 1}
_BLOCK = {"function": -1, "do": -1, "if": -1, "repeat": -1, "end": 1, "until": 1}


@dataclass(frozen=True, slots=True)
class Finding:
    """A global read or written by a script, at the line of its name in that script."""

    name: str
    write: bool
    line: int
    #: locals and upvalues in scope there: the names a typo may have meant
    visible: tuple[str, ...]


def lua_text(script: str) -> str:
    """``script`` as Lua compiles it: a ``#!lua`` first line becomes a comment, as servers skip it."""
    return "--" + script if script.startswith("#") else script


def findings(script: str, dump: Callable[[str], bytes]) -> list[Finding]:
    """Every global access of ``script``; ``dump(text)`` compiles and returns the bytecode.

    ``script`` must compile (check that first): it is compiled again here
    with one token per line.
    """
    source = Source("<linked script>", "<linked script>", lua_text(script))
    tokens = [token for token in tokenize(source) if token.kind != COMMENT]
    pieces: list[str] = []
    ends: list[int] = []  # the line each token ends on, in the text compiled
    line = 1
    for i, token in enumerate(tokens):
        if i:
            if token.kind == OP and token.text == "(":
                pieces.append(" ")
            else:
                pieces.append("\n")
                line += 1
        pieces.append(token.text)
        line += token.text.count("\n")
        ends.append(line)
    found = []
    for access in global_accesses(dump("".join(pieces))):
        last = bisect.bisect_right(ends, access.line) - 1  # the last token consumed
        at = (_written if access.write else _read)(tokens, last, access.name)
        found.append(Finding(access.name, access.write, tokens[at].line, access.visible))
    return found


def _is(token: Token, kind: str, text: str) -> bool:
    return token.kind == kind and token.text == text


def _bare(tokens: list[Token], i: int, name: str) -> bool:
    """Whether token ``i`` is ``name`` used as a variable, not as a field after ``.`` or ``:``."""
    token = tokens[i]
    if token.kind != NAME or token.text != name:
        return False
    return i == 0 or not (tokens[i - 1].kind == OP and tokens[i - 1].text in (".", ":"))


def _read(tokens: list[Token], last: int, name: str) -> int:
    for i in range(last, -1, -1):
        if _bare(tokens, i, name):
            return i
    return last


def _written(tokens: list[Token], last: int, name: str) -> int:
    if _is(tokens[last], KEYWORD, "function") and last + 1 < len(tokens) and _bare(tokens, last + 1, name):
        return last + 1  # function name() ... end
    brackets = blocks = 0
    for equals in range(last, -1, -1):
        token = tokens[equals]
        if token.kind == OP:
            if brackets == blocks == 0 and token.text == "=":
                break
            brackets += _OPEN.get(token.text, 0)
        elif token.kind == KEYWORD:
            blocks += _BLOCK.get(token.text, 0)
    else:
        return last
    brackets = 0
    for i in range(equals - 1, -1, -1):
        token = tokens[i]
        if token.kind == OP:
            brackets += _OPEN.get(token.text, 0)
        elif brackets == 0 and _bare(tokens, i, name):
            following = tokens[i + 1]
            if following.kind == OP and following.text in (",", "="):
                return i
    return last
