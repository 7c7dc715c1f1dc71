"""Stage 5: Python callables over linked scripts, and the shells that drive the protocol.

A shell is the only code that touches a client: it sends what a protocol
generator yields and feeds back the reply (or throws the reply's error in).
The sync and async shells are the same dozen lines with and without
``await``; everything they might disagree on lives in ``_protocol``.
"""

from __future__ import annotations

import abc
import asyncio
import functools
import inspect
import random
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from redis.exceptions import RedisClusterException

from . import _library, _protocol
from ._library import Library
from ._linker import LineMap, Linked, Resolver, Target, link
from ._params import Declared
from ._protocol import arguments as _arguments

_generation = 0
_generation_lock = threading.Lock()


def invalidate_links() -> None:
    """Forget every linked script: a module was reloaded, so any script may have changed."""
    global _generation
    with _generation_lock:
        _generation += 1


Backend = Literal["scripts", "functions"]
#: The modules whose calls use FCALL, by what a client shares with its pipelines (its
#: connection pool, or its cluster's nodes manager): recorded by bind(..., backend="functions").
_functions_on: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()
_functions_lock = threading.Lock()
#: Whether any module was ever bound with backend="functions": until then a call looks nothing up.
_functions_used = False
#: Libraries built, by (id of their module's parsed unit, generation); the library holds the unit.
_libraries: weakref.WeakValueDictionary[tuple[int, int], Library] = weakref.WeakValueDictionary()


def _library_of(target: Target, resolver: Resolver, generation: int) -> Library:
    key = (id(target.unit), generation)
    library = _libraries.get(key)
    if library is None:
        library = _libraries.setdefault(key, _library.build(target.unit, resolver))
    return library


def _use_backend(shared: Any, modules: set[str], backend: Backend) -> None:
    """Record which backend calls of ``modules`` use on the clients sharing ``shared``."""
    global _functions_used
    with _functions_lock:
        _functions_used = _functions_used or backend == "functions"
        before = _functions_on.get(shared, frozenset())
        after = before | modules if backend == "functions" else before - modules
        if after:
            _functions_on[shared] = after
        else:
            _functions_on.pop(shared, None)


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
        self._library: Library | None = None
        self._library_gen = -1

    @property
    def linked(self) -> Linked:
        linked = self._linked
        if linked is None or self._gen != _generation:
            gen = _generation
            linked = link(self._target, self._resolver)
            self._linked, self._gen = linked, gen
        return linked

    @property
    def library(self) -> Library:
        """Its module as one Redis Functions library, the current version: what Functions deploys."""
        library = self._library
        if library is None or self._library_gen != _generation:
            gen = _generation
            library = _library_of(self._target, self._resolver, gen)
            self._library, self._library_gen = library, gen
        return library

    @property
    def function_name(self) -> str:
        """Its name on the server in the Functions backend: ``<library>__<function>``, called with FCALL."""
        function = self.library.functions[self.__qualname__].function
        assert function is not None
        return function

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
    def flags(self) -> tuple[str, ...] | None:
        """The script flags of its ``#!lua`` line (``--@readonly``, ``--@flags``); ``None``: no such line."""
        return self._target.section.flags

    @property
    def readonly(self) -> bool:
        """Declared ``--@readonly``: called with EVALSHA_RO, so replicas may serve it."""
        return self._target.section.readonly

    @property
    def filename(self) -> str:
        return self._target.unit.source.filename

    @property
    def lineno(self) -> int:
        return self._target.section.marker_line or 1

    def __call__(
        self, client: Any, keys: Sequence[Any] | None = None, args: Sequence[Any] | None = None
    ) -> Any:
        return self._send(client, _arguments(self.__qualname__, keys, args))

    def _send(self, client: Any, tail: _protocol.Command) -> Any:
        linked = self._linked
        if linked is None or self._gen != _generation:
            linked = self.linked
        kind = _kinds.get(type(client)) or _kind(client)
        if _functions_used and self.__module__ in _functions_on.get(kind.shared(client), ()):
            linked = self.library.functions[self.__qualname__]  # bound with backend="functions": FCALL
        return kind.call(client, linked, tail)

    def __repr__(self) -> str:
        return f"<Lua function {self.__qualname__} from {self.filename!r}>"


class _DeclaredFunction(LuaFunction):
    """A function with ``--@keys`` or ``--@args``: also callable by name, and counted.

    A subclass, so functions without declarations keep the plain call path.
    """

    def __init__(self, target: Target, resolver: Resolver) -> None:
        super().__init__(target, resolver)
        self._declared = Declared(target.qualname, target.section.keys, target.section.args)
        self.__doc__ = self._declared.doc(target.section.name, self.__doc__)

    @property
    def __signature__(self) -> inspect.Signature:
        return self._declared.signature()

    def __call__(
        self,
        client: Any,
        keys: Sequence[Any] | None = None,
        args: Sequence[Any] | None = None,
        **named: Any,
    ) -> Any:
        return self._send(client, self._declared.tail(keys, args, named))


