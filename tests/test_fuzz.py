"""Properties of luaimport on random Lua-like modules, checked against lupa's Lua 5.1.

The sources are built by hypothesis from pieces: short strings with every
escape (valid and not), long strings and long comments of levels 0 to 3 with
``]]`` and ``]=]`` inside, numerals of every form Lua 5.1 reads (and malformed
ones), short comments, ``--@function`` markers (valid, duplicate, invalid
names, unknown directives), ``CALL`` references to functions that exist and
that do not, split over lines and around comments, the four line ends Lua
knows (``\\n``, ``\\r\\n``, ``\\r``, ``\\n\\r``), and garbage characters.

1. ``luaimport.loads`` raises nothing but ``LuaSyntaxError`` and
   ``LuaLinkError``, at a line of the source; an imported module links.
2. Each linked script keeps its sections' tokens, in order, and every user
   line sits where its line map says, equal to the source line but for
   ``CALL`` references, which become ``CALL[n]`` (one ``n`` per function).
3. A linked script compiles under Lua 5.1 exactly when its input does (see
   :func:`test_linked_script_compiles_exactly_when_its_sections_do`); and
   the lexical errors ``loads`` reports are exactly Lua's.

The normal run tries a fixed, small set of examples (``derandomize``), so the
suite stays quick and deterministic; ``LUAIMPORT_FUZZ_EXAMPLES=10000`` runs
that many random examples per property::

    LUAIMPORT_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest -q tests/test_fuzz.py
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import lupa.lua51
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import luaimport
from luaimport import LuaLinkError, LuaSyntaxError
from luaimport._lexer import COMMENT, NAME, NUMBER, OP, STRING, Token, string_value, tokenize
from luaimport._source import Source

MODULE = "fuzzmod"
FILENAME = "<fuzz>"
#: Function names markers use; CALLs name these, and "nope", which no marker defines.
FUNCTIONS = ("f", "g", "h")
#: A module name no CALL target may find (imports are blocked while a source loads).
MISSING = "nosuchmod_fz"

EXAMPLES = int(os.environ.get("LUAIMPORT_FUZZ_EXAMPLES") or 0)
settings.register_profile("luaimport-fuzz", max_examples=60, deadline=None, derandomize=True)
settings.register_profile(
    "luaimport-fuzz-full",
    max_examples=max(EXAMPLES, 1),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("luaimport-fuzz-full" if EXAMPLES else "luaimport-fuzz")

LINE_ENDS = ("\n", "\r\n", "\r", "\n\r")
_LUA_LINE_END = re.compile(r"\r\n|\n\r|\r|\n")

_lua = lupa.lua51.LuaRuntime(encoding=None)
_loadstring = _lua.eval(b"function(s) local f, err = loadstring(s, '=x') return err end")


def lua_compile_error(code: str) -> str | None:
    """Lua 5.1's compile error for ``code`` (``x:LINE: message``), or ``None`` if it compiles."""
    err = _loadstring(code.encode("utf-8"))
    return None if err is None else err.decode("utf-8", "replace")


def lua_lines(text: str) -> list[str]:
    """The lines of ``text`` as Lua counts them (a leading BOM is not Lua's, luaimport drops it)."""
    return _LUA_LINE_END.split(text.removeprefix("\ufeff"))


# --- strategies ----------------------------------------------------------------------------------

