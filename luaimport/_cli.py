"""``python -m luaimport`` and the ``luaimport`` console script.

Subcommands inspect, check, load and debug the Lua modules of a package.
Conventions, after ruff's: human output by default and ``--json`` for
machines; ``file:line: message`` lines for problems; exit status 0 when all
is well, 1 when problems were found, 2 when the command could not run (a bad
URL, an unknown module, an unreachable server), with a one-line error and no
traceback.  Like ``python -m``, the current directory is put on ``sys.path``
first, and the import hook is installed.  Only the standard library and
redis-py are needed; ``rich`` (``pip install 'luaimport[cli]'``) draws the
progress bars when it is there.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn
from urllib.parse import urlsplit

import redis

from . import _runtime
from ._check import check
from ._errors import LuaGlobalError, LuaLinkError, LuaSyntaxError
from ._importer import _UNIT, LuaModule, install, lua_functions, lua_modules_of, resolve_module
from ._linker import Linked, Origin, resolve
from ._protocol import map_error
from ._runtime import LuaFunction
from ._sections import Unit
from ._stubs import write_stubs

OK, PROBLEMS, CANNOT_RUN = 0, 1, 2


class CommandError(Exception):
    """A reason the command cannot run, shown as one line: exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    options = parser.parse_args(argv)
    if options.command is None:
        parser.print_help()
        return CANNOT_RUN
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as python -m does
    install()
    try:
        status: int = options.run(options)
        return status
    except CommandError as exc:
        _fail(str(exc))
    except (LuaSyntaxError, LuaLinkError) as exc:
        _fail(_problem_line(exc))
    except redis.exceptions.RedisError as exc:
        _fail(f"{type(exc).__name__}: {exc}")
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return OK
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> NoReturn:
    print(f"luaimport: error: {message}", file=sys.stderr)
    raise SystemExit(CANNOT_RUN)


# --- the parser --------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="luaimport",
        description="Inspect, check, load and debug the Lua modules of Python packages.",
        epilog="Exit status: 0 all is well, 1 problems found, 2 the command could not run.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, run: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=name, run=run)
        return sub

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="print JSON for machines")

    def url_option(sub: argparse.ArgumentParser, required: bool) -> None:
        sub.add_argument(
            "--url",
            required=required,
            help="the server: redis://[user:password@]host:port/db, rediss://..., unix:///path/to.sock",
        )

    sub = command("list", _list, "List Lua modules and their functions: declared keys and args, flags, SHA.")
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module")
    json_option(sub)

    sub = command("show", _show, "Print the linked script of a function exactly as it is sent to Redis.")
    sub.add_argument("function", metavar="PKG.MOD:FN", help="a function (or a marker-less module: PKG.MOD)")
    sub.add_argument("--map", action="store_true", help="show where each line of the script comes from")
    json_option(sub)

    sub = command("check", _check, "Check Lua modules offline: format, links, Lua 5.1 syntax and globals.")
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module")
    sub.add_argument(
        "--globals",
        action="append",
        default=[],
        metavar="NAME[,NAME...]",
        help="more globals the scripts may read (as --@globals does); repeatable",
    )
    json_option(sub)

    sub = command("load", _load, "SCRIPT LOAD every function's script: on a cluster, on every primary.")
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module")
    url_option(sub, required=True)
    _progress_option(sub)
    json_option(sub)

    sub = command(
        "deploy",
        _deploy,
        "Deploy Lua modules as Redis Functions libraries (FUNCTION LOAD REPLACE), on every primary.",
    )
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module")
    url_option(sub, required=True)
    json_option(sub)

    sub = command(
        "prune",
        _prune,
        "Delete luaimport's Functions libraries but the current versions of the modules given.",
    )
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module to keep")
    url_option(sub, required=True)
    json_option(sub)

    sub = command("stubs", _stubs, "Write a .pyi stub beside each .lua module, for type checkers.")
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module")
    json_option(sub)

    sub = command("graph", _graph, "Print the CALL graph of Lua modules as Mermaid or Graphviz DOT.")
    sub.add_argument("targets", nargs="+", metavar="PKG", help="a package or Lua module")
    sub.add_argument(
        "--format", choices=("mermaid", "dot", "json"), default="mermaid", help="default: mermaid"
    )

    sub = command("which", _which, "Name the function behind a script SHA (as SLOWLOG or MONITOR show it).")
    sub.add_argument("sha", metavar="SHA", help="a SHA1, or the start of one (6 characters or more)")
    sub.add_argument(
        "targets",
        nargs="*",
        metavar="PKG",
        help="where to look (default: every Lua module importable from here, as sys.path finds them)",
    )
    url_option(sub, required=False)
    json_option(sub)

    sub = command(
        "debug",
        _debug,
        "Run a function's script under Redis's Lua debugger (redis-cli --ldb), with its line map.",
    )
    sub.add_argument("function", metavar="PKG.MOD:FN", help="a function (or a marker-less module: PKG.MOD)")
    url_option(sub, required=True)
    sub.add_argument("--keys", nargs="*", default=[], metavar="KEY", help="KEYS")
    sub.add_argument("--args", nargs="*", default=[], metavar="ARG", help="ARGV")
    sub.add_argument("--redis-cli", default=None, metavar="PATH", help="default: redis-cli on PATH")
    sub.add_argument(
        "--sync",
        action="store_true",
        help="keep the script's writes (--ldb-sync-mode; blocks the server); default: rolled back",
    )
    return parser


