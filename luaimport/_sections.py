"""Stage 2: tokens -> a module's structure (prelude, function sections, CALLs, docs).

A ``.lua`` module is a prelude followed by sections, each opened by a marker
line ``--@function NAME``.  Markers and directives are short comments that
start their line; anything inside a string or a long comment is not one,
because only the lexer decides what is a comment.  Each ``CALL`` reference is
recorded with its exact character span, so the linker can replace those
characters and nothing else.
"""

from __future__ import annotations

import bisect
import inspect
import keyword
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ._errors import LuaSyntaxError
from ._lexer import COMMENT, KEYWORD, KEYWORDS, NAME, OP, STRING, Lexemes, Token, lex, string_value
from ._source import Source

_DIRECTIVE = re.compile(r"--@([A-Za-z_]\w*)(.*)\Z", re.DOTALL)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_QUALIFIED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*\Z")

FUNCTION = "function"
#: Keywords that open a block, and those that close one: each ``end`` closes one ``function``, ``if``
#: or ``do`` (``while`` and ``for`` loops open theirs with ``do``), each ``until`` one ``repeat``.
_OPENERS = frozenset(["function", "if", "do", "repeat"])
_CLOSERS = frozenset(["end", "until"])
#: Directives a function's head may carry (or a marker-less file's leading
#: comment block).  Anything else is reported as unknown.
SECTION_DIRECTIVES = frozenset({"keys", "args", "readonly", "flags", "globals"})
#: Directives a module's leading comment block may carry in a file with markers:
#: they apply to the prelude and every function of the module.
MODULE_DIRECTIVES = frozenset({"globals"})
#: The script flags Redis 7+ and Valkey read from a ``#!lua flags=...`` first line.
SCRIPT_FLAGS = frozenset({"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys"})
#: Names a declared key or argument cannot take: the call's own parameters.
RESERVED_PARAMS = frozenset({"client", "keys", "args"})


@dataclass(frozen=True, slots=True)
class CallRef:
    """One ``CALL.a.b(...)`` / ``CALL['a.b']`` reference: the target as written and its span."""

    target: str
    line: int
    start: int
    end: int


REQUIRED, OPTIONAL, VARIADIC = "required", "optional", "variadic"
_SUFFIXES = {REQUIRED: "", OPTIONAL: "?", VARIADIC: "..."}


@dataclass(frozen=True, slots=True)
class Params:
    """The names a ``--@keys`` or ``--@args`` line declares, in KEYS or ARGV order.

    The first ``required`` names must be given; the ones after them
    (written ``name?``) may be left out from the end; with ``variadic`` the
    last name (written ``name...``) takes a list of any length.
    """

    names: tuple[str, ...]
    required: int
    variadic: bool
    line: int

    def kinds(self) -> list[tuple[str, str]]:
        """Each name with how it is given: ``required``, ``optional`` (``name?``) or ``variadic``."""
        last = len(self.names) - 1
        return [
            (name, VARIADIC if self.variadic and i == last else REQUIRED if i < self.required else OPTIONAL)
            for i, name in enumerate(self.names)
        ]

    def written(self) -> list[str]:
        """The names as the directive writes them: ``name``, ``name?``, ``name...``."""
        return [name + _SUFFIXES[kind] for name, kind in self.kinds()]

    @property
    def minimum(self) -> int:
        return self.required

    @property
    def maximum(self) -> int | None:
        return None if self.variadic else len(self.names)


@dataclass(slots=True, eq=False)
class Section:
    """A run of whole source lines: the prelude, one function, or a marker-less file."""

    name: str
    marker_line: int
    first_line: int
    last_line: int
    start: int
    end: int
    doc: str | None = None
    keys: Params | None = None
    args: Params | None = None
    #: script flags for the ``#!lua`` line, sorted; ``None`` when no flag
    #: directive was given (no ``#!lua`` line at all)
    flags: tuple[str, ...] | None = None
    #: the line of the first ``--@readonly`` or ``--@flags`` directive (0 without one)
    flags_line: int = 0
    #: whether the body has a ``...`` token, so its function must be vararg
    uses_vararg: bool = False
    #: globals the code may read beyond the sandbox's (``--@globals``), for the offline check
    globals: tuple[str, ...] = ()
    calls: list[CallRef] = field(default_factory=list)

    @property
    def readonly(self) -> bool:
        return self.flags is not None and "no-writes" in self.flags


