"""Offline check: compile every linked script with a real Lua 5.1, and check its globals; no server.

Redis runs Lua 5.1, and lupa ships one (``lupa.lua51``), so a CI job or a
pre-commit hook can find compile errors before any server sees the scripts,
and the two run-time errors a sandbox adds: reading a global it does not
provide (``Script attempted to access nonexistent global variable``) and
assigning any global (``Attempt to modify a readonly table``).
lupa is an optional extra: ``pip install 'luaimport[check]'``.

The globals accepted are those every measured server provides
(:data:`._globals.PROVIDED`): a script that passes runs on all of them.  A
global only some servers have (``os`` on Redis 8 and Valkey 8+, ``server``
on Valkey) is reported with the servers that have it, for a ``--@globals``
declaration to accept when a script targets only those.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable
from typing import Any

from . import _globals
from ._errors import LuaGlobalError, LuaLinkError, LuaSyntaxError
from ._importer import lua_functions, lua_modules_of
from ._linker import PRELUDE, Linked, Origin
from ._protocol import compile_error
from ._runtime import LuaFunction
from ._sections import Unit

Problem = SyntaxError | ImportError


def check(*targets: types.ModuleType, globals: Iterable[str] = ()) -> list[Problem]:
    """Check the scripts of Lua modules, or of every ``.lua`` module under packages.

    Returns the problems found, each at its ``.lua`` file and line (empty when
    all is well): compile errors as :class:`LuaSyntaxError`; reads of globals
    the server's sandbox does not provide and assignments to any global as
    :class:`LuaGlobalError`; and, for packages, modules that fail to import
    (:class:`LuaSyntaxError`, :class:`LuaLinkError`).  ``globals`` names
    extra globals the scripts may read, as a ``--@globals`` directive does.
    The same problem reached through several scripts is reported once.
    """
    if isinstance(globals, str):
        raise TypeError("check(globals=...) takes a list of names, not a str")
    extra = frozenset(globals)
    compiler = _Compiler()
    problems: dict[tuple[object, ...], Problem] = {}

    def failed(exc: LuaSyntaxError | LuaLinkError) -> None:
        problems.setdefault((exc.filename, exc.lineno, str(exc)), exc)

    for module in lua_modules_of(targets, failed):
        for function in lua_functions(module):
            try:
                linked = function.linked
            except LuaLinkError as exc:
                problems.setdefault((exc.filename, exc.lineno, str(exc)), exc)
                continue
            message = compiler.error(linked.script)
            if message is not None:
                error = compile_error(linked, message)
                problems.setdefault((error.filename, error.lineno, error.msg), error)
                continue
            for problem in _global_problems(function, linked, compiler.dump, extra):
                problems.setdefault((problem.filename, problem.lineno, problem.msg), problem)
    return sorted(problems.values(), key=_position)


def _position(problem: Problem) -> tuple[str, int]:
    filename = getattr(problem, "filename", None) or ""
    return filename, getattr(problem, "lineno", None) or 0


class _Compiler:
    """lupa's Lua 5.1: compile errors, and bytecode for the globals check."""

    def __init__(self) -> None:
        try:
            import lupa.lua51  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError(
                "luaimport.check() needs a Lua 5.1 compiler from lupa: pip install 'luaimport[check]'",
                name="lupa",
            ) from None
        runtime = lupa.lua51.LuaRuntime(encoding=None)
        self._compile: Callable[[bytes], Any] = runtime.eval(
            "function(s) local f, err = loadstring(s, '=user_script') "
            "if f == nil then return false, err end return true, string.dump(f) end"
        )

    def _run(self, text: str) -> tuple[bool, bytes]:
        ok, result = self._compile(_globals.lua_text(text).encode("utf-8"))
        return bool(ok), result

    def error(self, script: str) -> str | None:
        ok, result = self._run(script)
        return None if ok else result.decode("utf-8", "replace")

    def dump(self, text: str) -> bytes:
        ok, result = self._run(text)
        if not ok:  # the same tokens as a script that compiled: cannot happen
            raise AssertionError(f"the one-token-per-line text did not compile: {result!r}")
        return result


def _global_problems(
    function: LuaFunction, linked: Linked, dump: Callable[[str], bytes], extra: frozenset[str]
) -> list[LuaGlobalError]:
    problems = []
    declared = _Declarations(function)
    for finding in _globals.findings(linked.script, dump):
        origin = linked.line_map.lookup(finding.line)
        if origin is None:  # not a user line: the linker's own code reads only provided globals
            raise AssertionError(f"global {finding.name!r} at line {finding.line} of {linked.qualname}")
        allowed = _globals.PROVIDED | extra | declared.of(origin)
        if finding.write:
            message = (
                f"assignment to global {finding.name!r}: a script cannot create globals (nor, on Redis 7+ "
                "and Valkey, change them); make it local"
            )
        elif finding.name in allowed:
            continue
        elif finding.name in _globals.PROVIDERS:
            servers = ", ".join(_globals.PROVIDERS[finding.name])
            message = (
                f"read of global {finding.name!r}, which only {servers} provide; declare it with "
                f"'--@globals {finding.name}' to rely on them"
            )
        else:
            message = f"read of undefined global {finding.name!r}"
            candidates = {n for n in (*finding.visible, *allowed) if not n.startswith(("(", "_"))}
            close = difflib.get_close_matches(finding.name, sorted(candidates), n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        problems.append(
            LuaGlobalError(
                f"{message} (in {origin.function})",
                origin.filename,
                origin.lineno,
                origin.source_line,
                name=finding.name,
                write=finding.write,
                function=origin.function,
            )
        )
    return problems


class _Declarations:
    """The ``--@globals`` in force at a line: its module's, and its function's."""

    def __init__(self, function: LuaFunction) -> None:
        self._entry = function._target.unit
        self._resolve = function._resolver
        self._units: dict[str, Unit] = {self._entry.name: self._entry}

    def of(self, origin: Origin) -> frozenset[str]:
        unit = self._units.get(origin.source.name)
        if unit is None:
            unit = self._units[origin.source.name] = self._resolve(origin.source.name)
        if unit.script is not None:
            section = unit.script
        elif origin.function == f"{unit.name}.{PRELUDE}":
            section = unit.prelude
        else:
            section = unit.functions[origin.function.rpartition(".")[2]]
        return frozenset((*unit.globals, *section.globals))