def _progress_option(sub: argparse.ArgumentParser) -> None:
    group = sub.add_mutually_exclusive_group()
    group.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show a progress bar"
    )
    group.add_argument("--no-progress", dest="progress", action="store_false", help="never show one")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("luaimport")
    except Exception:
        return "(not installed)"


# --- finding modules and functions -------------------------------------------


def _import(name: str) -> types.ModuleType:
    """Import ``name``; a module that does not exist is a one-line error."""
    if not name or not all(part.isidentifier() for part in name.split(".")):
        raise CommandError(f"{name!r} is not a module name (dotted identifiers, like pkg.mod)")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise CommandError(f"no module named {exc.name!r} (searched from {os.getcwd()})") from None
        raise


def _targets(names: Sequence[str]) -> list[types.ModuleType]:
    """The modules named: each a Lua module or a package."""
    targets = []
    for name in names:
        module = _import(name)
        if not isinstance(module, LuaModule) and getattr(module, "__path__", None) is None:
            raise CommandError(f"{name} is neither a Lua module nor a package ({module.__file__})")
        targets.append(module)
    return targets


def _lua_modules(
    targets: Sequence[types.ModuleType], problems: list[BaseException] | None = None
) -> list[LuaModule]:
    """The Lua modules of ``targets`` (packages expanded), each once, in order.

    A module that fails to import raises, or with ``problems`` is added there.
    """
    return lua_modules_of(targets, None if problems is None else problems.append)


def _function(spec: str) -> LuaFunction:
    """``pkg.mod:fn``, or ``pkg.mod`` for a marker-less module."""
    module_name, _, name = spec.partition(":")
    module = _import(module_name)
    if not isinstance(module, LuaModule):
        raise CommandError(f"{module_name} is not a Lua module ({module.__file__})")
    functions = {f.__name__: f for f in lua_functions(module)}
    unit: Unit = module.__dict__[_UNIT]
    if not name:
        if unit.script is not None:
            return lua_functions(module)[0]
        raise CommandError(
            f"{module_name} has functions ({', '.join(functions)}): name one, as {module_name}:NAME"
        )
    if unit.script is not None:
        raise CommandError(
            f"{module_name} is a marker-less module, a single script: name it alone, {module_name}"
        )
    if name not in functions:
        raise CommandError(
            f"{module_name} has no function {name!r} (functions: {', '.join(functions) or 'none'})"
        )
    return functions[name]