def make_function(target: Target, resolver: Resolver) -> LuaFunction:
    """The callable for ``target``: a declared function binds names, a plain one takes lists."""
    section = target.section
    declared = section.keys is not None or section.args is not None
    return (_DeclaredFunction if declared else LuaFunction)(target, resolver)


def bind(client: Any, functions: Sequence[LuaFunction], backend: Backend = "scripts") -> Any:
    """Load the scripts of ``functions``, or deploy their modules' libraries; see :func:`luaimport.bind`.

    Then calls of those modules on ``client`` and the pipelines made from it
    use ``backend``, recorded once the loads succeeded.
    """
    kind = _kind(client)
    modules = {function.__module__ for function in functions}
    if backend == "functions":
        libraries: dict[str, Library] = {}
        for function in functions:
            libraries.setdefault(function.library.name, function.library)
        protocol = _protocol.deploy(list(libraries.values()))
    elif backend == "scripts":
        unique: dict[str, Linked] = {}
        for function in functions:
            unique.setdefault(function.linked.qualname, function.linked)
        protocol = _protocol.load_all(list(unique.values()))
    else:
        raise ValueError(f"bind(): backend must be 'scripts' or 'functions', not {backend!r}")
    if backend == "functions" or _functions_used:
        shared = kind.shared(client)
        protocol = _protocol.then(protocol, lambda: _use_backend(shared, modules, backend))
    return kind.bind(client, protocol)


def prune(client: Any, keep: Sequence[LuaFunction]) -> Any:
    """Delete luaimport's libraries but the current ones of ``keep``'s modules (:func:`luaimport.prune`)."""
    return _kind(client).prune(client, _protocol.prune({function.library.name for function in keep}))


Send = Callable[..., Any]
Batch = Callable[[list[_protocol.Command]], Any]


def _drive_sync(send: Send, batch: Batch, protocol: _protocol.Protocol[Any]) -> Any:
    """Run ``protocol`` to its end: send what it yields, feed back replies, throw errors in."""
    try:
        step = next(protocol)
        while True:
            try:
                reply = batch(step) if type(step) is list else send(*step)
            except BaseException as exc:  # the protocol decides what an error (or a cancel) means
                step = protocol.throw(exc)
            else:
                try:
                    step = protocol.send(reply)
                finally:
                    del reply  # replies may hold errors whose tracebacks hold this frame
    except StopIteration as done:
        return done.value


async def _drive_async(send: Send, batch: Batch, protocol: _protocol.Protocol[Any]) -> Any:
    """:func:`_drive_sync` with ``await``: ``send`` and ``batch`` return awaitables."""
    try:
        step = next(protocol)
        while True:
            try:
                reply = await (batch(step) if type(step) is list else send(*step))
            except BaseException as exc:  # the protocol decides what an error (or a cancel) means
                step = protocol.throw(exc)
            else:
                try:
                    step = protocol.send(reply)
                finally:
                    del reply  # replies may hold errors whose tracebacks hold this frame
    except StopIteration as done:
        return done.value


def _evalsha_sync(kind: _Kind, client: Any, send: Send, linked: Linked, tail: _protocol.Command) -> Any:
    """A call: EVALSHA at once; only when it fails does the protocol (``recover``) take over."""
    command = _protocol.evalsha(linked, tail)
    try:
        return send(*command)
    except Exception as exc:
        failure = exc
    try:
        return _drive_sync(send, kind.batch(client, send), _protocol.recover(linked, command, failure))
    finally:
        del failure  # a traceback holds this frame: holding the error too would make a cycle


async def _evalsha_async(
    kind: _Kind, client: Any, send: Send, linked: Linked, tail: _protocol.Command
) -> Any:
    """:func:`_evalsha_sync` with ``await``."""
    command = _protocol.evalsha(linked, tail)
    try:
        return await send(*command)
    except Exception as exc:
        failure = exc
    try:
        return await _drive_async(send, kind.batch(client, send), _protocol.recover(linked, command, failure))
    finally:
        del failure


def _pipelined(client: Any) -> Batch:
    """A batch in one round trip, through a non-transaction pipeline; errors come back as values."""

    def batch(commands: list[_protocol.Command]) -> Any:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return pipe.execute(raise_on_error=False)

    return batch