@dataclass(slots=True, eq=False)
class Unit:
    """A parsed module: everything later stages need, lexed exactly once.

    ``functions`` keeps file order.  A marker-less file has no functions and
    its whole text is ``script``: the module itself is the callable.
    """

    source: Source
    doc: str | None
    prelude: Section
    functions: dict[str, Section]
    script: Section | None
    #: ``--@globals`` of the module's leading comment block (a file with markers):
    #: declared for the prelude and every function
    globals: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.source.name

    def sections(self) -> list[Section]:
        if self.script is not None:
            return [self.script]
        return [self.prelude, *self.functions.values()]


def parse(source: Source) -> Unit:
    """Lex and section a module; every format error is a :class:`LuaSyntaxError` at its line."""
    return _Parser(source, lex(source)).run()


def check_function_name(name: str) -> str | None:
    """Why ``name`` cannot name a function section, or ``None`` if it can."""
    if not _IDENTIFIER.match(name):
        return f"{name!r} is not an identifier"
    if name in KEYWORDS:
        return f"{name!r} is a Lua keyword"
    if keyword.iskeyword(name):
        return f"{name!r} is a Python keyword"
    if name.startswith("_"):
        return f"{name!r} starts with '_' (reserved for Python and luaimport)"
    return None


def _check_param_name(name: str) -> str | None:
    """Why ``name`` cannot name a declared key or argument (a Python keyword argument), or ``None``."""
    if not _IDENTIFIER.match(name):
        return f"{name!r} is not an identifier"
    if keyword.iskeyword(name):
        return f"{name!r} is a Python keyword"
    if name in RESERVED_PARAMS:
        return f"{name!r} is reserved: the call itself takes client, keys and args"
    return None


def _comment_text(token: Token) -> str:
    if token.is_long:
        return string_value(token._replace(text=token.text[2:]))
    body = token.text.lstrip("-")
    return body[1:] if body.startswith(" ") else body


def _doc(comments: list[Token]) -> str | None:
    if not comments:
        return None
    return inspect.cleandoc("\n".join(_comment_text(t) for t in comments)) or None


#: a head's comments, each with its directive (word, rest) if it is one
_Head = list[tuple[Token, tuple[str, str] | None]]