def _path(filename: str) -> str:
    """A file name as ruff shows it: relative to the current directory when inside it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:
        return filename
    return filename if relative.startswith("..") else relative


def _message(problem: BaseException) -> str:
    """A problem's message, without the ``file:line`` in front that some carry in their text."""
    filename = getattr(problem, "filename", None)
    message = problem.msg if isinstance(problem, SyntaxError) else str(problem)
    if filename and message.startswith(f"{filename}:"):  # LuaLinkError, LuaError: 'file:line[ in fn]: ...'
        message = message.split(": ", 1)[1]
    return message


def _problem_line(problem: BaseException) -> str:
    """``file:line: message``, as ruff prints a problem."""
    filename = getattr(problem, "filename", None)
    if filename:
        return f"{_path(filename)}:{getattr(problem, 'lineno', None)}: {_message(problem)}"
    return _message(problem)


def _problem_json(problem: BaseException) -> dict[str, Any]:
    if isinstance(problem, LuaGlobalError):
        kind = "global"
    elif isinstance(problem, LuaLinkError):
        kind = "link"
    elif isinstance(problem, SyntaxError):
        kind = "syntax"
    else:
        kind = "server"  # what a server said while loading: a LuaError, a refused command
    entry: dict[str, Any] = {
        "kind": kind,
        "file": getattr(problem, "filename", None),
        "line": getattr(problem, "lineno", None),
        "message": _message(problem),
    }
    if isinstance(problem, SyntaxError):
        entry["text"] = problem.text
    if isinstance(problem, LuaGlobalError):
        entry.update(name=problem.name, write=problem.write, function=problem.function)
    return entry


def _report(problems: Sequence[BaseException], as_json: bool) -> int:
    """Problems that stopped a command: JSON on stdout, or ``file:line: message`` lines on stderr."""
    if as_json:
        _emit_json({"problems": [_problem_json(problem) for problem in problems]})
    else:
        for problem in problems:
            print(_problem_line(problem), file=sys.stderr)
    return PROBLEMS


def _emit_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- list, show --------------------------------------------------------------


def _list(options: argparse.Namespace) -> int:
    modules = _lua_modules(_targets(options.targets))
    data = [_describe_module(module) for module in modules]
    if options.json:
        _emit_json(data)
        return OK
    for entry in data:
        print(f"{entry['module']}  {_path(entry['file'])}")
        names = [f["name"] if f["qualname"] != entry["module"] else "(script)" for f in entry["functions"]]
        width = max(map(len, names), default=0)
        for name, function in zip(names, entry["functions"], strict=True):
            details = []
            for what in ("keys", "args"):
                if function[what] is not None:
                    details.append(f"{what}: {' '.join(function[what]) or '(none)'}")
            if function["flags"] is not None:
                details.append(f"flags: {','.join(function['flags']) or '(bare #!lua)'}")
            print(f"  {name:<{width}}  {function['sha']}  {'  '.join(details)}".rstrip())
    return OK


def _describe_module(module: LuaModule) -> dict[str, Any]:
    unit: Unit = module.__dict__[_UNIT]
    functions = []
    for function in lua_functions(module):
        section = function._target.section
        functions.append(
            {
                "name": function.__name__,
                "qualname": function.__qualname__,
                "line": function.lineno,
                "keys": _written(section.keys),
                "args": _written(section.args),
                "flags": list(function.flags) if function.flags is not None else None,
                "readonly": function.readonly,
                "sha": function.sha,
                "doc": function.__doc__ if unit.script is None else unit.doc,
            }
        )
    return {"module": module.__name__, "file": unit.source.filename, "functions": functions}


def _written(params: Any) -> list[str] | None:
    """Declared names as written in the directive (``name?``, ``name...``); ``None`` if undeclared."""
    return None if params is None else params.written()