line_ends = st.sampled_from(LINE_ENDS)


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws (``st.integers`` favours its bounds: ``integers(0, 9) == 0``
    comes out a third of the time; ``sampled_from`` is uniform)."""
    return st.sampled_from(range(n)).map(lambda i: i == n - 1)


digits = st.text("0123456789", min_size=1, max_size=3)
hex_digits = st.text("0123456789abcdefABCDEF", min_size=1, max_size=3)


@st.composite
def numerals(draw: st.DrawFn, valid: bool) -> str:
    """Every numeral form Lua 5.1 reads; when not ``valid``, also malformed ones."""
    form = draw(st.sampled_from(["decimal", "hex"] + ([] if valid else ["bad", "bad"])))
    if form == "hex":
        text = draw(st.sampled_from(["0x", "0X"])) + draw(hex_digits)
        if draw(st.booleans()):
            text += draw(st.sampled_from("pP")) + draw(digits)
        return text
    if form == "bad":
        return draw(
            st.sampled_from(
                ["0x", "1e", "1e+", "3..2", "0x1p-4", "0x1p+4", "0x1.8p3", "0X.8P1", "1x", "0x1p", "1.5.",
                 "12abc", "0xp1", "0x1_", "00x1", "1e5x", "0x1pA"]
            )
        )  # fmt: skip
    whole, fraction = draw(digits), draw(digits)
    mantissa = draw(st.sampled_from([whole, f"{whole}.", f".{fraction}", f"{whole}.{fraction}"]))
    if draw(st.booleans()):
        mantissa += draw(st.sampled_from("eE")) + draw(st.sampled_from(["", "+", "-"])) + draw(digits)
    return mantissa


STRING_TEXT = ["a", "hi there", " ", "CALL.f(KEYS, ARGV)", "--@function f", "]]", "[[", "]=]", "é", "中",
               "\t", "--", "end", "\x00", "\f"]  # fmt: skip
ESCAPES = ["\\a", "\\b", "\\f", "\\n", "\\r", "\\t", "\\v", "\\\\", '\\"', "\\'"]
#: Not escapes in Lua 5.1, which keeps the character: "\q" is "q".
ODD_ESCAPES = ["\\q", "\\x41", "\\z", "\\u{41}", "\\ ", "\\é", "\\["]


@st.composite
def short_strings(draw: st.DrawFn, valid: bool) -> str:
    quote = draw(st.sampled_from("\"'"))
    other = "'" if quote == '"' else '"'
    biggest = 255 if valid else 999
    part = st.one_of(
        st.sampled_from([*STRING_TEXT, other]),
        st.sampled_from(ESCAPES + ODD_ESCAPES),
        line_ends.map(lambda end: "\\" + end),
        st.builds(lambda n, width: "\\" + str(n).zfill(width), st.integers(0, biggest), st.integers(1, 3)),
    )
    if not valid:
        part = st.one_of(part, line_ends, st.just(quote), st.just("\\"))
    body = "".join(draw(st.lists(part, max_size=5)))
    close = "" if not valid and draw(one_in(6)) else quote
    return quote + body + close


LONG_TEXT = ["text", " ", "]]", "]=]", "]==]", "[[", "[=[", "]", "=", "CALL.f", "--@function g", "\\n",
             '"', "'", "é", "\t", "end"]  # fmt: skip


@st.composite
def long_brackets(draw: st.DrawFn, valid: bool) -> str:
    """``[==[ ... ]==]``; a long comment is ``--`` and one of these."""
    level = draw(st.integers(0, 3))
    body = "".join(draw(st.lists(st.one_of(st.sampled_from(LONG_TEXT), line_ends), max_size=6)))
    if valid:
        # raise the level until the body holds neither its closing bracket nor, at level 0, a '[['
        while (body + "]" + "=" * level + "]").find("]" + "=" * level + "]") < len(body) or (
            level == 0 and "[[" in body
        ):
            level += 1
        close = "]" + "=" * level + "]"
    else:
        right = "]" + "=" * level + "]"
        close = draw(st.sampled_from([right, right, right, "]" + "=" * (level + 1) + "]", "]", ""]))
    return "[" + "=" * level + "[" + body + close


@st.composite
def comments(draw: st.DrawFn, valid: bool) -> str:
    if draw(st.booleans()):
        return "--" + draw(long_brackets(valid))
    pieces = [" note", "", "-", " [[", "[=", " ]]", " CALL.f(KEYS, ARGV)", " --@function f", "-@param x", "é"]
    if not valid:
        pieces += ["@function f", "[", "[=[", "@nope"]
    return "--" + draw(st.sampled_from(pieces)) + draw(st.sampled_from(["", " x", " --[[ ]]"]))


@st.composite
def separators(draw: st.DrawFn, valid: bool) -> str:
    """What lies between two atoms: mostly a space, sometimes a line break or a comment."""
    choices = [" ", " ", " ", " ", "  ", "\t", "NL", "NL", " --[[c]] ", " --[==[\n]==] ", "SHORT"]
    if not valid:
        choices += ["", "", "\f", "\v"]
    sep = draw(st.sampled_from(choices))
    if sep == "NL":
        return draw(line_ends) + draw(st.sampled_from(["", "  ", "\t"]))
    if sep == "SHORT":
        return " -- c" + draw(line_ends)
    return sep


Atoms = list[str]


@st.composite
def call_refs(draw: st.DrawFn, functions: tuple[str, ...], valid: bool) -> Atoms:
    """A ``CALL`` reference as atoms (or, sometimes, a field that is not one)."""
    name = draw(st.sampled_from(functions)) if functions else "nope"
    quoted = draw(st.sampled_from(["'{}'", '"{}"', "[[{}]]", "[=[{}]=]"]))
    forms: list[Atoms] = [
        ["CALL", ".", name],
        ["CALL", ".", MODULE, ".", name],
        ["CALL", "[", quoted.format(f"{MODULE}.{name}"), "]"],
        ["CALL", "[", quoted.format(name), "]"],
        ["t", ".", "CALL"],
        ["t", ":", "CALL", "(", ")"],
    ]
    if not valid:
        forms += [
            ["CALL"],
            ["CALL", "(", ")"],
            ["local", "CALL"],
            ["CALL", "[", "1", "]"],
            ["CALL", "[", "'bad name'", "]"],
            ["CALL", ".", "end"],
            ["CALL", "[[f]]"],
            ["CALL", "."],
            ["CALL", ".", "nope"],
            ["CALL", ".", MODULE, ".", "nope"],
            ["CALL", ".", MISSING, ".", "f"],
            ["CALL", "[", f"'{MISSING}.f'", "]"],
        ]
    return draw(st.sampled_from(forms))


@dataclass
class Context:
    functions: tuple[str, ...]
    valid: bool


@st.composite
def expressions(draw: st.DrawFn, ctx: Context, depth: int = 0) -> Atoms:
    simple = st.one_of(
        numerals(ctx.valid).map(lambda n: [n]),
        short_strings(ctx.valid).map(lambda s: [s]),
        long_brackets(ctx.valid).map(lambda s: [s]),
        st.sampled_from([["x"], ["y"], ["KEYS", "[", "1", "]"], ["ARGV"], ["nil"], ["true"], ["..."]]),
    )
    if depth >= 2:
        return draw(simple)
    sub = expressions(ctx, depth + 1)
    kind = draw(st.sampled_from(["simple", "simple", "call", "ref", "table", "binary", "paren", "function"]))
    if kind == "simple":
        return draw(simple)
    if kind == "ref":
        return draw(call_refs(ctx.functions, ctx.valid))
    if kind == "call":
        callee = draw(st.one_of(call_refs(ctx.functions, ctx.valid), st.just(["redis", ".", "call"])))
        return [*callee, "(", *draw(sub), ",", *draw(sub), ")"]
    if kind == "table":
        return ["{", *draw(sub), ",", *draw(sub), "}"]
    if kind == "binary":
        return [*draw(sub), draw(st.sampled_from(["+", "..", "==", "~=", "and", "or", "<="])), *draw(sub)]
    if kind == "paren":
        return ["(", *draw(sub), ")"]
    return ["function", "(", "...", ")", "return", *draw(sub), "end"]


@st.composite
def statements(draw: st.DrawFn, ctx: Context, depth: int = 0) -> Atoms:
    expr = expressions(ctx)
    kinds = ["local", "assign", "assign", "call", "call", "return"]
    if depth < 2:
        kinds += ["if", "do", "for", "while", "repeat", "function"]
    if draw(one_in(16)):
        # statements that are errors wherever they stand, or that close a block they did not open
        kinds = ["break", "end", "end do", "until", "junk"]
    kind = draw(st.sampled_from(kinds))

    def block() -> Atoms:
        return [a for s in draw(st.lists(statements(ctx, depth + 1), max_size=2)) for a in s]

    if kind == "local":
        return ["local", draw(st.sampled_from(["x", "y", "KEYS"])), "=", *draw(expr)]
    if kind == "assign":
        return [draw(st.sampled_from(["x", "t.x", "KEYS[1]"])), "=", *draw(expr)]
    if kind == "call":
        callee = draw(st.one_of(call_refs(ctx.functions, ctx.valid), st.just(["redis", ".", "call"])))
        return [*callee, "(", "KEYS", ",", "ARGV", ")"]
    if kind == "return":
        return ["return", *draw(expr)]
    if kind == "if":
        return ["if", *draw(expr), "then", *block(), "end"]
    if kind == "do":
        return ["do", *block(), "end"]
    if kind == "for":
        return ["for", "i", "=", "1", ",", "2", "do", *block(), "end"]
    if kind == "while":
        return ["while", *draw(expr), "do", *block(), "end"]
    if kind == "repeat":
        return ["repeat", *block(), "until", *draw(expr)]
    if kind == "function":
        return ["local", "function", "lf", "(", "...", ")", *block(), "end"]
    if kind == "end do":
        return ["end", "do"]
    if kind == "until":
        return ["until", "x"]
    if kind == "junk":
        return ["x", "x"]
    return [kind]


GARBAGE = ["@", "$", "!", "?", "`", "\\", "\x00", "é", "中", "~", "[=", "[==", "]", "'", '"', "--[",
           "--[=", "#", "&", "|", "\x7f", "\ufeff", "\u2028", "\x0b", "\x0c", ";", ":", "=", "..",
           "..."]  # fmt: skip


@st.composite
def garbage(draw: st.DrawFn) -> Atoms:
    return [draw(st.one_of(st.sampled_from(GARBAGE), st.characters(codec="utf-8")))]


@st.composite
def marker_lines(draw: st.DrawFn, name: str, valid: bool) -> str:
    indent = draw(st.sampled_from(["", " ", "  ", "\t"]))
    spacing = draw(st.sampled_from([" ", "  ", "\t"]))
    if not valid and draw(one_in(3)):
        bad = ["_x", "end", "class", "None", "1a", "a b", "", "f-g", "é", "f -- note"]
        line = "--@function" + spacing + draw(st.sampled_from(bad))
        other = [
            "--@foo x",
            "--@",
            "--@ function f",
            "--@1x",
            "--@functionf",
            "---@param x",
            "-- --@function f",
        ]
        return indent + draw(st.sampled_from([line, *other]))
    return indent + "--@function" + spacing + name + draw(st.sampled_from(["", " ", "\t"]))


@st.composite
def modules(draw: st.DrawFn, valid: bool) -> str:
    """A Lua module: doc comment, prelude, then sections (or none: a marker-less script).

    Items are lines of atoms; between atoms a separator (which may break the
    line or hold a comment), between items a line end.
    """
    names = tuple(draw(st.lists(st.sampled_from(FUNCTIONS), unique=True, max_size=3)))
    ctx = Context(names, valid)
    items: list[Atoms] = [[c] for c in draw(st.lists(comments(valid), max_size=2))]
    items += draw(st.lists(statements(ctx), max_size=3))
    for name in names:
        items.append([draw(marker_lines(name, valid))])
        items += [[c] for c in draw(st.lists(comments(valid), max_size=2))]
        items += draw(st.lists(statements(ctx), max_size=3))
    if not valid:
        marker = marker_lines(draw(st.sampled_from(FUNCTIONS)), False).map(lambda m: [m])
        extra = st.one_of(garbage(), statements(ctx), marker)
        for _ in range(draw(st.integers(0, 3))):
            items.insert(draw(st.integers(0, len(items))), draw(extra))
    out: list[str] = []
    for i, atoms in enumerate(items):
        if i:
            out.append(draw(line_ends))
        for j, atom in enumerate(atoms):
            if j:
                out.append(draw(separators(valid)))
            out.append(atom)
    if draw(st.booleans()):
        out.append(draw(line_ends))
    text = "".join(out)
    if not valid and draw(one_in(10)):
        text = "\ufeff" + text
    return text


any_modules = st.booleans().flatmap(lambda valid: modules(valid))


# --- helpers -------------------------------------------------------------------------------------


class _NoImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        raise ModuleNotFoundError(f"No module named {name!r} (imports are blocked while fuzzing)", name=name)


@contextmanager
def no_new_imports() -> Iterator[None]:
    """A CALL target names a module to import; a random one must never import anything."""
    blocker = _NoImports()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)


def load(text: str | bytes) -> luaimport.LuaModule:
    with no_new_imports():
        return luaimport.loads(text, MODULE, FILENAME)


def scripts(module: luaimport.LuaModule) -> list[tuple[str, Any]]:
    """(name, callable) for every function, or the module itself when it has no markers."""
    if module.__all__:
        return [(name, getattr(module, name)) for name in module.__all__]
    return [(MODULE, module)]


@dataclass
class Ref:
    """A CALL reference found by the tests' own reading of the spec (README, "CALL")."""

    target: str
    start: int
    end: int
    first_line: int
    last_line: int


