"""Stage 5: Python callables over linked scripts, and the shells that drive the protocol.

A shell is the only code that touches a client: it sends what a protocol
generator yields and feeds back the reply (or throws the reply's error in).
The sync and async shells are the same dozen lines with and without
``await``; everything they might disagree on lives in ``_protocol``.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any

from redis.exceptions import ResponseError

from . import _protocol
from ._linker import LineMap, Linked, Resolver, Target, link

_generation = 0
_generation_lock = threading.Lock()


def invalidate_links() -> None:
    """Forget every linked script: a module was reloaded, so any script may have changed."""
    global _generation
    with _generation_lock:
        _generation += 1


class LuaFunction:
    """One ``--@function`` section (or a marker-less file) as a Python callable.

    ``fn(client, keys, args)`` runs the linked script with EVALSHA.  With a
    ``redis.asyncio`` client it returns an awaitable instead.  The script is
    linked on first use (or by :func:`luaimport.bind`), not at import.
    """

    def __init__(self, target: Target, resolver: Resolver) -> None:
        self.__name__ = target.section.name
        self.__qualname__ = target.qualname
        self.__module__ = target.unit.name
        self.__doc__ = target.section.doc if target.unit.script is None else target.unit.doc
        self._target = target
        self._resolver = resolver
        self._linked: Linked | None = None
        self._gen = -1

    @property
    def linked(self) -> Linked:
        linked = self._linked
        if linked is None or self._gen != _generation:
            gen = _generation
            linked = link(self._target, self._resolver)
            self._linked, self._gen = linked, gen
        return linked

    @property
    def script(self) -> str:
        """The self-contained Lua text sent to the server."""
        return self.linked.script

    @property
    def sha(self) -> str:
        """SHA1 of :attr:`script`: the same on every machine for the same sources."""
        return self.linked.sha

    @property
    def line_map(self) -> LineMap:
        return self.linked.line_map

    @property
    def filename(self) -> str:
        return self._target.unit.source.filename

    @property
    def lineno(self) -> int:
        return self._target.section.marker_line or 1

    def __call__(
        self, client: Any, keys: Sequence[Any] | None = None, args: Sequence[Any] | None = None
    ) -> Any:
        tail = _protocol.arguments(self.__qualname__, keys, args)
        return _shell(client)(client, _protocol.evalsha(self.linked, tail))

    def __repr__(self) -> str:
        return f"<Lua function {self.__qualname__} from {self.filename!r}>"


def bind(client: Any, functions: Sequence[LuaFunction]) -> Any:
    """Load the scripts of ``functions`` in one round trip; see :func:`luaimport.bind`."""
    unique: dict[str, Linked] = {}
    for function in functions:
        unique.setdefault(function.linked.qualname, function.linked)
    return _shell(client)(client, _protocol.load_all(list(unique.values())))


def _run_sync(client: Any, protocol: _protocol.Protocol[Any]) -> Any:
    execute = client.execute_command
    try:
        command = next(protocol)
        while True:
            try:
                reply = _send(client, execute, command)
            except ResponseError as exc:
                command = protocol.throw(exc)
            else:
                command = protocol.send(reply)
    except StopIteration as done:
        return done.value


async def _run_async(client: Any, protocol: _protocol.Protocol[Any]) -> Any:
    execute = client.execute_command
    try:
        command = next(protocol)
        while True:
            try:
                reply = await _send(client, execute, command)
            except ResponseError as exc:
                command = protocol.throw(exc)
            else:
                command = protocol.send(reply)
    except StopIteration as done:
        return done.value


def _send(client: Any, execute: Callable[..., Any], command: Any) -> Any:
    """One command, or a batch (a list) in one round trip; a batch's errors come back as values."""
    if type(command) is not list:
        return execute(*command)
    pipe = client.pipeline(transaction=False)
    for item in command:
        pipe.execute_command(*item)
    return pipe.execute(raise_on_error=False)


_shells: dict[type, Callable[[Any, _protocol.Protocol[Any]], Any]] = {}


def _shell(client: Any) -> Callable[[Any, _protocol.Protocol[Any]], Any]:
    kind = type(client)
    shell = _shells.get(kind)
    if shell is None:
        execute = getattr(kind, "execute_command", None)
        if execute is None:
            raise TypeError(f"expected a redis-py style client with execute_command(), got {kind.__name__}")
        shell = _run_async if inspect.iscoroutinefunction(execute) else _run_sync
        _shells[kind] = shell
    return shell