def _one_by_one_sync(send: Send) -> Batch:
    """A batch for transports that cannot pipeline (a cluster's heal or prune, a pipeline's own commands)."""

    def batch(commands: list[_protocol.Command]) -> list[Any]:
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(send(*command))
            except Exception as exc:
                replies.append(exc)
        try:
            return replies
        finally:
            del replies  # the errors' tracebacks hold this frame: no cycle through it

    return batch


def _one_by_one_async(send: Send) -> Batch:
    async def batch(commands: list[_protocol.Command]) -> list[Any]:
        replies: list[Any] = []
        for command in commands:
            try:
                replies.append(await send(*command))
            except Exception as exc:
                replies.append(exc)
        try:
            return replies
        finally:
            del replies

    return batch


class _Spread:
    """A batch spread over a cluster: each command on every node it must reach, one pipeline per node.

    The nodes are every primary, and the replicas too when the client reads
    from them (:func:`_with_replicas`).  ``nodes`` lists each node with its
    commands in batch order; :meth:`fold` turns the nodes' replies, in that
    order, back into one reply per command, so the protocol still sees one
    batch and knows nothing of nodes.
    """

    __slots__ = ("nodes", "positions", "size")

    def __init__(self, client: Any, primaries: list[Any], commands: list[_protocol.Command]) -> None:
        by_name: dict[str, tuple[Any, list[int]]] = {}
        for position, command in enumerate(commands):
            for node in _with_replicas(client, primaries, command):
                by_name.setdefault(node.name, (node, []))[1].append(position)
        self.size = len(commands)
        self.nodes = [(node, [commands[p] for p in positions]) for node, positions in by_name.values()]
        #: the position in the batch of each command sent, node after node
        self.positions = [p for _, positions in by_name.values() for p in positions]

    def fold(self, replies: Sequence[Any]) -> list[Any]:
        """One reply per command: the first error a node gave it, else the first node's reply.

        An error wins because a load that failed anywhere failed: the protocol
        raises it, located in the ``.lua`` file when the script did not compile.
        """
        folded: dict[int, Any] = {}
        # the errors dropped here would keep their tracebacks, and through them the pipelines' frames
        for position, reply in zip(self.positions, _protocol.detached(list(replies)), strict=True):
            if position not in folded or (
                isinstance(reply, Exception) and not isinstance(folded[position], Exception)
            ):
                folded[position] = reply
        return [folded[position] for position in range(self.size)]


def _everywhere_sync(client: Any) -> Batch:
    """A batch on every node of a sync cluster client: one pipeline per node, node after node.

    Each node's pipeline goes through that node's own client, not through
    redis-py's cluster pipeline: when a node's connection fails between the
    write and the reads, that pipeline (sync only) sends the node's commands
    again one by one without their target, to the primaries, and reports
    success, so a replica would be left without the scripts and no error.
    Here the node's error is raised.  Only loads go through this batch, so
    that a node's client resends its pipeline after a connection error (its
    own ``Retry``) is harmless.  A node's failure is shown to the cluster
    client too, so that it learns of a failover as if it had sent the batch.
    """
    node_client = getattr(client, "get_redis_connection", None) or client.get_valkey_connection

    def batch(commands: list[_protocol.Command]) -> list[Any]:
        spread = _Spread(client, client.get_primaries(), commands)
        replies: list[Any] = []
        for node, queued in spread.nodes:
            try:
                replies.extend(_pipelined(node_client(node))(queued))
            except Exception:
                # the cluster client never saw this failure: a PING of its own refreshes its slot map (a
                # failover) and raises its own error; if every node answers, the node's error stands
                _ClusterEverywhere(client, client.execute_command)("PING")
                raise
        return spread.fold(replies)

    return batch