@dataclass
class Section:
    name: str | None  # None: the prelude, or a marker-less module's whole text
    first: int
    last: int
    tokens: list[Token] = field(default_factory=list)
    refs: list[Ref] = field(default_factory=list)


@dataclass
class Layout:
    text: str
    lines: list[str]
    sections: list[Section]
    markerless: bool

    def section_of(self, lineno: int) -> Section:
        return next(s for s in self.sections if s.first <= lineno <= s.last)

    def function(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)

    def body(self, section: Section) -> str:
        return "\n".join(self.lines[section.first - 1 : section.last])


def layout(raw: str) -> Layout:
    """Sections and CALL references of a module that imported, read from its tokens."""
    text = "\n".join(lua_lines(raw))
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    tokens = tokenize(Source(MODULE, FILENAME, text))
    markers: list[tuple[int, str]] = []
    for token in tokens:
        at_line_start = text[starts[token.line - 1] : token.start].strip(" \t") == ""
        if token.kind == COMMENT and not token.is_long and token.text.startswith("--@") and at_line_start:
            # the module imported, so every directive is a valid function marker
            words = token.text.split()
            assert words[0] == "--@function" and len(words) == 2, token.text
            markers.append((token.line, words[1]))
    last = len(lines) - 1 if text.endswith("\n") else len(lines)  # an empty last line is no line
    if not markers:
        sections = [Section(None, 1, last)]
    else:
        bounds = [line for line, _ in markers] + [last + 1]
        sections = [Section(None, 1, bounds[0] - 1)]
        sections += [Section(name, line + 1, bounds[i + 1] - 1) for i, (line, name) in enumerate(markers)]
    for token in tokens:
        section = next((s for s in sections if s.first <= token.line <= s.last), None)
        if section is not None:
            section.tokens.append(token)
    for section in sections:
        section.refs = find_refs(section.tokens)
    return Layout(text, lines, sections, not markers)


