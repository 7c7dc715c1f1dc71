"""Offline syntax check: compile every linked script with a real Lua 5.1, no server.

Redis runs Lua 5.1, and lupa ships one (``lupa.lua51``), so a CI job or a
pre-commit hook can find compile errors before any server sees the scripts.
lupa is an optional extra: ``pip install 'luaimport[check]'``.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from ._errors import LuaLinkError, LuaSyntaxError
from ._importer import LuaModule, iter_modules, lua_functions
from ._protocol import compile_error


def check(*targets: types.ModuleType) -> list[SyntaxError | ImportError]:
    """Compile the scripts of Lua modules, or of every ``.lua`` module under packages.

    Returns the problems found, each at its ``.lua`` file and line (empty when
    all is well): compile errors as :class:`LuaSyntaxError`, and, for
    packages, modules that fail to import (:class:`LuaSyntaxError`,
    :class:`LuaLinkError`).  The same error reached through several scripts
    is reported once.
    """
    compile_lua = _lua_compiler()
    problems: dict[tuple[object, ...], SyntaxError | ImportError] = {}
    for module in _modules(targets, problems):
        for function in lua_functions(module):
            try:
                linked = function.linked
            except LuaLinkError as exc:
                problems.setdefault((exc.filename, exc.lineno, str(exc)), exc)
                continue
            message = compile_lua(linked.script)
            if message is not None:
                error = compile_error(linked, str(message))
                problems.setdefault((error.filename, error.lineno, error.msg), error)
    return list(problems.values())


def _lua_compiler() -> Any:
    try:
        import lupa.lua51  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "luaimport.check() needs a Lua 5.1 compiler from lupa: pip install 'luaimport[check]'",
            name="lupa",
        ) from None
    return lupa.lua51.LuaRuntime().eval(
        "function(s) local _, err = loadstring(s, '=user_script'); return err end"
    )


def _modules(
    targets: tuple[types.ModuleType, ...], problems: dict[tuple[object, ...], SyntaxError | ImportError]
) -> list[LuaModule]:
    modules: list[LuaModule] = []
    for target in targets:
        if isinstance(target, LuaModule):
            modules.append(target)
            continue
        for info in iter_modules(target):
            try:
                module = importlib.import_module(info.name)
            except (LuaSyntaxError, LuaLinkError) as exc:
                problems.setdefault((exc.filename, exc.lineno, str(exc)), exc)
            else:
                if isinstance(module, LuaModule):
                    modules.append(module)
    return modules
