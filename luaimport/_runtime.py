"""Stage 5: Python callables over linked scripts, and the shells that drive the protocol.

A shell is the only code that touches a client: it sends what a protocol
generator yields and feeds back the reply (or throws the reply's error in).
The sync and async shells are the same dozen lines with and without
``await``; everything they might disagree on lives in ``_protocol``.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

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
        return _kind(client).call(client, self.linked, tail)

    def __repr__(self) -> str:
        return f"<Lua function {self.__qualname__} from {self.filename!r}>"


def bind(client: Any, functions: Sequence[LuaFunction]) -> Any:
    """Load the scripts of ``functions``; see :func:`luaimport.bind`."""
    unique: dict[str, Linked] = {}
    for function in functions:
        unique.setdefault(function.linked.qualname, function.linked)
    return _kind(client).bind(client, _protocol.load_all(list(unique.values())))


Send = Callable[..., Any]
Batch = Callable[[list[_protocol.Command]], Any]


def _drive_sync(send: Send, batch: Batch, protocol: _protocol.Protocol[Any]) -> Any:
    """Run ``protocol`` to its end: send what it yields, feed back replies, throw errors in."""
    try:
        step = next(protocol)
        while True:
            try:
                reply = batch(step) if type(step) is list else send(*step)
            except Exception as exc:  # the protocol decides what an error means
                step = protocol.throw(exc)
            else:
                step = protocol.send(reply)
    except StopIteration as done:
        return done.value


async def _drive_async(send: Send, batch: Batch, protocol: _protocol.Protocol[Any]) -> Any:
    """:func:`_drive_sync` with ``await``: ``send`` and ``batch`` return awaitables."""
    try:
        step = next(protocol)
        while True:
            try:
                reply = await (batch(step) if type(step) is list else send(*step))
            except Exception as exc:  # the protocol decides what an error means
                step = protocol.throw(exc)
            else:
                step = protocol.send(reply)
    except StopIteration as done:
        return done.value


def _pipelined(client: Any) -> Batch:
    """A batch in one round trip, through a non-transaction pipeline; errors come back as values."""

    def batch(commands: list[_protocol.Command]) -> Any:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    return batch


def _one_by_one_sync(send: Send) -> Batch:
    """A batch for transports that cannot pipeline (a cluster's per-node commands, a pipeline's own)."""

    def batch(commands: list[_protocol.Command]) -> list[Any]:
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(send(*command))
            except Exception as exc:
                replies.append(exc)
        return replies

    return batch


def _one_by_one_async(send: Send) -> Batch:
    async def batch(commands: list[_protocol.Command]) -> list[Any]:
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(await send(*command))
            except Exception as exc:
                replies.append(exc)
        return replies

    return batch


class _Kind:
    """How to talk to one type of client: which driver, and where each command goes.

    Chosen once per client type by duck typing, so redis-py, valkey-py and
    fakeredis clients of every flavour take the same paths.
    """

    def __init__(self, client: Any) -> None:
        kind = type(client)
        if not callable(getattr(kind, "execute_command", None)):
            raise TypeError(f"expected a redis-py style client with execute_command(), got {kind.__name__}")
        self.pipeline = callable(getattr(kind, "execute", None))
        self.cluster = hasattr(client, "nodes_manager")
        self.is_async = inspect.iscoroutinefunction(kind.execute if self.pipeline else kind.execute_command)
        self.drive = _drive_async if self.is_async else _drive_sync
        self.one_by_one = _one_by_one_async if self.is_async else _one_by_one_sync

    def call(self, client: Any, linked: Linked, tail: _protocol.Command) -> Any:
        if self.cluster:
            keys = tail[1 : 1 + tail[0]]
            _protocol.same_slot(linked.qualname, keys, _cluster_of(client).keyslot)
        if self.pipeline and not _watching(client):
            return _PipelineCalls.of(client, self).queue(linked, tail)
        protocol = _protocol.evalsha(linked, tail)
        if not self.cluster:
            return self.drive(client.execute_command, _pipelined(client), protocol)
        send = _ClusterRoute(client, keys)
        return self.drive(send, self.one_by_one(send), protocol)

    def bind(self, client: Any, protocol: _protocol.Protocol[dict[str, str]]) -> Any:
        if self.pipeline:
            raise TypeError("bind() takes a client, not a pipeline (calls on a pipeline load their scripts)")
        if not self.cluster:
            return self.drive(client.execute_command, _pipelined(client), protocol)
        nodes = client.get_primaries()
        if getattr(client, "read_from_replicas", False) or getattr(client, "load_balancing_strategy", None):
            nodes += client.get_replicas()
        send = functools.partial(client.execute_command, target_nodes=nodes)
        return self.drive(send, self.one_by_one(send), protocol)


_kinds: dict[type, _Kind] = {}


def _kind(client: Any) -> _Kind:
    kind = _kinds.get(type(client))
    if kind is None:
        kind = _kinds[type(client)] = _Kind(client)
    return kind


def _cluster_of(client: Any) -> Any:
    """The cluster client behind an asyncio cluster pipeline, or the client itself."""
    return getattr(client, "cluster_client", None) or getattr(client, "_client", client)


def _watching(pipe: Any) -> bool:
    """After WATCH and before MULTI a pipeline runs commands at once, like a client."""
    return bool(getattr(pipe, "watching", False)) and not getattr(pipe, "explicit_transaction", False)


class _ClusterRoute:
    """Send a call's commands on a cluster: EVALSHA where its keys live, its cache checks to that node.

    A keyed EVALSHA is routed by redis-py (so MOVED and ASK are followed);
    ``SCRIPT EXISTS`` and ``SCRIPT LOAD`` then go to the node that owns the
    slot, which is the node that answered.  A call without keys runs on one
    primary picked at random for the call, and its cache checks go there too,
    so healing a cache miss only ever loads where the miss happened.
    """

    __slots__ = ("client", "key", "node")

    def __init__(self, client: Any, keys: Sequence[Any]) -> None:
        self.client = client
        self.key = keys[0] if keys else None
        self.node: Any = None

    def __call__(self, *command: Any) -> Any:
        if self.key is not None:
            if command[0] == "EVALSHA":
                return self.client.execute_command(*command)
            return self.client.execute_command(*command, target_nodes=self.client.get_node_from_key(self.key))
        if self.node is None:
            primaries = self.client.get_primaries()
            if not primaries:  # an asyncio cluster client learns its nodes on first use
                return self._initialized(command)
            self.node = random.choice(primaries)
        return self.client.execute_command(*command, target_nodes=self.node)

    async def _initialized(self, command: _protocol.Command) -> Any:
        await self.client.initialize()
        return await self(*command)


class _PipelineCalls:
    """The luaimport calls queued on one pipeline, and the ``execute`` that loads and maps them.

    Installed on the pipeline instance the first time a call is queued:
    ``pipe.execute`` and ``pipe.reset`` are wrapped (the pipeline's own
    methods still do all the work), so ``pipe.execute()`` loads the missing
    scripts first and returns their errors located in the ``.lua`` files.
    """

    def __init__(self, pipe: Any, kind: _Kind) -> None:
        self.pipe = pipe
        self.kind = kind
        self.calls: list[tuple[int, Linked]] = []
        self.original_execute = pipe.execute
        self.original_reset = pipe.reset
        self.immediate = (
            getattr(pipe, "immediate_execute_command", None)
            or getattr(pipe, "parent_execute_command", None)
            or _cluster_of(pipe).execute_command
        )
        pipe.execute = self.execute
        pipe.reset = self.reset

    @classmethod
    def of(cls, pipe: Any, kind: _Kind) -> _PipelineCalls:
        installed = getattr(pipe.execute, "__self__", None)
        return installed if isinstance(installed, cls) else cls(pipe, kind)

    def queue(self, linked: Linked, tail: _protocol.Command) -> Any:
        position = len(self.pipe)
        queued = self.pipe.execute_command("EVALSHA", linked.sha, *tail)
        self.calls.append((position, linked))
        return queued

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        self.calls = []
        return self.original_reset(*args, **kwargs)

    def execute(self, raise_on_error: bool = True, **kwargs: Any) -> Any:
        calls = list(self.calls)  # the pipeline's own reset() clears them once it has run
        if not calls:
            return self.original_execute(raise_on_error, **kwargs)
        execute = functools.partial(self.original_execute, False, **kwargs)

        def send(*command: Any) -> Any:
            return execute() if command == _protocol.EXECUTE else self.immediate(*command)

        protocol = _protocol.pipeline(calls, raise_on_error)
        return self.kind.drive(send, self.kind.one_by_one(send), protocol)