def find_refs(tokens: list[Token]) -> list[Ref]:
    code = [t for t in tokens if t.kind != COMMENT]
    refs = []
    for i, token in enumerate(code):
        if token.kind != NAME or token.text != "CALL" or (i and code[i - 1].text in (".", ":")):
            continue
        if code[i + 1].text == ".":
            j, parts = i + 1, []
            while j < len(code) and code[j].kind == OP and code[j].text == ".":
                parts.append(code[j + 1].text)
                j += 2
            target, last = ".".join(parts), code[j - 1]
        else:
            assert code[i + 1].text == "[" and code[i + 2].kind == STRING and code[i + 3].text == "]"
            target, last = string_value(code[i + 2]), code[i + 3]
        refs.append(Ref(target, token.start, last.end, token.line, last.end_line))
    return refs


def function_of(target: str) -> str:
    """The function of this module that a CALL target names (the module imported, so it resolves)."""
    return target.removeprefix(MODULE + ".")


def closure(lay: Layout, name: str | None) -> list[Section]:
    """The sections a function's script holds: the prelude, the function, its callees, transitively."""
    if lay.markerless:
        return [lay.sections[0]]
    included = [lay.sections[0], lay.function(name)] if name is not None else [lay.sections[0]]
    for section in included:
        for ref in section.refs:
            callee = lay.function(function_of(ref.target))
            if callee not in included:
                included.append(callee)
    return included