def _show(options: argparse.Namespace) -> int:
    function = _function(options.function)
    linked = function.linked
    if options.json:
        _emit_json(
            {
                "function": linked.qualname,
                "sha": linked.sha,
                "flags": list(linked.flags) if linked.flags is not None else None,
                "script": linked.script,
                "lines": [
                    {"line": n, "text": text, **_origin_json(linked.line_map.lookup(n))}
                    for n, text in enumerate(_lines(linked), 1)
                ],
            }
        )
        return OK
    if not options.map:
        sys.stdout.write(linked.script)
        return OK
    rows = []
    for n, text in enumerate(_lines(linked), 1):
        origin = linked.line_map.lookup(n)
        where = (
            "(luaimport)"
            if origin is None or origin.generated
            else f"{_path(origin.filename)}:{origin.lineno}"
        )
        rows.append((n, where, text))
    width = max(len(where) for _, where, _ in rows)
    for n, where, text in rows:
        print(f"{n:>4}  {where:<{width}}  {text}".rstrip())
    return OK


def _lines(linked: Linked) -> list[str]:
    return linked.script[:-1].split("\n") if linked.script.endswith("\n") else linked.script.split("\n")


def _origin_json(origin: Origin | None) -> dict[str, Any]:
    if origin is None or origin.generated:
        return {"generated": True, "function": origin.function if origin else None}
    return {
        "generated": False,
        "file": origin.filename,
        "source_line": origin.lineno,
        "function": origin.function,
    }


# --- check, stubs ------------------------------------------------------------


def _check(options: argparse.Namespace) -> int:
    globals_ = [name for given in options.globals for name in given.replace(",", " ").split()]
    problems: list[SyntaxError | ImportError] = []
    targets = []
    for name in options.targets:
        try:
            targets.extend(_targets([name]))
        except (LuaSyntaxError, LuaLinkError) as exc:  # a Lua module named itself failed to import
            problems.append(exc)
    try:
        problems.extend(check(*targets, globals=globals_))
    except ImportError as exc:
        if exc.name == "lupa":
            raise CommandError(str(exc)) from None
        raise
    if options.json:
        _emit_json([_problem_json(problem) for problem in problems])
    else:
        for problem in problems:
            print(_problem_line(problem))
        if problems:
            print(f"Found {len(problems)} problem{'s' if len(problems) != 1 else ''}.")
        else:
            print("All checks passed!")
    return PROBLEMS if problems else OK


def _stubs(options: argparse.Namespace) -> int:
    try:
        written = write_stubs(*_targets(options.targets))
    except OSError as exc:
        raise CommandError(str(exc)) from None
    if options.json:
        _emit_json(written)
    else:
        for path in written:
            print(_path(path))
    return OK


# --- graph -------------------------------------------------------------------


def _graph(options: argparse.Namespace) -> int:
    modules = _lua_modules(_targets(options.targets))
    nodes: dict[str, Unit] = {}  # qualified name -> its module
    edges: list[tuple[str, str]] = []
    for module in modules:
        unit: Unit = module.__dict__[_UNIT]
        owners = (
            [(f"{unit.name}.<prelude>", unit.prelude)] if unit.script is None and unit.prelude.calls else []
        )
        owners += [(f.__qualname__, f._target.section) for f in lua_functions(module)]
        for owner, section in owners:
            nodes.setdefault(owner, unit)
            for ref in section.calls:
                target = resolve(unit, ref, resolve_module)
                nodes.setdefault(target.qualname, target.unit)
                if (owner, target.qualname) not in edges:
                    edges.append((owner, target.qualname))
    by_module: dict[str, list[str]] = {}
    for name, unit in nodes.items():
        by_module.setdefault(unit.name, []).append(name)
    if options.format == "json":
        _emit_json(
            {
                "nodes": [{"id": name, "module": unit.name} for name, unit in nodes.items()],
                "edges": [list(edge) for edge in edges],
            }
        )
    elif options.format == "dot":
        print("digraph calls {")
        print("  rankdir=LR;")
        print('  node [shape=box, fontname="monospace"];')
        for i, (module_name, names) in enumerate(by_module.items()):
            print(f"  subgraph cluster_{i} {{")
            print(f"    label={_dot(module_name)};")
            for name in names:
                print(f"    {_dot(name)} [label={_dot(_short(name, module_name))}];")
            print("  }")
        for caller, callee in edges:
            print(f"  {_dot(caller)} -> {_dot(callee)};")
        print("}")
    else:
        ids = {name: f"f{i}" for i, name in enumerate(nodes)}
        print("flowchart LR")
        for i, (module_name, names) in enumerate(by_module.items()):
            print(f'  subgraph m{i} ["{_mermaid(module_name)}"]')
            for name in names:
                print(f'    {ids[name]}["{_mermaid(_short(name, module_name))}"]')
            print("  end")
        for caller, callee in edges:
            print(f"  {ids[caller]} --> {ids[callee]}")
    return OK


