"""The exceptions luaimport raises.

Each one also subclasses the exception users already catch for that kind of
failure, so adopting luaimport never silently changes which ``except`` clause
runs: a script error is still a ``redis.exceptions.ResponseError``, a bad
``.lua`` file is still a ``SyntaxError`` or an ``ImportError``.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from redis.exceptions import NoScriptError, RedisClusterException, ResponseError

__all__ = [
    "LuaArgumentError",
    "LuaCrossSlotError",
    "LuaError",
    "LuaGlobalError",
    "LuaLinkError",
    "LuaNotLoadedError",
    "LuaSyntaxError",
]


class LuaSyntaxError(SyntaxError):
    """A ``.lua`` source that cannot be read, lexed, sectioned or compiled.

    Carries ``filename``, ``lineno`` and ``text`` (the offending source line)
    like Python's own ``SyntaxError``, so tracebacks and IDEs show the line.
    """

    def __init__(self, msg: str, filename: str, lineno: int, text: str | None = None) -> None:
        super().__init__(msg, (filename, lineno, None, text))


class LuaGlobalError(LuaSyntaxError):
    """A global a script reads that the server's sandbox lacks, or any global it assigns.

    Found offline by :func:`luaimport.check`, at the ``.lua`` line of the
    name; the server would fail there at run time.  ``name`` is the global,
    ``write`` says whether it is assigned, ``function`` is the Lua function
    whose code it is in.
    """

    def __init__(
        self, msg: str, filename: str, lineno: int, text: str | None, *, name: str, write: bool, function: str
    ) -> None:
        super().__init__(msg, filename, lineno, text)
        self.name = name
        self.write = write
        self.function = function


class LuaLinkError(ImportError):
    """A ``CALL`` reference that names no function, found while importing or linking.

    Subclasses ``ImportError`` because it is one: the module cannot be made
    whole.  ``filename`` and ``lineno`` locate the reference.
    """

    def __init__(self, msg: str, *, name: str, filename: str, lineno: int) -> None:
        super().__init__(f"{filename}:{lineno}: {msg}", name=name, path=filename)
        self.filename = filename
        self.lineno = lineno


class LuaError(ResponseError):
    """An error raised by a script while Redis ran it, located in the ``.lua`` source.

    ``server_message`` is the server's text untouched; ``code`` its first word
    (``ERR``, ``WRONGTYPE``...); ``filename``/``lineno``/``function`` say where
    in the user's files it happened (``None`` when the server gave no line).
    """

    def __init__(
        self,
        message: str,
        *,
        server_message: str,
        code: str,
        filename: str | None,
        lineno: int | None,
        function: str | None,
    ) -> None:
        super().__init__(message)
        self.server_message = server_message
        self.code = code
        self.filename = filename
        self.lineno = lineno
        self.function = function


class LuaArgumentError(TypeError):
    """Arguments that cannot be sent as KEYS or ARGV, caught before any network call."""


class LuaCrossSlotError(RedisClusterException):
    """Keys of one cluster call that hash to different slots, caught before anything is sent.

    A script runs on one node, so all its keys must live in one slot.
    Subclasses the ``RedisClusterException`` redis-py raises for the same
    mistake; ``slots`` lists each key with its slot.
    """

    def __init__(self, message: str, *, function: str, slots: list[tuple[object, int]]) -> None:
        super().__init__(message)
        self.function = function
        self.slots = slots


class LuaNotLoadedError(NoScriptError):
    """A pipelined call found its script missing from the server's cache when the pipeline ran.

    The scripts are loaded just before a pipeline executes, so this means a
    ``SCRIPT FLUSH``, restart or failover in between.  Nothing is retried: the
    pipeline's other commands have run, and replaying it could run them twice.
    """

    def __init__(self, message: str, *, function: str) -> None:
        super().__init__(message)
        self.function = function


for _cls in (
    LuaSyntaxError,
    LuaGlobalError,
    LuaLinkError,
    LuaError,
    LuaArgumentError,
    LuaCrossSlotError,
    LuaNotLoadedError,
):
    _cls.__module__ = "luaimport"


E = TypeVar("E", bound=Exception)
_natives: dict[tuple[type, type], Any] = {}


def native(cls: type[E], raised: type[Exception]) -> type[E]:
    """``cls``, made to subclass too the class the client raised (or raises) when that is not redis-py's.

    valkey-py raises its own parallel hierarchy; a :class:`LuaError` from a
    valkey-py call is then also a ``valkey.exceptions.ResponseError``, so
    handlers written for that client keep working.
    """
    if issubclass(raised, ResponseError) or issubclass(cls, raised):
        return cls
    made = _natives.get((cls, raised))
    if made is None:
        namespace = {"__module__": "luaimport", "__qualname__": cls.__qualname__, "__doc__": cls.__doc__}
        made = _natives.setdefault((cls, raised), type(cls.__name__, (cls, raised), namespace))
    return cast("type[E]", made)