# --- property 1 ----------------------------------------------------------------------------------


@st.composite
def raw_sources(draw: st.DrawFn) -> str | bytes:
    """Any module text; one in ten is bytes with a byte that is not UTF-8 somewhere."""
    text = draw(any_modules)
    if not draw(one_in(10)):
        return text
    data = text.encode("utf-8")
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x80", b"\xed\xa0\x80"])) + data[at:]


_QUOTED = re.compile(r"'[^']*'")
_EVENT_TAIL = re.compile(r"\s*[(:].*")


def kind_of(message: str) -> str:
    """An error message without its particulars, to count kinds of errors in statistics."""
    return _EVENT_TAIL.sub("", _QUOTED.sub("X", message))


@FUZZ
@given(raw_sources())
def test_loads_raises_only_syntax_and_link_errors_at_a_source_line(source: str | bytes) -> None:
    text = source if isinstance(source, str) else source.decode("utf-8", "replace")
    lines = lua_lines(text)
    try:
        module = load(source)
    except LuaSyntaxError as exc:
        event("LuaSyntaxError: " + kind_of(exc.msg))
        assert exc.filename == FILENAME
        assert exc.lineno is not None and 1 <= exc.lineno <= len(lines), (exc.lineno, len(lines))
        if isinstance(source, str):
            assert exc.text == lines[exc.lineno - 1]
        return
    except LuaLinkError as exc:
        event("LuaLinkError")
        assert exc.filename == FILENAME
        assert 1 <= exc.lineno <= len(lines), (exc.lineno, len(lines))
        return
    event("imported")
    for _, function in scripts(module):
        assert function.script.endswith("\n")  # linking an imported module never fails


