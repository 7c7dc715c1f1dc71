"""Stage 3: sections -> one self-contained script per function, plus its line map.

The script of function ``f`` holds ``f``, its transitive callees and the
preludes of their modules, and nothing else::

    #!lua flags=no-writes                     -- only if f has --@readonly or --@flags
    local CALL = {[0] = function(reply) ... end}  -- the one local the linker adds
    do                                        -- one block per module
    <prelude lines, verbatim>
    CALL[2] = function(KEYS, ARGV)            -- one slot per function; (KEYS, ARGV, ...)
    <body lines, verbatim but for CALL references>  -- when the body uses ...
    end
    end
    return CALL[0](CALL[1](KEYS, ARGV))

``CALL.x.y`` becomes ``CALL[n]``: a plain Lua call through an upvalue, so it
works wherever EVAL works (no globals, no registry).  The linker's only name
is ``CALL`` itself, which the format reserves, so no user local can shadow it;
functions live in one table, so 300 callees cost one local, not 300.  Bodies
take ``KEYS`` and ``ARGV`` as parameters, so user code reads its own
arguments without being rewritten.  A function is vararg only when its body
uses ``...``: Lua 5.1 as servers build it (LUA_COMPAT_VARARG) gives any other
vararg function a hidden ``arg`` table, made on every call.  Every user line
is copied whole at a recorded position, which is what makes the line map
exact.  The entry function's flags become the ``#!lua`` line, which servers
count as line 1, so the line map needs no special case.

``CALL[0]`` passes the entry's reply through, except that an error reply
mentioning ``NOSCRIPT`` anywhere is prefixed with a marker (read raw, with
any metatable dropped: servers cut replies at NUL, turn line breaks into
spaces and, on 6.2, read fields through metatables, so only a prefix is
safe).  So a cache-miss text from the server always means the script did
not run, and a call can load and retry without asking the server anything
first (which would race with other clients loading it).  On Redis 6.2, whose
globals are writable, a script that replaces builtins such as ``type`` for
everyone can still defeat this.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import LuaLinkError
from ._sections import CallRef, Section, Unit
from ._source import Source

#: Finds the parsed module called ``name``; raises ``LookupError`` saying why not.
Resolver = Callable[[str], Unit]

PRELUDE = "<prelude>"

#: Line 1 of every script: the function table, and the reply guard described above.
HEAD = (
    "local CALL = {[0] = function(reply) if type(reply) == 'table' then "
    "if getmetatable(reply) ~= nil then setmetatable(reply, nil) end "
    "local e = rawget(reply, 'err') "
    "if type(e) == 'string' and string.find(e, 'NOSCRIPT', 1, true) then "
    "return {err = 'NOSCRIPT (a reply of the script, not a cache miss) ' .. e} end "
    "end return reply end}"
)
TAIL = "return CALL[0](CALL[1](KEYS, ARGV))"


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved function: its module and its section (for a marker-less module, its script)."""

    unit: Unit
    section: Section

    @property
    def qualname(self) -> str:
        if self.unit.script is self.section:
            return self.unit.name
        return f"{self.unit.name}.{self.section.name}"


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one line of a linked script came from."""

    source: Source
    lineno: int
    function: str
    generated: bool

    @property
    def filename(self) -> str:
        return self.source.filename

    @property
    def source_line(self) -> str:
        return self.source.line(self.lineno)


class LineMap:
    """Generated line -> :class:`Origin`, stored as runs of consecutive lines.

    A run is where it starts, in one list, and the fields of its first line's :class:`Origin`,
    four items in another.  Linking every function of a large module makes hundreds of
    thousands of runs, and only the line of an error is ever looked up; two lists, unlike an
    object or a tuple per run, add next to nothing to what the garbage collector goes through.
    """

    __slots__ = ("_runs", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._runs: list[Any] = []  # source, lineno, function, generated; then the next run's

    def add(self, generated_line: int, source: Source, lineno: int, function: str, generated: bool) -> None:
        """Lines from ``generated_line`` on are ``source``'s from ``lineno`` on (one if ``generated``)."""
        self._starts.append(generated_line)
        self._runs += source, lineno, function, generated

    def lookup(self, generated_line: int) -> Origin | None:
        i = bisect.bisect_right(self._starts, generated_line) - 1
        if i < 0:
            return None
        source, lineno, function, generated = self._runs[4 * i : 4 * i + 4]
        offset = generated_line - self._starts[i]
        if generated and offset:
            return None
        return Origin(source, lineno + offset, function, generated)

    def copy_into(self, other: LineMap, offset: int, first: int = 1) -> None:
        """Add the lines from ``first`` on to ``other``, each moved ``offset`` lines down.

        ``other``'s runs must all start before ``first + offset``.
        """
        for i, start in enumerate(self._starts):
            end = self._starts[i + 1] if i + 1 < len(self._starts) else None
            if end is not None and end <= first:
                continue
            source, lineno, function, generated = self._runs[4 * i : 4 * i + 4]
            if start < first:  # a run that began before ``first``: keep only its part from there
                if generated:
                    continue
                lineno += first - start
                start = first
            other.add(start + offset, source, lineno, function, generated)


@dataclass(frozen=True, slots=True)
class Linked:
    """A function's script, its SHA1 and its line map: what the runtime sends.

    ``flags`` are the entry's script flags (``None``: no ``#!lua`` line);
    ``readonly`` scripts are called with the ``*_RO`` commands.
    ``prelude_vararg``: a prelude uses ``...`` outside any function, where
    only a vararg chunk may (``_library`` then declares its callback vararg).

    A function of a Redis Functions library (``_library``) is run the same
    way: then ``function`` is its name on the server, called with FCALL
    (FCALL_RO when ``readonly``), ``script`` is its whole library's code (what
    ``FUNCTION LOAD`` sends) and ``line_map`` maps that library's lines.
    """

    qualname: str
    script: str
    sha: str
    line_map: LineMap
    flags: tuple[str, ...] | None
    readonly: bool
    prelude_vararg: bool = False
    function: str | None = None