def _short(name: str, module_name: str) -> str:
    if name == module_name:
        return "(script)"
    return name[len(module_name) + 1 :] if name.startswith(module_name + ".") else name


def _dot(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mermaid(text: str) -> str:
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


# --- servers -----------------------------------------------------------------


def _shown(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else "***@"
    return parts._replace(netloc=user + netloc).geturl()


@contextlib.contextmanager
def _connect(url: str) -> Iterator[tuple[Any, list[tuple[str, Any]]]]:
    """A client for ``url`` and its primaries as ``(name, client)``: a cluster's, or the one server."""
    try:
        client = redis.Redis.from_url(url)
    except ValueError as exc:
        raise CommandError(f"bad URL {_shown(url)!r}: {exc}") from None
    try:
        try:
            cluster = client.info("cluster").get("cluster_enabled") == 1
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
            raise CommandError(f"cannot reach {_shown(url)}: {exc}") from None
        except redis.exceptions.AuthenticationError as exc:
            raise CommandError(f"cannot log in to {_shown(url)}: {exc}") from None
        if not cluster:
            yield client, [(_shown(url), client)]
            return
        try:
            rc: Any = redis.cluster.RedisCluster.from_url(url)
        except redis.exceptions.RedisError as exc:
            raise CommandError(f"cannot reach the cluster at {_shown(url)}: {exc}") from None
        try:
            yield rc, [(node.name, rc.get_redis_connection(node)) for node in rc.get_primaries()]
        finally:
            rc.close()
    finally:
        client.close()


class _Progress:
    """A progress bar on stderr: rich's when it is installed, a plain line of text otherwise."""

    def __init__(self, description: str, total: int, show: bool | None) -> None:
        self.show = sys.stderr.isatty() if show is None else show
        self.description = description
        self.total = total
        self.done = 0
        self._rich: Any = None
        self._task: Any = None
        if not self.show:
            return
        try:
            from rich.progress import Progress
        except ImportError:
            return
        self._rich = Progress(transient=False, console=_rich_console())
        self._task = self._rich.add_task(description, total=total)
        self._rich.start()

    def advance(self, n: int) -> None:
        self.done += n
        if not self.show:
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done)
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        end = "\n" if self.done >= self.total else ""
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.description} [{bar}] {self.done}/{self.total}{end}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()


def _rich_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, force_terminal=True if not sys.stderr.isatty() else None)


_BATCH = 100


def _load(options: argparse.Namespace) -> int:
    problems: list[BaseException] = []
    modules = _lua_modules(_targets(options.targets), problems)
    scripts: dict[str, Linked] = {}
    for module in modules:
        for function in lua_functions(module):
            try:
                scripts.setdefault(function.linked.qualname, function.linked)
            except LuaLinkError as exc:
                problems.append(exc)
    if problems:
        return _report(problems, options.json)
    linked = list(scripts.values())
    errors: dict[tuple[object, ...], BaseException] = {}
    with _connect(options.url) as (_, nodes):
        progress = _Progress("Loading scripts", len(linked) * len(nodes), options.progress)
        try:
            for _name, node in nodes:
                for start in range(0, len(linked), _BATCH):
                    batch = linked[start : start + _BATCH]
                    pipe = node.pipeline(transaction=False)
                    for item in batch:
                        pipe.script_load(item.script)
                    for item, reply in zip(batch, pipe.execute(raise_on_error=False), strict=True):
                        if isinstance(reply, Exception):
                            error = map_error(item, reply)
                            key = (
                                getattr(error, "filename", None),
                                getattr(error, "lineno", None),
                                str(error),
                            )
                            errors.setdefault(key, error)
                    progress.advance(len(batch))
        finally:
            progress.close()
    if errors:
        return _report(list(errors.values()), options.json)
    if options.json:
        _emit_json(
            {"nodes": [name for name, _ in nodes], "scripts": {item.qualname: item.sha for item in linked}}
        )
    else:
        where = f"{len(nodes)} primaries" if len(nodes) > 1 else nodes[0][0]
        print(f"Loaded {len(linked)} script{'s' if len(linked) != 1 else ''} on {where}.")
    return OK


