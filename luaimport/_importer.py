"""The import hook: finds ``.lua`` files and turns them into modules.

It only finds and loads: reading goes through ``_source``, structure through
``_sections``, reference checks through ``_linker``; it knows no Lua syntax.
Nothing happens at ``import luaimport``; :func:`install` adds one finder to
``sys.meta_path``, just before ``PathFinder``, and :func:`uninstall` removes
it.  The finder asks ``PathFinder`` first, so a ``.py`` module, a package or
an extension of the same name always wins; a ``.lua`` file wins over a
namespace-package directory, as a real module would.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import linecache
import os
import sys
import threading
import types
import zipimport
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec, PathFinder
from typing import Any

from . import _linker, _runtime
from ._runtime import LuaFunction, make_function
from ._sections import Unit, parse
from ._source import decode

_UNIT = "__lua_unit__"
_SCRIPT = "__lua_script__"
#: What a marker-less module, being its own script, shows of it.
_FORWARDED = frozenset({"script", "sha", "line_map", "library", "function_name"})


class LuaModule(types.ModuleType):
    """A module made from a ``.lua`` file: its functions are :class:`LuaFunction` attributes.

    A marker-less file is one script, and then the module itself is callable:
    ``mod(client, keys, args)``, with ``mod.script`` and ``mod.sha`` (and
    ``mod.library`` and ``mod.function_name`` for the Functions backend).
    """

    def __call__(
        self, client: Any, keys: Sequence[Any] | None = None, args: Sequence[Any] | None = None, **named: Any
    ) -> Any:
        return self._script()(client, keys, args, **named)

    def __getattr__(self, name: str) -> Any:
        if name in _FORWARDED and self.__dict__.get(_SCRIPT) is not None:
            return getattr(self.__dict__[_SCRIPT], name)
        raise AttributeError(f"Lua module {self.__name__!r} has no function {name!r}")

    def _script(self) -> LuaFunction:
        script: LuaFunction | None = self.__dict__.get(_SCRIPT)
        if script is None:
            functions = ", ".join(self.__dict__.get("__all__", ()))
            raise TypeError(
                f"Lua module {self.__name__!r} is not callable: it has --@function sections "
                f"({functions}); call one of them, e.g. {self.__name__}.NAME(client, keys, args)"
            )
        return script

    def __repr__(self) -> str:
        return f"<Lua module {self.__name__!r} from {self.__dict__.get('__file__')!r}>"


def lua_functions(module: types.ModuleType) -> list[LuaFunction]:
    """Every callable script of a Lua module (one for a marker-less file)."""
    unit: Unit | None = module.__dict__.get(_UNIT)
    if unit is None:
        raise TypeError(f"{module.__name__!r} is not a Lua module")
    if unit.script is not None:
        return [module.__dict__[_SCRIPT]]
    return [module.__dict__[name] for name in unit.functions]


def lua_modules() -> list[LuaModule]:
    """The Lua modules imported so far, in import order."""
    return [m for m in list(sys.modules.values()) if isinstance(m, LuaModule)]


def lua_module_names(package: types.ModuleType) -> list[str]:
    """Names of the ``.lua`` files under a package's directories (``pkgutil`` cannot see them)."""
    paths = getattr(package, "__path__", None)
    if paths is None:
        raise TypeError(f"{package.__name__!r} is neither a Lua module nor a package")
    names: list[str] = []
    for root in paths:
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d.isidentifier())
            prefix = os.path.relpath(directory, root).replace(os.sep, ".")
            base = package.__name__ if prefix == "." else f"{package.__name__}.{prefix}"
            names.extend(
                f"{base}.{f[:-4]}" for f in sorted(files) if f.endswith(".lua") and f[:-4].isidentifier()
            )
    return names


def resolve_module(name: str) -> Unit:
    """A :data:`_linker.Resolver` over the import system: imports ``name`` if needed."""
    module = sys.modules.get(name)
    if module is None:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise
            hint = "" if installed() else " (luaimport.install() has not been called)"
            raise LookupError(f"no module named {name!r}{hint}") from None
    unit: Unit | None = module.__dict__.get(_UNIT)
    if unit is None:
        raise LookupError(f"{name} is not a Lua module ({module.__dict__.get('__file__')})")
    return unit


def populate(module: types.ModuleType, data: bytes | str, filename: str) -> None:
    """Fill ``module`` from ``.lua`` source; on any error leave it as it was."""
    source = decode(data, module.__name__, filename)
    unit = parse(source)
    previous = module.__dict__.get(_UNIT)
    module.__dict__[_UNIT] = unit  # visible before CALLs are checked: mutual imports need it
    try:
        _linker.check(unit, resolve_module)
    except BaseException:
        if previous is None:
            del module.__dict__[_UNIT]
        else:
            module.__dict__[_UNIT] = previous
        raise
    # new functions replace old ones in place and only removed names go, so a thread calling
    # mod.f while another reloads mod finds the old function or the new one, never neither
    functions = {
        name: make_function(_linker.Target(unit, section), resolve_module)
        for name, section in unit.functions.items()
    }
    module.__doc__ = unit.doc
    if unit.script is not None:
        module.__dict__[_SCRIPT] = make_function(_linker.Target(unit, unit.script), resolve_module)
    else:
        module.__dict__.update(functions)
        module.__dict__.pop(_SCRIPT, None)
    module.__dict__["__all__"] = list(functions)
    if previous is not None:
        for name in set(previous.functions) - set(functions):
            module.__dict__.pop(name, None)
        _runtime.invalidate_links()
    lines = [line + "\n" for line in source.lines]
    linecache.cache[filename] = (len(source.text), None, lines, filename)