def resolve(unit: Unit, ref: CallRef, resolver: Resolver) -> Target:
    """The function a ``CALL`` reference in ``unit`` names, or :class:`LuaLinkError` at its line."""
    if "." not in ref.target:
        section = unit.functions.get(ref.target)
        if section is None:
            known = ", ".join(unit.functions) or "none: the file has no --@function sections"
            raise _link_error(unit, ref, f"no function of that name in {unit.name} (functions: {known})")
        return Target(unit, section)
    module_name, function = ref.target.rsplit(".", 1)
    reasons = []
    try:
        owner = unit if module_name == unit.name else resolver(module_name)
    except LookupError as exc:
        reasons.append(str(exc))
    else:
        section = owner.functions.get(function)
        if section is not None:
            return Target(owner, section)
        reasons.append(f"{module_name} has no function {function!r}")
    try:
        whole = resolver(ref.target)
    except LookupError:
        pass
    else:
        if whole.script is not None:
            return Target(whole, whole.script)
    raise _link_error(unit, ref, "; ".join(reasons))


def _link_error(unit: Unit, ref: CallRef, why: str) -> LuaLinkError:
    return LuaLinkError(
        f"CALL target {ref.target!r}: {why}", name=unit.name, filename=unit.source.filename, lineno=ref.line
    )


def check(unit: Unit, resolver: Resolver) -> None:
    """Resolve every reference in ``unit`` now, so a bad one fails the import."""
    for section in unit.sections():
        for ref in section.calls:
            resolve(unit, ref, resolver)


def link(entry: Target, resolver: Resolver) -> Linked:
    """Build the script of ``entry``: deterministic text, so the same sources give the same SHA."""
    order = [entry]
    index = {(entry.unit.name, entry.section.name): 1}
    units: list[Unit] = []
    resolved: dict[tuple[str, int], int] = {}

    def visit(unit: Unit, section: Section) -> None:
        for ref in section.calls:
            target = resolve(unit, ref, resolver)
            key = (target.unit.name, target.section.name)
            if key not in index:
                index[key] = len(order) + 1
                order.append(target)
            resolved[(unit.name, ref.start)] = index[key]

    pos = 0
    while pos < len(order):
        target = order[pos]
        if target.unit not in units:
            units.append(target.unit)
            visit(target.unit, target.unit.prelude)
        visit(target.unit, target.section)
        pos += 1

    writer = _Writer()
    qualname = entry.qualname
    entry_line = entry.section.marker_line or 1
    flags = entry.section.flags
    if flags is not None:
        shebang = f"#!lua flags={','.join(flags)}" if flags else "#!lua"
        writer.generated(shebang, entry.unit, entry.section.flags_line, qualname)
    writer.generated(HEAD, entry.unit, entry_line, qualname)
    for unit in units:
        name = unit.name
        members = sorted((t for t in order if t.unit is unit), key=lambda t: t.section.first_line)
        prelude = f"{name}.{PRELUDE}"
        writer.generated("do", unit, 1, prelude)
        writer.user(unit, unit.prelude, prelude, resolved)
        for target in members:
            section, function = target.section, target.qualname
            slot = index[(name, section.name)]
            parameters = "KEYS, ARGV, ..." if section.uses_vararg else "KEYS, ARGV"
            writer.generated(
                f"CALL[{slot}] = function({parameters})", unit, section.marker_line or 1, function
            )
            writer.user(unit, section, function, resolved)
            writer.generated("end", unit, max(section.last_line, 1), function)
        writer.generated("end", unit, max(unit.prelude.last_line, 1), prelude)
    writer.generated(TAIL, entry.unit, entry_line, qualname)
    script = "\n".join(writer.chunks) + "\n"
    sha = hashlib.sha1(script.encode("utf-8")).hexdigest()
    prelude_vararg = any(unit.prelude.uses_vararg for unit in units)
    return Linked(qualname, script, sha, writer.line_map, flags, entry.section.readonly, prelude_vararg)


class _Writer:
    """The script as chunks of whole lines, joined with line breaks at the end, and its line map."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.line = 1  # where the next chunk starts
        self.line_map = LineMap()

    def generated(self, line: str, unit: Unit, lineno: int, function: str) -> None:
        self.line_map.add(self.line, unit.source, lineno, function, True)
        self.chunks.append(line)
        self.line += 1

    def user(self, unit: Unit, section: Section, function: str, resolved: dict[tuple[str, int], int]) -> None:
        if section.last_line < section.first_line:
            return
        text = unit.source.text
        self.line_map.add(self.line, unit.source, section.first_line, function, False)
        pieces = []
        pos = section.start
        for ref in section.calls:
            span = text[ref.start : ref.end]
            pieces.append(text[pos : ref.start])
            # A reference over several lines keeps its line breaks, before CALL[n]: CALL[n] ends on
            # the line where the reference ended, so a '(' after it stays on the same line, or
            # Lua 5.1 would read "ambiguous syntax (function call x new statement)".
            pieces.append("\n" * span.count("\n") + f"CALL[{resolved[(unit.name, ref.start)]}]")
            pos = ref.end
        pieces.append(text[pos : section.end])
        self.chunks.append("".join(pieces))
        self.line += section.last_line - section.first_line + 1