def _everywhere_async(client: Any) -> Batch:
    """:func:`_everywhere_sync` for an asyncio cluster client: the nodes' pipelines run concurrently.

    They go as one redis-py cluster pipeline holding each command once per
    node, with that node as its target: it writes to every node, then
    gathers the replies, and (unlike the sync one) never resends a command
    that failed on a node.  But when it cannot reach a node at all, it
    retries with the targets forgotten and fails with ``Too many targets for
    command`` and the script's whole text.  The batch then sends a PING to
    every node, which raises the unreachable node's own error (a
    ``ConnectionError``); if every node answers, the pipeline runs once more.

    redis-py 5 and valkey-py run a cluster pipeline once per
    ``cluster_error_retry_attempts``, so never when it is 0: such a client
    gets each node's commands one by one, the nodes still concurrently.
    """

    async def pipelined(commands: list[_protocol.Command]) -> list[Any]:
        if not client.get_primaries():  # an asyncio cluster client learns its nodes on first use
            await client.initialize()
        spread = _Spread(client, client.get_primaries(), commands)
        if getattr(client, "cluster_error_retry_attempts", 1) < 1:
            sent = await asyncio.gather(
                *(
                    _one_by_one_async(functools.partial(client.execute_command, target_nodes=node))(queued)
                    for node, queued in spread.nodes
                )
            )
            return spread.fold([reply for replies in sent for reply in replies])
        pipe = client.pipeline()
        for node, queued in spread.nodes:
            for command in queued:
                pipe.execute_command(*command, target_nodes=node)
        return spread.fold(await pipe.execute(raise_on_error=False))

    async def batch(commands: list[_protocol.Command]) -> list[Any]:
        try:
            return await pipelined(commands)
        except Exception:  # not the error to report (see above): ask the nodes, outside this handler
            pass
        await _ClusterEverywhere(client, client.execute_command)("PING")
        return await pipelined(commands)

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
        self.cluster = hasattr(_cluster_of(client), "nodes_manager")
        self.is_async = inspect.iscoroutinefunction(kind.execute if self.pipeline else kind.execute_command)
        exceptions = sys.modules.get(kind.__module__.partition(".")[0] + ".exceptions")
        #: the client library's own cluster exception (valkey-py has its own hierarchy)
        self.cluster_error: type[Exception] = getattr(
            exceptions, "ValkeyClusterException", RedisClusterException
        )
        self.drive: Callable[[Send, Batch, _protocol.Protocol[Any]], Any] = (
            _drive_async if self.is_async else _drive_sync
        )
        self.evalsha: Callable[[_Kind, Any, Send, Linked, _protocol.Command], Any] = (
            _evalsha_async if self.is_async else _evalsha_sync
        )
        self.one_by_one: Callable[[Send], Batch] = _one_by_one_async if self.is_async else _one_by_one_sync
        #: ``everywhere(cluster)``: a batch of loads sent to every node of a cluster, one pipeline per node
        self.everywhere: Callable[[Any], Batch] = _everywhere_async if self.is_async else _everywhere_sync
        #: ``call(client, linked, tail)`` runs a call; plain clients (nearly every call) take the short way
        self.call: Callable[[Any, Linked, _protocol.Command], Any] = (
            self._call_routed if self.cluster else self._call_queued if self.pipeline else self._call_direct
        )

    def _call_direct(self, client: Any, linked: Linked, tail: _protocol.Command) -> Any:
        return self.evalsha(self, client, client.execute_command, linked, tail)

    def _call_queued(self, pipe: Any, linked: Linked, tail: _protocol.Command) -> Any:
        if _watching(pipe):  # a watching pipeline runs the call at once, like its client
            return self._call_direct(pipe, linked, tail)
        return _PipelineCalls.queue(pipe, self, linked, tail)

    def _call_routed(self, client: Any, linked: Linked, tail: _protocol.Command) -> Any:
        cluster = _cluster_of(client)
        keys = tail[1 : 1 + tail[0]]
        _protocol.same_slot(linked.qualname, keys, cluster.keyslot, self.cluster_error)
        if self.pipeline and not _watching(client):
            return _PipelineCalls.queue(client, self, linked, tail)
        # a watching cluster pipeline runs the call at once, as the cluster client it wraps would
        execute = _immediate(client, self) if self.pipeline else client.execute_command
        send = _KeyedCall(cluster, execute, keys[0], self.is_async) if keys else _OnePrimary(cluster, execute)
        return self.evalsha(self, client, send, linked, tail)

    def shared(self, client: Any) -> Any:
        """What ``client`` shares with the pipelines made from it: the key of its record of backends.

        A cluster's nodes manager (the cluster client, where the manager cannot
        be referred to weakly), else the connection pool.
        """
        if self.cluster:
            cluster = _cluster_of(client)
            manager = getattr(cluster, "nodes_manager", None)
            return manager if hasattr(type(manager), "__weakref__") else cluster
        return getattr(client, "connection_pool", client)

    def batch(self, client: Any, send: Send) -> Batch:
        """How ``send``'s client runs a batch: one pipelined round trip where it can."""
        if self.cluster or self.pipeline:
            return self.one_by_one(send)
        return _pipelined(client)

    def bind(self, client: Any, protocol: _protocol.Protocol[dict[str, str]]) -> Any:
        """Run a protocol of loads: its batches in one round trip, on a cluster one per node."""
        if self.pipeline:
            raise TypeError("bind() takes a client, not a pipeline (calls on a pipeline load their scripts)")
        if not self.cluster:
            return self.drive(client.execute_command, _pipelined(client), protocol)
        return self.drive(
            _ClusterEverywhere(client, client.execute_command), self.everywhere(client), protocol
        )

    def prune(self, client: Any, protocol: _protocol.Protocol[list[str]]) -> Any:
        if self.pipeline:
            raise TypeError("prune() takes a client, not a pipeline")
        send = _Nodes(client, self)
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
    """After WATCH and before MULTI a pipeline runs commands at once, like a client.

    redis-py's cluster pipelines keep that state on their execution strategy.
    """
    watching = getattr(pipe, "watching", None)
    if watching is None:
        state = getattr(pipe, "_execution_strategy", None)
        watching = getattr(state, "_watching", False)
        return bool(watching) and not getattr(state, "_explicit_transaction", False)
    return bool(watching) and not getattr(pipe, "explicit_transaction", False)