# --- property 2 ----------------------------------------------------------------------------------

_CALL_SLOT = re.compile(r"CALL\[(\d+)\]")
_HEADER_SLOT = re.compile(r"\bCALL\[(\d+)\]\s*=\s*function\b")


def check_linked(lay: Layout, name: str, function: Any) -> None:
    script: str = function.script
    line_map = function.line_map
    linked_lines = script.split("\n")

    # Slots: the generated line that defines CALL[n] names the function it holds.
    slots: dict[int, str] = {}
    for lineno, line in enumerate(linked_lines, 1):
        origin = line_map.lookup(lineno)
        match = _HEADER_SLOT.search(line)
        if origin is not None and origin.generated and match:
            slots[int(match.group(1))] = origin.function

    # Every user line is at the line the map says, in order, once, and only the closure's sections.
    seen: dict[int, list[int]] = {}
    for lineno, line in enumerate(linked_lines, 1):
        origin = line_map.lookup(lineno)
        if origin is None or origin.generated:
            continue
        assert origin.filename == FILENAME
        assert origin.source_line == lay.lines[origin.lineno - 1]
        section = lay.section_of(origin.lineno)
        seen.setdefault(id(section), []).append(origin.lineno)
        assert _CALL_SLOT.sub("CALL[]", line) == expected_line(lay, section, origin.lineno), (lineno, line)
    wanted = [s for s in closure(lay, None if lay.markerless else name) if s.first <= s.last]
    assert sorted(seen) == sorted(id(s) for s in wanted)
    for section in wanted:
        assert seen[id(section)] == list(range(section.first, section.last + 1))

    # Every token of those sections, in order and at its line; each CALL reference is CALL[n],
    # where n is the slot of the function it names.
    linked_tokens: dict[int, list[tuple[Token, int]]] = {}
    for token in tokenize(Source(MODULE, "<linked>", script)):
        origin = line_map.lookup(token.line)
        if origin is not None and not origin.generated:
            section = lay.section_of(origin.lineno)
            linked_tokens.setdefault(id(section), []).append((token, origin.lineno))
    for section in wanted:
        got = linked_tokens.get(id(section), [])
        pos = 0
        for token in section.tokens:
            ref = next((r for r in section.refs if r.start <= token.start < r.end), None)
            if ref is None:
                linked, lineno = got[pos]
                assert (linked.kind, linked.text, lineno) == (token.kind, token.text, token.line)
                pos += 1
            elif token.start == ref.start:
                four = got[pos : pos + 4]
                assert [(t.kind, t.text) for t, _ in four[:2]] + [t.kind for t, _ in four[2:3]] == [
                    (NAME, "CALL"),
                    (OP, "["),
                    NUMBER,
                ]
                assert four[3][0].text == "]"
                assert {lineno for _, lineno in four} == {ref.last_line}
                slot = int(four[2][0].text)
                assert slots[slot] == f"{MODULE}.{function_of(ref.target)}", (ref.target, slots)
                pos += 4
        assert pos == len(got)