# --- deploy and prune: the Functions backend -----------------------------------


def _deploy(options: argparse.Namespace) -> int:
    functions = [f for module in _lua_modules(_targets(options.targets)) for f in lua_functions(module)]
    with _connect(options.url) as (client, nodes):
        deployed: dict[str, str] = _runtime.bind(client, functions, "functions")
    libraries = sorted({function.library.name for function in functions})
    if options.json:
        _emit_json({"nodes": [name for name, _ in nodes], "libraries": libraries, "functions": deployed})
    else:
        where = f"{len(nodes)} primaries" if len(nodes) > 1 else nodes[0][0]
        print(f"Deployed {len(libraries)} librar{'ies' if len(libraries) != 1 else 'y'} on {where}:")
        for library in libraries:
            print(f"  {library}")
    return OK


def _prune(options: argparse.Namespace) -> int:
    functions = [f for module in _lua_modules(_targets(options.targets)) for f in lua_functions(module)]
    with _connect(options.url) as (client, nodes):
        deleted: list[str] = _runtime.prune(client, functions)
    if options.json:
        _emit_json({"nodes": [name for name, _ in nodes], "deleted": deleted})
    else:
        print(
            f"Deleted {len(deleted)} librar{'ies' if len(deleted) != 1 else 'y'}" + (":" if deleted else ".")
        )
        for library in deleted:
            print(f"  {library}")
    return OK


# --- which -------------------------------------------------------------------


def _which(options: argparse.Namespace) -> int:
    sha = options.sha.lower()
    if len(sha) < 6 or len(sha) > 40 or any(c not in "0123456789abcdef" for c in sha):
        raise CommandError(f"{options.sha!r} is not a SHA1 (40 hex digits) or the start of one (6 or more)")
    modules = _lua_modules(_targets(options.targets)) if options.targets else _every_lua_module()
    matches = []
    for module in modules:
        for function in lua_functions(module):
            try:
                if function.sha.startswith(sha):
                    matches.append(function)
            except LuaLinkError:
                continue
    loaded: dict[str, bool] = {}
    if options.url:
        full = matches[0].sha if len({f.sha for f in matches}) == 1 else sha
        if len(full) != 40:
            raise CommandError("--url needs the whole SHA (or a start that names one function)")
        with _connect(options.url) as (_, nodes):
            for name, node in nodes:
                loaded[name] = bool(node.script_exists(full)[0])
    if options.json:
        _emit_json(
            {
                "sha": options.sha,
                "functions": [
                    {"function": f.__qualname__, "sha": f.sha, "file": f.filename, "line": f.lineno}
                    for f in matches
                ],
                **({"loaded": loaded} if options.url else {}),
            }
        )
    else:
        for function in matches:
            print(f"{function.sha}  {function.__qualname__}  {_path(function.filename)}:{function.lineno}")
        if not matches:
            where = " ".join(options.targets) if options.targets else "any Lua module importable from here"
            print(f"No function of {where} has a script with SHA {options.sha}.", file=sys.stderr)
        for name, there in loaded.items():
            print(f"{'loaded' if there else 'not loaded'} on {name}")
    return OK if matches else PROBLEMS