class _ClusterTransport(abc.ABC):
    """Commands run by ``execute`` on ``client``'s nodes; an asyncio client learns its nodes on first use."""

    __slots__ = ("client", "execute")

    def __init__(self, client: Any, execute: Send) -> None:
        self.client = client
        self.execute = execute

    def __call__(self, *command: Any) -> Any:
        primaries = self.client.get_primaries()
        if not primaries:
            return self._initialized(command)
        return self.send(primaries, command)

    @abc.abstractmethod
    def send(self, primaries: list[Any], command: _protocol.Command) -> Any:
        """Send ``command`` to the nodes this transport stands for, given the cluster's primaries."""

    async def _initialized(self, command: _protocol.Command) -> Any:
        await self.client.initialize()
        return await self(*command)


class _ClusterEverywhere(_ClusterTransport):
    """Every primary, and the replicas too when the client may read from them (bind, a pipeline's preload)."""

    __slots__ = ()

    def send(self, primaries: list[Any], command: _protocol.Command) -> Any:
        return self.execute(*command, target_nodes=_with_replicas(self.client, primaries, command))


def _with_replicas(client: Any, nodes: list[Any], command: _protocol.Command) -> list[Any]:
    """``nodes``, and the replicas too when ``client`` may send read-only calls there.

    Never for FUNCTION commands: replicas refuse them, and get the primary's libraries by replication.
    """
    if command[0] == "FUNCTION":
        return nodes
    if getattr(client, "read_from_replicas", False) or getattr(client, "load_balancing_strategy", None):
        return [*nodes, *client.get_replicas()]
    return nodes


#: The commands that run a script or a function: routed by their keys, like the call itself.
_RUNS = frozenset({"EVALSHA", "EVALSHA_RO", "EVAL", "EVAL_RO", "FCALL", "FCALL_RO"})
#: Those whose keys redis-py's cluster clients do not parse but ask a node for (``COMMAND GETKEYS``, once
#: or twice per call: a round trip each): luaimport routes these by slot itself (:class:`_Routing`).
_ASKS_FOR_KEYS = frozenset({"EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"})
#: The step of :func:`_attempts` that brings an asyncio cluster client's slot map up to date.
_INITIALIZE = "<initialize>"


class _Routing:
    """How one type of cluster client routes a keyed command, and retries it: redis-py's rules, read once.

    redis-py routes a command whose keys it knows to ``nodes_manager.get_node_from_slot(slot,
    read_from_replicas and <a read>, load_balancing_strategy if <a read> else None)``, a read being a
    command of its ``READ_COMMANDS`` (``FCALL_RO`` only from redis-py 7.1).  redis-py 5 and valkey-py
    have no load balancing strategies, and their ``get_node_from_slot`` takes no third argument.
    A command sent with ``target_nodes`` is not retried (``retry_attempts = 0 if
    target_nodes_specified``), so :func:`_attempts` retries it as redis-py's loop would: on
    ``ERRORS_ALLOW_RETRY``, up to ``retry.get_retries()`` times (``cluster_error_retry_attempts`` in
    redis-py 5 and valkey-py).
    """

    __slots__ = ("balancing", "budget", "initialize_failed", "read_commands", "retry_errors")

    def __init__(self, cluster: Any) -> None:
        kind = type(cluster)
        self.read_commands = _read_commands(kind)
        self.balancing = hasattr(cluster, "load_balancing_strategy")
        self.budget = hasattr(cluster, "cluster_error_retry_attempts")
        self.retry_errors: tuple[type[BaseException], ...] = kind.ERRORS_ALLOW_RETRY
        initialize = getattr(kind, "initialize", None)  # asyncio clients; redis-py 8 names the failed node
        self.initialize_failed = initialize is not None and (
            "last_failed_node_name" in inspect.signature(initialize).parameters
        )

    def node(self, cluster: Any, slot: int, command: str) -> Any:
        """The node redis-py would send ``command`` to, for a key in ``slot``, now."""
        read = command in self.read_commands
        if self.balancing:
            return cluster.nodes_manager.get_node_from_slot(
                slot, cluster.read_from_replicas and read, cluster.load_balancing_strategy if read else None
            )
        return cluster.nodes_manager.get_node_from_slot(slot, cluster.read_from_replicas and read)

    def retries(self, cluster: Any) -> int:
        return int(cluster.cluster_error_retry_attempts if self.budget else cluster.retry.get_retries())

    def initialize(self, cluster: Any, failed: str | None) -> Any:
        if self.initialize_failed:
            return cluster.initialize(last_failed_node_name=failed)
        return cluster.initialize()


