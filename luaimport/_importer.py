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
import pkgutil
import sys
import threading
import types
import zipfile
import zipimport
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib.machinery import ModuleSpec, PathFinder
from typing import Any, NamedTuple

from . import _linker, _runtime
from ._errors import LuaLinkError, LuaSyntaxError
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
    """The Lua modules imported so far, in import order (not those another thread is importing)."""
    return [m for m in list(sys.modules.values()) if isinstance(m, LuaModule) and not _initializing(m)]


def _initializing(module: types.ModuleType) -> bool:
    """Whether the import system is still executing ``module`` (it is in ``sys.modules`` meanwhile)."""
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


class LuaModuleInfo(NamedTuple):
    """A Lua module found by :func:`iter_modules`, not imported."""

    #: the dotted module name, e.g. ``'mypkg.sub.counters'``
    name: str
    #: its ``.lua`` file, as the module's ``__file__`` will be (inside a zip: ``archive.zip/pkg/mod.lua``)
    path: str


def iter_modules(package: types.ModuleType) -> Iterator[LuaModuleInfo]:
    """The Lua modules of a package at any depth, without importing them (``pkgutil`` cannot see them).

    Yields :class:`LuaModuleInfo` ``(name, path)`` tuples, depth first in
    name order, for what ``import`` would give as a Lua module: every
    ``.lua`` file under the package's ``__path__`` (all portions of a
    namespace package; directories and zip archives alike), through
    subpackages and namespace subdirectories.  The finder decides each
    name, so a ``.lua`` file shadowed by a ``.py`` module or a package of
    the same name is left out, as import leaves it out.  Subpackages'
    ``__init__`` modules are not run.  Raises :class:`TypeError` for
    anything but a package.
    """
    paths = getattr(package, "__path__", None)
    if paths is None:
        if isinstance(package, LuaModule):
            raise TypeError(f"{package.__name__!r} is a Lua module, not a package")
        raise TypeError(f"{package.__name__!r} is neither a Lua module nor a package")
    return _walk(package.__name__, list(paths), set())


def _walk(prefix: str, locations: list[str], seen: set[str]) -> Iterator[LuaModuleInfo]:
    candidates: set[str] = set()
    for location in locations:
        real = os.path.realpath(location)
        if real in seen:  # a symlink loop, or the same directory reached twice
            continue
        seen.add(real)
        for name, is_dir in _entries(location):
            if is_dir:
                leaf = name
            elif name.endswith(".lua"):
                leaf = name[:-4]
            else:
                continue
            if leaf.isidentifier() and leaf != "__pycache__":
                candidates.add(leaf)
    for leaf in sorted(candidates):
        fullname = f"{prefix}.{leaf}"
        # the rule LuaFinder.find_spec follows: Python's modules and packages first, then a .lua
        # file, then a namespace package; asked of each location's own finder, as PathFinder asks,
        # since PathFinder.find_spec needs a namespace package's parent imported
        python, portions = _python_spec(fullname, locations)
        if python is not None:
            if python.submodule_search_locations is not None:
                yield from _walk(fullname, list(python.submodule_search_locations), seen)
            continue
        for location in locations:
            found = _find_in_entry(location, leaf + ".lua")
            if found is not None:
                yield LuaModuleInfo(fullname, found[0])
                break
        else:
            if portions:
                yield from _walk(fullname, portions, seen)


def _python_spec(fullname: str, locations: list[str]) -> tuple[ModuleSpec | None, list[str]]:
    """What ``PathFinder`` finds for ``fullname``: a spec with a loader, else namespace portions."""
    portions: list[str] = []
    for location in locations:
        finder = pkgutil.get_importer(location)
        spec = finder.find_spec(fullname) if finder is not None and hasattr(finder, "find_spec") else None
        if spec is None:
            continue
        if spec.loader is not None:
            return spec, []
        portions.extend(spec.submodule_search_locations or ())
    return None, portions


def _entries(location: str) -> Iterator[tuple[str, bool]]:
    """``(name, is a directory)`` for what a package directory holds, on disk or inside a zip archive."""
    if os.path.isdir(location):
        with os.scandir(location) as found:
            yield from ((entry.name, entry.is_dir()) for entry in found)
        return
    importer = pkgutil.get_importer(location)
    if not isinstance(importer, zipimport.zipimporter):
        return
    inside = importer.prefix.replace(os.sep, "/")
    with zipfile.ZipFile(importer.archive) as archive:
        names = archive.namelist()
    # archives need not hold entries for their directories: a directory is any path's first part
    for name in names:
        if name.startswith(inside):
            first, slash, _ = name[len(inside) :].partition("/")
            if first:
                yield first, bool(slash)


def lua_modules_of(
    targets: Iterable[types.ModuleType], failed: Callable[[LuaSyntaxError | LuaLinkError], None] | None = None
) -> list[LuaModule]:
    """Lua modules themselves, and every Lua module of packages (:func:`iter_modules`), imported.

    Each module once, in order.  A module that fails to import raises, or,
    given ``failed``, is passed to it and left out.
    """
    modules: dict[str, LuaModule] = {}
    for target in targets:
        if isinstance(target, LuaModule):
            modules.setdefault(target.__name__, target)
            continue
        for info in iter_modules(target):
            try:
                module = importlib.import_module(info.name)
            except (LuaSyntaxError, LuaLinkError) as exc:
                if failed is None:
                    raise
                failed(exc)
                continue
            if isinstance(module, LuaModule):
                modules.setdefault(info.name, module)
    return list(modules.values())


def resolve_module(name: str) -> Unit:
    """A :data:`_linker.Resolver` over the import system: imports ``name`` if needed.

    A module still being imported goes through the import system too, which
    waits for another thread's import to finish (``sys.modules`` holds the
    module, not yet populated, from the start of that import), and hands a
    CALL cycle within one thread the module as it is, its unit already set.
    """
    module = sys.modules.get(name)
    if module is None or _initializing(module):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise
            hint = "" if installed() else " (luaimport.install() has not been called)"
            raise LookupError(f"no module named {name!r}{hint}") from None
        except RuntimeError as exc:
            # importlib's _DeadlockError: two threads each importing a module that CALLs the other's.
            # The import system then takes the module as it is (its unit is set: the thread
            # importing it waits in its CALL checks), and so does this.
            module = sys.modules.get(name)
            if type(exc).__name__ != "_DeadlockError" or module is None:
                raise
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
        with _ImportTransaction(module):
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
    them would leave something half-made in ``sys.modules``.  Only modules
    this thread executed for the failed import go: other threads import
    their own modules meanwhile, which must stay (one module object per name).
    """

    _local = threading.local()

    def __init__(self, module: types.ModuleType) -> None:
        self.module = module

    def __enter__(self) -> None:
        made: list[types.ModuleType] | None = getattr(self._local, "made", None)
        self.outermost = made is None
        if made is None:
            made = self._local.made = []
        if _UNIT not in self.module.__dict__:  # new, not a reload (a failed reload restores the module)
            made.append(self.module)

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        if not self.outermost:
            return
        made: list[types.ModuleType] = self._local.made
        self._local.made = None
        if exc is not None:
            for module in made:
                if sys.modules.get(module.__name__) is module:
                    del sys.modules[module.__name__]


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
    with _ImportTransaction(module):
        populate(module, source, module.__file__)
    return module