class LuaLoader(importlib.abc.Loader):
    """Loads one ``.lua`` file, from a directory or a zip archive."""

    def __init__(self, fullname: str, path: str, read: Callable[[str], bytes]) -> None:
        self.name = fullname
        self.path = path
        self._read = read

    def create_module(self, spec: ModuleSpec) -> LuaModule:
        return LuaModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        with _ImportTransaction():
            populate(module, self.get_data(self.path), self.path)

    def get_filename(self, fullname: str | None = None) -> str:
        return self.path

    def get_data(self, path: str) -> bytes:
        return self._read(path)

    def get_source(self, fullname: str) -> str:
        return decode(self.get_data(self.path), fullname, self.path).text

    def is_package(self, fullname: str) -> bool:
        return False

    def get_code(self, fullname: str) -> None:
        return None


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class _ImportTransaction:
    """Undo a failed import whole: Lua modules it imported along the way go too.

    Those modules may hold references into the module that failed, so keeping
    them would leave something half-made in ``sys.modules``.
    """

    _local = threading.local()

    def __enter__(self) -> None:
        self.outermost = not getattr(self._local, "active", False)
        if self.outermost:
            self._local.active = True
            self.before = set(sys.modules)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if not self.outermost:
            return
        self._local.active = False
        if exc is not None:
            for name in set(sys.modules) - self.before:
                if isinstance(sys.modules.get(name), LuaModule):
                    del sys.modules[name]


def _is_module_name(name: object) -> bool:
    """Whether every dotted part of ``name`` is a Python identifier: no path can be made of it."""
    return type(name) is str and all(part.isidentifier() for part in name.split("."))


def _module_name_problem(name: str) -> str | None:
    """What makes ``name`` no module name (for error messages), or None."""
    for part in name.split("."):
        if not part.isidentifier():
            what = "an empty part" if not part else f"the part {part!r}, which is not a Python identifier"
            return f"module name {name!r} has {what}; a module name is dotted identifiers, like 'pkg.mod'"
    return None


class LuaFinder(importlib.abc.MetaPathFinder):
    """Finds ``NAME.lua`` on ``sys.path`` or a package's ``__path__``.

    Only names made of Python identifiers are looked up: the last part becomes
    a file name, so a name holding ``/``, ``\\``, NUL, an empty part or a
    whole absolute path (``pkg./etc/x``) must never reach ``os.path.join``.
    Any other name is refused with ``None`` before the filesystem is touched,
    leaving it to the finders after this one, as a finder does for a name
    that is not its own.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: types.ModuleType | None = None
    ) -> ModuleSpec | None:
        if not _is_module_name(fullname):
            return None
        spec = PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            return spec
        leaf = fullname.rpartition(".")[2]
        for entry in sys.path if path is None else path:
            found = _find_in_entry(entry, leaf + ".lua")
            if found is not None:
                loader = LuaLoader(fullname, *found)
                return importlib.util.spec_from_file_location(fullname, found[0], loader=loader)
        return spec

    def invalidate_caches(self) -> None:
        """Nothing to clear: the finder keeps no cache of its own."""


def _find_in_entry(entry: str, filename: str) -> tuple[str, Callable[[str], bytes]] | None:
    directory = entry or os.getcwd()
    if os.path.isdir(directory):
        candidate = os.path.join(directory, filename)
        return (candidate, _read_file) if os.path.isfile(candidate) else None
    importer = sys.path_importer_cache.get(entry)
    if isinstance(importer, zipimport.zipimporter):
        candidate = os.path.join(importer.archive, importer.prefix, filename)
        try:
            importer.get_data(candidate)
        except OSError:
            return None
        return candidate, importer.get_data
    return None


_finder = LuaFinder()
_lock = threading.Lock()


def install() -> None:
    """Make ``.lua`` files importable.  Idempotent and thread-safe; call once at start-up."""
    with _lock:
        if _finder in sys.meta_path:
            return
        try:
            position = sys.meta_path.index(PathFinder)
        except ValueError:
            position = len(sys.meta_path)
        sys.meta_path.insert(position, _finder)


def uninstall() -> None:
    """Undo :func:`install`; modules already imported keep working."""
    with _lock:
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)


def installed() -> bool:
    return _finder in sys.meta_path


def loads(source: str | bytes, name: str, filename: str | None = None) -> LuaModule:
    """Build a Lua module from a string, under the same rules as a ``.lua`` file.

    The module is not put in ``sys.modules``; its ``CALL``\\ s may name file
    modules (imported as usual), and its lines appear in tracebacks under
    ``filename`` (default ``<luaimport NAME>``).  ``name`` must be dotted
    Python identifiers, as an imported module's is (it appears in error
    messages, tracebacks and ``CALL`` targets): anything else is a ``ValueError``.
    """
    if not isinstance(name, str):
        raise TypeError(f"luaimport.loads(): the module name must be a str, not {type(name).__name__}")
    problem = _module_name_problem(name)
    if problem is not None:
        raise ValueError(f"luaimport.loads(): {problem}")
    module = LuaModule(name)
    module.__file__ = filename or f"<luaimport {name}>"
    with _ImportTransaction():
        populate(module, source, module.__file__)
    return module