def expected_line(lay: Layout, section: Section, lineno: int) -> str:
    """Source line ``lineno`` as the linked script holds it, ``CALL[n]`` written ``CALL[]``.

    A reference over several lines leaves nothing on its first lines and
    ``CALL[]`` at the start of its last one, next to what follows it there (a
    ``(`` must stay on the line of the function it calls, or Lua 5.1 reads an
    ambiguous call).
    """
    line = lay.lines[lineno - 1]
    start = sum(len(x) + 1 for x in lay.lines[: lineno - 1])
    end = start + len(line)
    out, pos = [], start
    for ref in section.refs:
        if ref.end < start or ref.start > end:
            continue
        a, b = max(ref.start, start), min(ref.end, end)
        out.append(_CALL_SLOT.sub("CALL[]", lay.text[pos:a]))
        if ref.last_line == lineno:
            out.append("CALL[]")
        pos = b
    out.append(_CALL_SLOT.sub("CALL[]", lay.text[pos:end]))
    return "".join(out)


@FUZZ
@given(modules(valid=True))
def test_linked_scripts_keep_every_token_at_the_line_the_map_says(source: str) -> None:
    try:
        module = load(source)
    except (LuaSyntaxError, LuaLinkError) as exc:
        event(f"not imported: {type(exc).__name__}")
        return
    event("imported")
    lay = layout(source)
    assert [s.name for s in lay.sections[1:]] == module.__all__
    for name, function in scripts(module):
        check_linked(lay, name, function)


# --- property 3 ----------------------------------------------------------------------------------