def _read_commands(kind: type) -> frozenset[str]:
    """The ``READ_COMMANDS`` of the module that defines a cluster client class (redis-py's or valkey-py's)."""
    for cls in kind.__mro__:
        found = getattr(sys.modules.get(cls.__module__), "READ_COMMANDS", None)
        if found is not None:
            return frozenset(found)
    return frozenset()


_routings: dict[type, _Routing] = {}

#: the hash slots of every cluster
_SLOTS = 16384


def _routing(cluster: Any) -> _Routing:
    routing = _routings.get(type(cluster))
    if routing is None:
        routing = _routings[type(cluster)] = _Routing(cluster)
    return routing


def _attempts(cluster: Any, is_async: bool, key: Any, command: _protocol.Command) -> _protocol.Protocol[Any]:
    """redis-py's retry loop for a keyed command, around the node :class:`_Routing` picks for each attempt.

    What happens within an attempt is redis-py's own ``execute_command``, given ``target_nodes``:
    MOVED and ASK followed, TRYAGAIN waited for, the slot map refreshed (or, asyncio, the client
    closed) after a connection error.  Between attempts this does what redis-py's loop does,
    step for step, for each client: retry only its ``ERRORS_ALLOW_RETRY``, as many times as its
    budget allows, routing each attempt again from the refreshed map; a sync client replaces its
    default node after a failure if an attempt went there, an asyncio one first initialises again
    if a failure closed it (``_initialize``), then replaces its default node if the attempt that
    failed went there.  So a call is sent exactly as often as redis-py would send it, never more.
    Yields ``(ON, node, *command)`` and ``(INITIALIZE, failed node name)``.
    """
    routing = _routing(cluster)
    retries = routing.retries(cluster)
    slot = cluster.keyslot(key)
    previous = None  # the node of the last attempt that got one
    went_to_default = False
    failed = None
    attempt = 0
    while True:
        if is_async and getattr(cluster, "_initialize", False):
            yield (_INITIALIZE, failed)
            failed = None
            if previous is not None and previous == cluster.get_default_node():
                cluster.replace_default_node()
        try:
            node = previous = routing.node(cluster, slot, command[0])
            went_to_default = went_to_default or node == cluster.get_default_node()
            return (yield (_protocol.ON, node, *command))
        except Exception as exc:
            if attempt >= retries or type(exc) not in routing.retry_errors:
                raise
            failed = getattr(exc, "last_failed_node_name", None)
        if went_to_default and not is_async:
            cluster.replace_default_node()
        attempt += 1


def _no_batch(commands: list[_protocol.Command]) -> Any:
    raise AssertionError("_attempts sends one command at a time")


class _KeyedCall(_ClusterTransport):
    """A call with keys: its EVALSHA is routed by slot, following MOVED and ASK.

    redis-py routes EVALSHA and EVAL itself; the other commands that run a
    call (:data:`_ASKS_FOR_KEYS`) are routed here, as redis-py would route
    them, retried as redis-py would retry them (:func:`_attempts`), without
    the ``COMMAND GETKEYS`` redis-py sends to learn their keys.

    Which node answered is not known, so a heal's ``SCRIPT LOAD`` goes to
    every primary (and the slot's owner, which redis-py 7.1's asyncio client
    can leave out of its primaries, and the replicas when read-only calls may
    go there), and its ``EVAL`` where the keys live: the miss heals wherever
    the call landed, even on the importing node of a migrating slot.
    """

    __slots__ = ("is_async", "key")

    def __init__(self, client: Any, execute: Send, key: Any, is_async: bool) -> None:
        super().__init__(client, execute)
        self.key = key
        self.is_async = is_async

    def __call__(self, *command: Any) -> Any:
        if command[0] in _ASKS_FOR_KEYS:
            drive = _drive_async if self.is_async else _drive_sync
            return drive(self._step, _no_batch, _attempts(self.client, self.is_async, self.key, command))
        if command[0] in _RUNS:
            return self.execute(*command)
        return super().__call__(*command)

    def _step(self, *step: Any) -> Any:
        """Run a step of :func:`_attempts`: a command on the node it names, or the client's initialisation."""
        if step[0] == _INITIALIZE:
            return _routing(self.client).initialize(self.client, step[1])
        return self.execute(*step[2:], target_nodes=step[1])

    def send(self, primaries: list[Any], command: _protocol.Command) -> Any:
        owner = self.client.get_node_from_key(self.key)
        nodes = primaries if owner in primaries else [*primaries, owner]
        return self.execute(*command, target_nodes=_with_replicas(self.client, nodes, command))