class _Parser:
    def __init__(self, source: Source, lexemes: Lexemes) -> None:
        self.source = source
        self.lexemes = lexemes
        self.kinds, self.texts, self.starts = lexemes.kinds, lexemes.texts, lexemes.starts
        self.text = source.text
        self.line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        lines = len(self.line_starts)
        self.last_line = lines - 1 if self.text.endswith("\n") else lines

    def fail(self, message: str, line: int) -> LuaSyntaxError:
        return LuaSyntaxError(message, self.source.filename, line, self.source.line(line))

    def token(self, i: int) -> Token:
        return self.lexemes.token(i)

    def found(self, prefix: str, first: int, last: int) -> Iterator[int]:
        """The indices of the tokens ``first`` to ``last - 1`` whose text starts with ``prefix``.

        Found in the source text and looked up by position: markers, directives and CALLs are a
        few of a module's tokens, and visiting every token for each would cost more than the
        rest of this stage.  The lexer still decides: text that starts no token (inside a string
        or a comment, or mid-name) is passed over.
        """
        text, starts = self.text, self.starts
        end = starts[last] if last < len(starts) else len(text)
        pos = starts[first] if first < last else end
        while (pos := text.find(prefix, pos, end)) >= 0:
            i = bisect.bisect_left(starts, pos, first, last)
            if i < last and starts[i] == pos:
                yield i
            pos += 1

    def code(self, first: int, last: int) -> Iterator[Token]:
        """The tokens ``first`` to ``last - 1`` but comments."""
        kinds, token = self.kinds, self.lexemes.token
        return (token(i) for i in range(first, last) if kinds[i] != COMMENT)

    def starts_line(self, token: Token) -> bool:
        return self.text[self.line_starts[token.line - 1] : token.start].strip(" \t") == ""

    def directive(self, token: Token) -> tuple[str, str] | None:
        if token.kind != COMMENT or not token.text.startswith("--@") or token.is_long:
            return None
        if not self.starts_line(token):
            return None
        match = _DIRECTIVE.match(token.text)
        if match is None:
            raise self.fail(f"malformed directive {token.text!r} (expected '--@word ...')", token.line)
        return match.group(1), match.group(2).strip()

    def line_offset(self, line: int) -> int:
        return self.line_starts[line - 1] if line <= len(self.line_starts) else len(self.text)

    def line_end(self, line: int) -> int:
        if line < len(self.line_starts):
            return self.line_starts[line] - 1
        return len(self.text)

    def section(self, name: str, marker_line: int, first: int, last: int) -> Section:
        start = self.line_offset(first)
        end = self.line_end(last) if last >= first else start
        return Section(name, marker_line, first, last, start, end)

    def run(self) -> Unit:
        if self.text.startswith("#"):
            raise self.fail(
                "a '#' first line is not Lua: Redis reads script flags only from the first line of "
                "the linked script, which luaimport writes; declare them with --@readonly or --@flags",
                1,
            )
        markers: list[tuple[Token, str]] = []
        starts: list[int] = []  # where each marker's section begins in the token list
        seen: dict[str, Token] = {}
        for i in self.found("--@function", 0, len(self.lexemes)):
            token = self.token(i)
            found = self.directive(token)
            if found and found[0] == FUNCTION:
                markers.append((token, self.function_name(token, found[1], seen)))
                starts.append(i)
        # a marker starts its line, so its token starts its section's tokens
        edges = [0, *starts, len(self.lexemes)]
        head = self.leading_comments(0, edges[1], 0)
        if not markers:
            script = self.section(self.source.name, 0, 1, self.last_line)
            doc_tokens = self.head(script, head)
            self.reject_directives(len(head), edges[1])
            self.fill(script, 0, edges[1], "the script")
            return Unit(self.source, _doc(doc_tokens), self.section("", 0, 1, 0), {}, script)

        bounds = [m.line for m, _ in markers] + [self.last_line + 1]
        prelude = self.section("", 0, 1, bounds[0] - 1)
        doc_head = self.module_head(prelude, head)
        functions: dict[str, Section] = {}
        self.reject(doc_head)
        self.reject_directives(len(head), edges[1])
        self.fill(prelude, 0, edges[1], "the prelude")
        for i, (marker, name) in enumerate(markers):
            section = self.section(name, marker.line, marker.line + 1, bounds[i + 1] - 1)
            first, last = edges[i + 1], edges[i + 2]
            function_head = self.leading_comments(first + 1, last, marker.line)
            section.doc = _doc(self.head(section, function_head))
            self.reject_directives(first + 1 + len(function_head), last)
            self.fill(section, first, last, f"function {name!r}")
            functions[name] = section
        return Unit(self.source, _doc(doc_head), prelude, functions, None, prelude.globals)

    def fill(self, section: Section, first: int, last: int, what: str) -> None:
        """Read the code of a section's tokens, ``first`` to ``last - 1``, into ``section``."""
        section.calls = self.call_refs(first, last)
        self.check_blocks(first, last, what)
        section.uses_vararg = any(self.texts[i] == "..." for i in self.found("...", first, last))

    def head(self, section: Section, comments: _Head) -> list[Token]:
        """Read the directives among a head's ``comments`` into ``section``; the rest is its doc."""
        doc: list[Token] = []
        seen: dict[str, int] = {}
        for token, found in comments:
            if found is None:
                doc.append(token)
                continue
            word, rest = found
            if word not in SECTION_DIRECTIVES:
                self.reject([token])
            if word in seen:
                raise self.fail(
                    f"directive --@{word} given twice for {section.name!r} (first at line {seen[word]})",
                    token.line,
                )
            seen[word] = token.line
            if word == "globals":
                section.globals = self.global_names(rest, token.line)
            elif word in ("keys", "args"):
                other = section.args if word == "keys" else section.keys
                params = self.params(word, rest, token.line, other)
                if word == "keys":
                    section.keys = params
                else:
                    section.args = params
            else:
                self.flags(section, word, rest, token.line)
        return doc

    def module_head(self, prelude: Section, comments: _Head) -> list[Token]:
        """Read ``--@globals`` from a module's leading comment block into ``prelude``; the rest is its doc.

        Other directives there are left in place, to be rejected as misplaced.
        """
        doc: list[Token] = []
        for token, found in comments:
            if found is None or found[0] not in MODULE_DIRECTIVES:
                doc.append(token)
            elif prelude.globals:
                raise self.fail(
                    "directive --@globals given twice in the module's leading comments", token.line
                )
            else:
                prelude.globals = self.global_names(found[1], token.line)
        return doc

    def global_names(self, rest: str, line: int) -> tuple[str, ...]:
        """A ``--@globals`` line: the Lua names of globals the code may read beyond the sandbox's."""
        names = rest.replace(",", " ").split()
        if not names:
            raise self.fail("--@globals needs at least one name", line)
        for i, name in enumerate(names):
            if not _IDENTIFIER.match(name) or name in KEYWORDS:
                raise self.fail(f"--@globals: {name!r} is not a Lua name", line)
            if name in names[:i]:
                raise self.fail(f"--@globals: {name!r} is given twice", line)
        return tuple(names)

    def params(self, word: str, rest: str, line: int, other: Params | None) -> Params:
        """A ``--@keys`` / ``--@args`` line: names, then ``name?`` optional ones, or one last ``name...``."""
        names: list[str] = []
        required, variadic, optional = 0, False, False
        taken = set(other.names) if other else set()
        for written in rest.split():
            if variadic:
                raise self.fail(f"--@{word}: only the last name can take a list ('{names[-1]}...')", line)
            name = written.removesuffix("...").removesuffix("?")
            if written.endswith("..."):
                if optional:
                    raise self.fail(f"--@{word}: '{written}' cannot follow optional names", line)
                variadic = True
            elif written.endswith("?"):
                optional = True
            elif optional:
                raise self.fail(f"--@{word}: required name {name!r} after an optional one", line)
            else:
                required += 1
            problem = _check_param_name(name)
            if problem:
                raise self.fail(f"--@{word}: {problem}", line)
            if name in names or name in taken:
                raise self.fail(f"--@{word}: {name!r} is declared twice (keys and args share names)", line)
            names.append(name)
        return Params(tuple(names), required, variadic, line)

    def flags(self, section: Section, word: str, rest: str, line: int) -> None:
        if word == "readonly":
            if rest:
                raise self.fail(f"--@readonly takes nothing after it, found {rest!r}", line)
            flags = ["no-writes"]
        else:
            flags = rest.replace(",", " ").split()
            for i, flag in enumerate(flags):
                if flag not in SCRIPT_FLAGS:
                    known = ", ".join(sorted(SCRIPT_FLAGS))
                    raise self.fail(f"unknown script flag {flag!r} in --@flags (known: {known})", line)
                if flag in flags[:i]:
                    raise self.fail(f"script flag {flag!r} given twice", line)
        section.flags = tuple(sorted({*(section.flags or ()), *flags}))
        section.flags_line = section.flags_line or line

    def function_name(self, token: Token, rest: str, seen: dict[str, Token]) -> str:
        parts = rest.split()
        if len(parts) != 1:
            raise self.fail(
                f"malformed marker {token.text.strip()!r}: expected '--@function NAME'", token.line
            )
        name = parts[0]
        problem = check_function_name(name)
        if problem:
            raise self.fail(f"invalid function name: {problem}", token.line)
        other = seen.setdefault(name, token)
        if other is not token:
            raise self.fail(f"duplicate function {name!r} (first defined at line {other.line})", token.line)
        return name

    def leading_comments(self, first: int, last: int, previous: int) -> _Head:
        """The comment block that opens tokens ``first`` to ``last - 1``, ending at a blank line or code.

        ``previous`` is the line before the block may start (0 at the top of the module).  Each
        comment comes with its directive, if it is one.
        """
        block: _Head = []
        for i in range(first, last):
            token = self.token(i)
            if token.kind != COMMENT or token.line > previous + 1 or not self.starts_line(token):
                break
            block.append((token, self.directive(token)))  # no marker: markers end the ranges
            previous = token.end_line
        return block

    def reject_directives(self, first: int, last: int) -> None:
        """Directives belong in a head; elsewhere (tokens ``first`` to ``last - 1``) they are mistakes."""
        self.reject(self.token(i) for i in self.found("--@", first, last))

    def reject(self, tokens: Iterable[Token]) -> None:
        for token in tokens:
            found = self.directive(token)
            if found is None or found[0] == FUNCTION:
                continue
            if found[0] in MODULE_DIRECTIVES:
                raise self.fail(
                    f"directive --@{found[0]} must come right after a '--@function' line, or in the "
                    "module's leading comment block",
                    token.line,
                )
            if found[0] in SECTION_DIRECTIVES:
                raise self.fail(
                    f"directive --@{found[0]} must come right after a '--@function' line (or, in a "
                    "file without one, in its leading comment block)",
                    token.line,
                )
            known = ", ".join(f"--@{d}" for d in sorted({FUNCTION, *SECTION_DIRECTIVES}))
            raise self.fail(f"unknown directive --@{found[0]} (known: {known})", token.line)

    def check_blocks(self, first: int, last: int, what: str) -> None:
        """An ``end`` or ``until`` must close a block its own section opened.

        The linker wraps each section in blocks of its own (``do ... end``,
        ``function(KEYS, ARGV) ... end``).  A section that closes more than it
        opens would close those instead: ``end do`` in a function body ends
        the function early, and the linker's ``end`` then closes the ``do``, so
        the script compiles though the section is not valid Lua.  Counting
        keyword tokens finds this exactly; anything else wrong with the blocks
        fails to compile as it would on its own.
        """
        depth = 0
        kinds, texts = self.kinds, self.texts
        for i in range(first, last):
            if kinds[i] != KEYWORD:
                continue
            text = texts[i]
            if text in _OPENERS:
                depth += 1
            elif text in _CLOSERS:
                depth -= 1
                if depth < 0:
                    raise self.fail(
                        f"'{text}' closes no block opened in {what} "
                        "(each section must be complete Lua: it cannot close what luaimport wraps it in)",
                        self.lexemes.lines[i],
                    )

    def call_refs(self, first: int, last: int) -> list[CallRef]:
        refs: list[CallRef] = []
        kinds, texts = self.kinds, self.texts
        for i in self.found("CALL", first, last):
            if kinds[i] != NAME or texts[i] != "CALL":
                continue
            before = i - 1
            while before >= first and kinds[before] == COMMENT:
                before -= 1
            if before >= first and kinds[before] == OP and texts[before] in (".", ":"):
                continue  # a field or method called CALL: obj.CALL
            refs.append(self.call_ref(self.token(i), self.code(i + 1, last)))
        return refs

    def call_ref(self, call: Token, code: Iterator[Token]) -> CallRef:
        """The reference ``call`` starts; ``code`` is the section's code after it."""
        nxt = next(code, None)
        if nxt is not None and nxt.kind == OP and nxt.text == ".":
            parts: list[str] = []
            while nxt is not None and nxt.kind == OP and nxt.text == ".":
                name = next(code, None)
                if name is None or name.kind != NAME:
                    shown = name.text if name is not None else "<eof>"
                    raise self.fail(f"expected a function name after 'CALL.', found {shown!r}", call.line)
                parts.append(name.text)
                end = name.end
                nxt = next(code, None)
            return CallRef(".".join(parts), call.line, call.start, end)
        if nxt is not None and nxt.kind == OP and nxt.text == "[":
            literal, close = next(code, None), next(code, None)
            if literal is None or literal.kind != STRING or close is None or close.text != "]":
                raise self.fail("CALL[...] takes one string literal: CALL['pkg.mod.name']", call.line)
            target = string_value(literal)
            if not _QUALIFIED.match(target):
                raise self.fail(f"CALL[{literal.text}]: {target!r} is not a dotted function name", call.line)
            return CallRef(target, call.line, call.start, close.end)
        raise self.fail(
            "bare CALL: CALL is reserved for calls between scripts; write CALL.name(keys, argv)",
            call.line,
        )
