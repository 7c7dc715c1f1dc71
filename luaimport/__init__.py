"""Import Redis Lua scripts as Python modules; let them call each other.

``luaimport.install()`` once, then ``import pkg.mod`` finds ``pkg/mod.lua``.
Each ``--@function name`` section is a callable, ``mod.name(client, keys,
args)``; sections call each other with ``CALL.name(keys, argv)``, linked into
each script as plain local Lua functions.  Importing this package changes
nothing until :func:`install` is called.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

from . import _runtime
from ._check import check
from ._errors import (
    LuaArgumentError,
    LuaCrossSlotError,
    LuaError,
    LuaGlobalError,
    LuaLinkError,
    LuaNotLoadedError,
    LuaSyntaxError,
)
from ._importer import (
    LuaModule,
    LuaModuleInfo,
    install,
    installed,
    iter_modules,
    loads,
    lua_functions,
    lua_modules,
    lua_modules_of,
    uninstall,
)
from ._runtime import LuaFunction
from ._stubs import write_stubs

__all__ = [
    "LuaArgumentError",
    "LuaCrossSlotError",
    "LuaError",
    "LuaFunction",
    "LuaGlobalError",
    "LuaLinkError",
    "LuaModule",
    "LuaModuleInfo",
    "LuaNotLoadedError",
    "LuaSyntaxError",
    "bind",
    "check",
    "install",
    "installed",
    "iter_modules",
    "loads",
    "prune",
    "uninstall",
    "write_stubs",
]


def bind(client: Any, *targets: types.ModuleType | LuaFunction, backend: _runtime.Backend = "scripts") -> Any:
    """Load scripts on ``client`` in one round trip, before the first call needs them.

    ``targets`` are packages, Lua modules or single functions; a package
    stands for every Lua module under it (:func:`iter_modules`), imported
    here if it was not yet.  With no targets, every Lua module imported so
    far.  Returns ``{qualified name: sha}`` for what was loaded (awaitable
    with an asyncio client).  Calls load on demand anyway; binding up front
    moves that cost to start-up and reports compile errors there.

    ``backend="functions"`` deploys each module as a Redis Functions library
    (``FUNCTION LOAD REPLACE``; a function given deploys its whole module)
    and returns ``{qualified name: function name}``; from then on, calls of
    those modules on ``client`` and the pipelines made from it use FCALL.
    ``backend="scripts"`` (the default) makes them use EVALSHA again.
    """
    functions: list[LuaFunction] = []
    for target in targets or tuple(lua_modules()):
        if isinstance(target, LuaFunction):
            functions.append(target)
        else:
            for module in lua_modules_of([target]):
                functions.extend(lua_functions(module))
    return _runtime.bind(client, functions, backend)


def prune(client: Any, *, keep: Iterable[types.ModuleType | LuaFunction]) -> Any:
    """Delete luaimport's Functions libraries, except the current version of each of ``keep``'s modules.

    ``keep`` holds packages, Lua modules or functions (a function keeps its
    module).  Libraries luaimport did not make are never touched.  On a
    cluster, every primary is pruned.  Returns the names of the libraries
    deleted (awaitable with an asyncio client).
    """
    functions: list[LuaFunction] = []
    for target in keep:
        if isinstance(target, LuaFunction):
            functions.append(target)
        else:
            for module in lua_modules_of([target]):
                functions.extend(lua_functions(module))
    return _runtime.prune(client, functions)