class _Nodes:
    """Where a protocol that addresses nodes one by one (prune) sends.

    ``NODES`` lists every primary of a cluster (a single server is ``[None]``);
    ``(ON, node, *command)`` runs the command on that node.
    """

    __slots__ = ("client", "kind")

    def __init__(self, client: Any, kind: _Kind) -> None:
        self.client = client
        self.kind = kind

    def __call__(self, *command: Any) -> Any:
        if command == _protocol.NODES:
            nodes = self.client.get_primaries() if self.kind.cluster else [None]
            if not self.kind.is_async:
                return nodes
            return self._nodes(nodes)
        _, node, *rest = command
        if node is None:
            return self.client.execute_command(*rest)
        return self.client.execute_command(*rest, target_nodes=node)

    async def _nodes(self, nodes: list[Any]) -> list[Any]:
        if not nodes:  # an asyncio cluster client learns its nodes on first use
            await self.client.initialize()
            nodes = self.client.get_primaries()
        return nodes


class _OnePrimary(_ClusterTransport):
    """A call without keys: every command on one primary, picked at random for the call."""

    __slots__ = ("node",)

    def __init__(self, client: Any, execute: Send) -> None:
        super().__init__(client, execute)
        self.node: Any = None

    def send(self, primaries: list[Any], command: _protocol.Command) -> Any:
        if self.node is None:
            self.node = random.choice(primaries)
        return self.execute(*command, target_nodes=self.node)


def _immediate(pipe: Any, kind: _Kind) -> Send:
    """Where a pipeline's own commands can run at once, outside its queue."""
    if not kind.cluster:
        return pipe.immediate_execute_command  # type: ignore[no-any-return]
    cluster = _cluster_of(pipe)
    if cluster is not pipe:  # asyncio cluster pipelines wrap a client
        return cluster.execute_command  # type: ignore[no-any-return]
    for cls in type(pipe).__mro__:  # sync ones are cluster clients: run as the first non-pipeline class
        if "execute_command" in vars(cls) and not hasattr(cls, "execute"):
            return vars(cls)["execute_command"].__get__(pipe)  # type: ignore[no-any-return]
    raise TypeError(f"cannot run commands outside the queue of {type(pipe).__name__}")


def _transactional(pipe: Any) -> bool:
    """A cluster pipeline made with ``transaction=True`` (redis-py 6+): it takes the slot of each command
    from its keys as it is queued, and has no use for ``target_nodes``."""
    return hasattr(getattr(pipe, "_execution_strategy", None), "_explicit_transaction")


class _SlotOwner(list[Any]):
    """The ``target_nodes`` of a call queued on a cluster pipeline: the node serving its slot, looked up
    when the pipeline reads it.

    Every supported cluster pipeline (redis-py 5.2 to 8.1, sync and asyncio, and valkey-py) takes a
    list as it is, checks its length and reads ``target_nodes[0]`` once, at the point where it
    would otherwise route the command itself; it pops ``target_nodes`` on that first attempt, and
    routes any retry of the command itself.  So the node is looked up as redis-py's own routing
    would look it up (:meth:`_Routing.node`), when it would: after a slot map refreshed between
    queueing and executing, or by a batch retried before this command was reached, too.
    """

    __slots__ = ("_route",)

    def __init__(self, route: Callable[[], Any]) -> None:
        super().__init__((None,))  # one target, as len() and truth tell the pipeline
        self._route = route

    def __getitem__(self, index: Any) -> Any:
        if index not in (0, -1):
            raise IndexError(index)
        return self._route()

    def __iter__(self) -> Iterator[Any]:
        yield self[0]


