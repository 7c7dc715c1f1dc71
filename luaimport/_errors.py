"""The exceptions luaimport raises.

Each one also subclasses the exception users already catch for that kind of
failure, so adopting luaimport never silently changes which ``except`` clause
runs: a script error is still a ``redis.exceptions.ResponseError``, a bad
``.lua`` file is still a ``SyntaxError`` or an ``ImportError``.
"""

from __future__ import annotations

from redis.exceptions import ResponseError

__all__ = ["LuaArgumentError", "LuaError", "LuaLinkError", "LuaSyntaxError"]


class LuaSyntaxError(SyntaxError):
    """A ``.lua`` source that cannot be read, lexed, sectioned or compiled.

    Carries ``filename``, ``lineno`` and ``text`` (the offending source line)
    like Python's own ``SyntaxError``, so tracebacks and IDEs show the line.
    """

    def __init__(self, msg: str, filename: str, lineno: int, text: str | None = None) -> None:
        super().__init__(msg, (filename, lineno, None, text))


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


for _cls in (LuaSyntaxError, LuaLinkError, LuaError, LuaArgumentError):
    _cls.__module__ = "luaimport"