@FUZZ
@given(modules(valid=True))
def test_linked_script_compiles_exactly_when_its_sections_do(source: str) -> None:
    """Lua 5.1 compiles a linked script exactly when it compiles its input.

    The input of function ``f``'s script is the sections the script holds:
    ``f``, every function it CALLs (transitively, and those the prelude
    CALLs), and the module's prelude P.  Each function body B, as written
    (``CALL.x.y`` and ``CALL['x.y']`` are ordinary Lua expressions), must
    compile as::

        P
        return function(KEYS, ARGV, ...)
        B
        end

    that is, P is a block that statements may follow (no ``return`` at its
    end: functions come after it) and B is a function body.  A marker-less
    module's input is its whole text, compiled as the chunk ``EVAL`` would
    send.  What this leaves out: Lua's limits on locals (200 per function,
    one of them the linker's ``CALL``), upvalues (60) and nesting, which the
    generated sources never reach.
    """
    try:
        module = load(source)
    except (LuaSyntaxError, LuaLinkError) as exc:
        event(f"not imported: {type(exc).__name__}")
        return
    lay = layout(source)
    prelude = lay.body(lay.sections[0])
    for name, function in scripts(module):
        script = function.script
        if script.startswith("#!"):  # servers read the flags line and compile the rest, lines kept
            script = "\n" + script.partition("\n")[2]
        linked_error = lua_compile_error(script)
        if lay.markerless:
            inputs = [lay.text]
        else:
            inputs = [
                f"{prelude}\nreturn function(KEYS, ARGV, ...)\n{lay.body(section)}\nend"
                for section in closure(lay, name)[1:]
            ]
        input_errors = [e for e in map(lua_compile_error, inputs) if e is not None]
        event("compiles" if linked_error is None else "does not compile")
        assert (linked_error is None) == (not input_errors), (
            name,
            linked_error,
            input_errors,
            function.script,
        )


LEXICAL = (
    "malformed number",
    "unfinished string",
    "escape sequence too large",
    "unfinished long string",
    "unfinished long comment",
    "nesting of [[...]] is deprecated",
    "invalid long string delimiter",
)
#: Errors Lua reports where the lexer stands when it gives up (the end of the file or of a line),
#: and luaimport where the token starts.
UNFINISHED = ("unfinished string", "unfinished long string", "unfinished long comment")
_LUA_ERROR = re.compile(r"x:(\d+): (.*)\Z", re.DOTALL)


def lexical_class(message: str) -> str | None:
    return next((c for c in LEXICAL if message.startswith(c)), None)


@FUZZ
@given(any_modules)
def test_lexer_fails_exactly_where_lua_does(source: str) -> None:
    """The lexical errors ``loads`` reports are Lua 5.1's, at the same line, and no others.

    Import lexes the whole file before anything else, so its lexical error,
    if any, is the first one.  Lua stops at its first error, lexical or not,
    so: a lexical error at import must be Lua's too, unless Lua met a syntax
    error first (at a line no later); a lexical error of Lua must be the one
    the import reports.  Lua reports an unfinished string or long bracket
    where it gives up, luaimport where the token starts (no later).
    """
    text = source.removeprefix("\ufeff")  # luaimport drops a BOM; Lua would not
    lua_error = lua_compile_error(text)
    lua_line, lua_class = 0, None
    if lua_error is not None:
        match = _LUA_ERROR.match(lua_error)
        assert match, lua_error
        lua_line, lua_class = int(match.group(1)), lexical_class(match.group(2))
    error: LuaSyntaxError | None = None
    try:
        load(source)
    except LuaSyntaxError as exc:
        error = exc
    except LuaLinkError:
        pass
    ours = None if error is None else lexical_class(error.msg)
    if error is None or ours is None:
        event("lexed")
        assert lua_class is None, f"luaimport lexes what Lua calls {lua_error!r}"
        return
    exc = error
    assert exc.lineno is not None
    event(f"lexical error: {ours}")
    assert lua_error is not None, f"Lua reads what luaimport calls {exc.msg!r} at line {exc.lineno}"
    if lua_class is None:
        assert lua_line <= exc.lineno, (lua_error, exc.msg, exc.lineno)
    else:
        assert lua_class == ours, (lua_error, exc.msg)
        if ours in UNFINISHED:
            assert exc.lineno <= lua_line, (lua_error, exc.lineno)
        else:
            assert exc.lineno == lua_line, (lua_error, exc.lineno)


def test_fuzz_module_names_are_not_importable() -> None:
    """The blocker makes this moot, but a CALL target must never name a real module by chance."""
    assert importlib.util.find_spec(MISSING) is None
    assert importlib.util.find_spec(MODULE) is None