def _queue_clustered(pipe: Any, command: _protocol.Command, tail: _protocol.Command) -> Any:
    """Queue ``command`` on a cluster pipeline, routed where redis-py would route it, without its help.

    That is by its key's slot, or a random slot when it has no keys, where
    redis-py would ask a node for the keys of each call (COMMAND GETKEYS).
    """
    if not _transactional(pipe):
        cluster = _cluster_of(pipe)
        slot = cluster.keyslot(tail[1]) if tail[0] else random.randrange(_SLOTS)
        route = functools.partial(_routing(cluster).node, cluster, slot, command[0])
        return pipe.execute_command(*command, target_nodes=_SlotOwner(route))
    if command[0] == "EVALSHA_RO":
        # a transaction runs on a primary, where the script's own no-writes flag refuses writes just as
        # well; redis-py parses EVALSHA's keys, but would ask a node for EVALSHA_RO's (an asyncio
        # transaction cannot: it asks from another event loop) and cannot route a keyless one
        return pipe.execute_command("EVALSHA", *command[1:])
    return pipe.execute_command(*command)


class _PipelineCalls:
    """The luaimport calls queued on one pipeline, and the ``execute`` that loads and maps them.

    Installed on the pipeline instance the first time a call is queued:
    ``pipe.execute``, ``pipe.reset`` and ``pipe.discard`` are wrapped (the
    pipeline class's own methods still do all the work), so ``pipe.execute()``
    puts a ``SCRIPT LOAD`` before the first call of each script (only while
    it runs: ``len(pipe)`` and the results are the user's commands alone), or
    on a cluster loads the missing scripts first, and returns their errors
    located in the ``.lua`` files.  The pipeline is held strongly only while calls are queued
    (so ``fn(client.pipeline()).execute()`` works) and weakly otherwise, so
    once it has run it is freed, and its connection released, by reference
    counting alone.
    """

    def __init__(self, pipe: Any, kind: _Kind) -> None:
        self.pipe = weakref.ref(pipe)
        self.queued_on: Any = None  # the pipeline, held strongly while calls are queued on it
        self.kind = kind
        self.calls: list[tuple[int, Linked]] = []
        pipe._luaimport_calls = self
        pipe.execute = self.execute
        pipe.reset = self.reset
        if hasattr(pipe, "discard"):
            pipe.discard = self.discard

    @classmethod
    def queue(cls, pipe: Any, kind: _Kind, linked: Linked, tail: _protocol.Command) -> Any:
        """Queue a call of ``linked`` on ``pipe``, installing the pipeline's calls on first use."""
        calls: _PipelineCalls | None = getattr(pipe, "_luaimport_calls", None)
        if calls is None:
            calls = cls(pipe, kind)
        position = len(pipe)
        command = _protocol.evalsha(linked, tail)
        queued = _queue_clustered(pipe, command, tail) if kind.cluster else pipe.execute_command(*command)
        if not calls.calls:
            calls.queued_on = pipe
        calls.calls.append((position, linked))
        return queued

    def _pipe(self) -> Any:
        pipe = self.pipe()
        assert pipe is not None, "called through the pipeline, which is alive"
        return pipe

    def reset(self, *args: Any, **kwargs: Any) -> Any:
        return self._emptied("reset", args, kwargs)

    def discard(self, *args: Any, **kwargs: Any) -> Any:
        return self._emptied("discard", args, kwargs)

    def _emptied(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Forget the queued calls, then run the pipeline class's own ``method``."""
        pipe = self._pipe()
        self.calls, self.queued_on = [], None
        return getattr(type(pipe), method)(pipe, *args, **kwargs)

    def execute(self, raise_on_error: bool = True, *args: Any, **kwargs: Any) -> Any:
        pipe = self._pipe()
        execute = type(pipe).execute
        calls = self.calls  # the pipeline's own reset() swaps in a new list once it has run
        if not calls:
            return execute(pipe, raise_on_error, *args, **kwargs)
        immediate = _immediate(pipe, self.kind)
        if self.kind.cluster:  # load where the calls may run: every primary, and replicas for reads
            immediate = _ClusterEverywhere(_cluster_of(pipe), immediate)

        def send(*command: Any) -> Any:
            if command[0] == _protocol.EXECUTE:
                for position, linked in reversed(command[1]):  # none in a cluster pipeline
                    # (args, options) pairs, in every redis-py style pipeline that is not a cluster's
                    pipe.command_stack.insert(position, (("SCRIPT LOAD", linked.script), {}))
                return execute(pipe, False, *args, **kwargs)
            if command == _protocol.RESET:
                return self.reset()
            return immediate(*command)

        protocol = _protocol.pipeline(calls, raise_on_error, preload=self.kind.cluster)
        # only a cluster's preload sends a batch: the missing scripts, one pipeline per node
        batch = self.kind.everywhere(_cluster_of(pipe)) if self.kind.cluster else self.kind.one_by_one(send)
        return self.kind.drive(send, batch, protocol)
