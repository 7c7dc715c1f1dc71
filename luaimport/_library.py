"""Stage 3, for the Functions backend: a module's linked scripts -> one Redis Functions library.

Each function of the module becomes one ``redis.register_function`` whose
callback is the function's linked script, line for line (without its
``#!lua`` line), so callees from other modules travel with their caller just
as they do in script mode::

    #!lua name=pkg__mod__0123456789abcdef    -- the library's name
    local CALL = 'pkg__mod__0123456789abcdef' -- the same, for the function names below
    -- luaimport library of module pkg.mod   -- how luaimport.prune() recognises its own
    redis.register_function{function_name = CALL .. '__incr', flags = {'no-writes'},
    callback = function(KEYS, ARGV)
    local CALL = {[0] = function(reply) ... end}  -- the linked script of pkg.mod.incr
    ...
    return CALL[0](CALL[1](KEYS, ARGV))
    end}
    ...                                       -- one register_function per function

At load time a library may reach only ``redis.register_function``, so
nothing of the user's code runs then: preludes and bodies are built inside
the callback, at every call, as an EVAL builds them, and a prelude's state
cannot outlive its call.  The callback's ``KEYS`` and ``ARGV`` parameters
are what the linked script reads as globals in script mode.

Names are content-addressed: the library is ``<module path, . as __>__<hash>``
where the hash is the first 16 hex digits of the SHA1 of everything after
line 2, and each function is ``<library>__<function>``; only
``[A-Za-z0-9_]`` is allowed in both.  Line 2 gives the name to the
``register_function`` calls, so that the hashed text does not contain its
own hash; it names it ``CALL``, the one name the format reserves, which
every callback redefines on its first line: user code never sees it.  Two
versions of a module get two libraries, which can be loaded side by side.

The callback's first line is the linker's reply guard, extended: a reply
of the function that mentions ``Function not found`` gets a prefix too, so
that text from the server always means the function is missing and did not
run, and a call can redeploy and retry it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from ._linker import HEAD, LineMap, Linked, Resolver, Target, link
from ._sections import Section, Unit

LIBRARY = "<library>"
#: The callbacks' first line: the linker's reply guard, also marking replies that read like a
#: missing function.
FUNCTION_HEAD = HEAD.replace(
    " .. e} end end return reply end}",
    " .. e} end if type(e) == 'string' and string.find(e, 'Function not found', 1, true) then "
    "return {err = 'ERR (a reply of the function, not a missing function) ' .. e} end end return reply end}",
)
assert FUNCTION_HEAD != HEAD, "the linker's reply guard changed: update FUNCTION_HEAD"
#: Line 3 of every library luaimport makes: ``prune`` deletes only libraries that carry it.
MARKER = "-- luaimport library of module {module}"
_MARKER = re.compile(r"-- luaimport library of module ([^\s]+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Library:
    """A module as one Functions library: its name, its code, and each function as the runtime runs it.

    ``functions`` maps each qualified name to a :class:`Linked` whose
    ``function`` is its name on the server; ``whole`` is the library as one
    text, for errors that belong to no function (a compile error at load).
    """

    module: str
    name: str
    code: str
    line_map: LineMap = field(repr=False)
    functions: dict[str, Linked] = field(repr=False)
    whole: Linked = field(repr=False)
    unit: Unit = field(repr=False, compare=False)


def identifier(module: str) -> str:
    """A module name as a library name prefix: parts joined by ``__``, other characters as ``_<hex>_``."""
    return "__".join(_UNSAFE.sub(lambda m: f"_{ord(m.group()):x}_", part) for part in module.split("."))


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def build(unit: Unit, resolver: Resolver) -> Library:
    """The library of ``unit``: deterministic text, so the same sources give the same name everywhere."""
    targets = [Target(unit, section) for section in _sections(unit)]
    lines = [MARKER.format(module=unit.name)]
    line_map = LineMap()
    library_function = f"{unit.name}.{LIBRARY}"
    for number in (1, 2, 3):  # the name, CALL, the marker: lines of no function
        line_map.add(number, unit.source, 1, library_function, True)
    names: dict[str, tuple[Linked, str]] = {}
    for target in targets:
        linked = link(target, resolver)
        function = _function_name(unit, target.section)
        flags = "" if target.section.flags is None else f"flags = {{{_lua_list(target.section.flags)}}}, "
        parameters = "KEYS, ARGV, ..." if linked.prelude_vararg else "KEYS, ARGV"
        header = (
            f"redis.register_function{{function_name = CALL .. '__{function}', {flags}"
            f"callback = function({parameters})"
        )
        marker_line = target.section.marker_line or 1
        line_map.add(len(lines) + 3, unit.source, marker_line, target.qualname, True)
        lines.append(header)
        body = linked.script.split("\n")[:-1]
        skip = 0 if linked.flags is None else 1  # the #!lua line: flags go to register_function
        body = body[skip:]
        assert body[0] == HEAD, "a linked script starts with its reply guard"
        body[0] = FUNCTION_HEAD
        linked.line_map.copy_into(line_map, len(lines) + 2 - skip, skip + 1)
        lines.extend(body)
        last_line = max(target.section.last_line, 1)
        line_map.add(len(lines) + 3, unit.source, last_line, target.qualname, True)
        lines.append("end}")
        names[target.qualname] = (linked, function)
    text = "\n".join(lines) + "\n"
    name = f"{identifier(unit.name)}__{_digest(text)}"
    code = f"#!lua name={name}\nlocal CALL = '{name}'\n{text}"
    sha = hashlib.sha1(code.encode("utf-8")).hexdigest()
    functions = {
        qualname: Linked(qualname, code, sha, line_map, None, linked.readonly, function=f"{name}__{function}")
        for qualname, (linked, function) in names.items()
    }
    whole = Linked(unit.name, code, sha, line_map, None, False)
    return Library(unit.name, name, code, line_map, functions, whole, unit)


def module_of(name: str, code: str) -> str | None:
    """The module whose library ``name`` with ``code`` is, if luaimport made it; else ``None``.

    Only a library whose name, first three lines and hash all agree is
    luaimport's: a library someone else loaded, whatever its name or
    comments, is never taken for one.
    """
    first, second, rest = [*code.split("\n", 2), "", ""][:3]
    if first != f"#!lua name={name}" or second != f"local CALL = '{name}'":
        return None
    marker = _MARKER.fullmatch(rest.partition("\n")[0])
    if marker is None or name != f"{identifier(marker.group(1))}__{_digest(rest)}":
        return None
    return marker.group(1)


def _sections(unit: Unit) -> list[Section]:
    return [unit.script] if unit.script is not None else list(unit.functions.values())


def _function_name(unit: Unit, section: Section) -> str:
    """The part after ``<library>__``: the section's name, or a marker-less module's last name."""
    if unit.script is section:
        return identifier(unit.name.rpartition(".")[2])
    return section.name


def _lua_list(flags: tuple[str, ...]) -> str:
    return ", ".join(f"'{flag}'" for flag in flags)