def _every_lua_module() -> list[LuaModule]:
    """Every ``.lua`` module under the directories on ``sys.path``.

    Zip archives, and packages that only an import hook finds (as editable
    installs may be), are not searched: name those packages.
    """
    names: dict[str, None] = {}
    for entry in sys.path:
        root = entry or os.getcwd()
        if not os.path.isdir(root):
            continue
        for directory, subdirs, files in os.walk(root):
            relative = os.path.relpath(directory, root)
            prefix = "" if relative == "." else relative.replace(os.sep, ".") + "."
            subdirs[:] = sorted(d for d in subdirs if d.isidentifier() and d != "__pycache__")
            for file in sorted(files):
                if file.endswith(".lua") and file[:-4].isidentifier():
                    names.setdefault(prefix + file[:-4], None)
    modules = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except (ImportError, SyntaxError):
            continue  # not importable as that name, or a broken module: it has no SHA
        if isinstance(module, LuaModule) and module.__name__ == name:
            modules.append(module)
    return modules


# --- debug -------------------------------------------------------------------


def _debug(options: argparse.Namespace) -> int:
    function = _function(options.function)
    linked = function.linked
    cli = options.redis_cli or shutil.which("redis-cli")
    if cli is None or not os.access(cli, os.X_OK):
        raise CommandError(
            "redis-cli not found"
            + (f" at {options.redis_cli}" if options.redis_cli else " on PATH")
            + " (it comes with Redis: Debian's redis-tools, Homebrew's redis)"
        )
    target = _cli_target(options.url)
    print(f"Debugging {linked.qualname} (SHA {linked.sha}). Script lines come from:")
    for first, last, where in _line_ranges(linked):
        span = f"{first}" if first == last else f"{first}-{last}"
        print(f"  {span:>9}  {where}")
    sys.stdout.flush()
    with tempfile.TemporaryDirectory(prefix="luaimport-debug-") as tmp:
        path = os.path.join(tmp, f"{linked.qualname}.lua")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(linked.script)
        command = [
            cli,
            *target,
            "--ldb-sync-mode" if options.sync else "--ldb",
            "--eval",
            path,
            *options.keys,
        ]
        if options.args:
            command += [",", *options.args]
        try:
            return subprocess.run(command).returncode
        except OSError as exc:
            raise CommandError(f"cannot run {cli}: {exc}") from None


def _cli_target(url: str) -> list[str]:
    """redis-cli's options for ``url`` (it reads redis:// URLs, not unix:// ones)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        out = ["-s", parts.path]
        query = dict(item.partition("=")[::2] for item in parts.query.split("&") if item)
        if query.get("db"):
            out += ["-n", query["db"]]
        if parts.password:
            out += ["--user", parts.username or "default", "--pass", parts.password]
        return out
    if parts.scheme in ("redis", "rediss"):
        return ["-u", url]
    raise CommandError(f"bad URL {_shown(url)!r}: expected redis://, rediss:// or unix://")


def _line_ranges(linked: Linked) -> list[tuple[int, int, str]]:
    """Runs of script lines that come from consecutive source lines, and where they come from."""
    runs: list[list[Any]] = []  # [first script line, last script line, origin of the first, last source line]
    for n in range(1, len(_lines(linked)) + 1):
        origin = linked.line_map.lookup(n)
        generated = origin is None or origin.generated
        if runs:
            first: Origin | None = runs[-1][2]
            if first is None or first.generated:
                follows = generated  # generated lines, one run however many
            else:
                follows = (
                    origin is not None
                    and not generated
                    and (first.filename, first.function) == (origin.filename, origin.function)
                    and origin.lineno == runs[-1][3] + 1
                )
            if follows:
                runs[-1][1], runs[-1][3] = n, origin.lineno if origin else 0
                continue
        runs.append([n, n, origin, origin.lineno if origin else 0])
    out = []
    for first_line, last_line, origin, last_source in runs:
        if origin is None or origin.generated:
            where = "(luaimport)"
        else:
            lines = f"{origin.lineno}" if last_source == origin.lineno else f"{origin.lineno}-{last_source}"
            where = f"{_path(origin.filename)}:{lines}  {origin.function}"
        out.append((first_line, last_line, where))
    return out
