"""Tracebacks that end at the ``.lua`` line, as Jinja2 does for templates.

A :class:`LuaError` gets one extra innermost frame whose code claims to live
at the ``.lua`` file and line, so every traceback printer, pdb and IDE shows
the Lua source line (through ``linecache``, where the importer registered the
module's lines).  The frames above it are left exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import CodeType
from typing import TypeVar

E = TypeVar("E", bound=BaseException)

_RAISE = "raise (__lua_error__)"


def _raising(code: CodeType, namespace: dict[str, object]) -> Iterator[None]:
    """Run the raise from a generator: once it is done its frame has no ``f_back``.

    The Lua frame's ``f_back`` is this generator's frame, so the error's
    traceback does not reach the frames that were running when it was made
    (which may hold the error, as a caller's list of results does: a cycle).
    """
    exec(code, namespace)
    yield


def with_lua_frame(exc: E, filename: str, lineno: int, function: str, line: str) -> E:
    """Return ``exc`` with a traceback of one frame at ``filename:lineno`` in ``function``.

    The raise statement copies the Lua line's indentation and is padded to its
    width, so Python's caret markers do not underline an arbitrary part of it.
    """
    stripped = line.strip()
    indent = line[: len(line) - len(line.lstrip())]
    statement = _RAISE[:-1] + " " * max(0, len(stripped) - len(_RAISE)) + ")"
    if indent and lineno > 1:
        source = "\n" * (lineno - 2) + "if 1:\n" + indent + statement
    else:
        source = "\n" * (lineno - 1) + statement
    code = compile(source, filename, "exec").replace(co_name=function)
    namespace = {"__lua_error__": exc, "__name__": function}
    del exc
    try:
        next(_raising(code, namespace))
    except BaseException as raised:
        traceback = raised.__traceback__
        assert traceback is not None
        while traceback.tb_next is not None:  # keep only the innermost entry: the Lua line
            traceback = traceback.tb_next
        return raised.with_traceback(traceback)  # type: ignore[return-value]
    finally:
        del namespace["__lua_error__"]
        traceback = None
    raise AssertionError("the generated raise statement did not raise")
