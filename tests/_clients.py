"""One way to run luaimport calls for each kind of client, so one suite covers them all.

A runner makes its own client (sync, asyncio, pipeline, transaction, or
Redis Cluster flavours of them) against a real server or cluster, and runs
calls through it the way an application would: direct calls, or calls queued
on a fresh pipeline that is then executed.  On the Functions backend it
first deploys, with ``bind(client, ..., backend="functions")``, the module
of each function it is given (every Lua module imported so far, for a
Python function that wraps calls), once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
import valkey
import valkey.asyncio
import valkey.asyncio.cluster
import valkey.cluster

import luaimport

Call = tuple[Callable[..., Any], Sequence[Any] | None, Sequence[Any] | None]

DIRECT = ["sync", "async"]
PIPELINES = ["pipeline", "transaction", "async_pipeline", "async_transaction"]
CLUSTER = ["cluster", "cluster_async", "cluster_pipeline", "cluster_async_pipeline"]
VALKEY_PY = [
    "valkey_sync",
    "valkey_async",
    "valkey_pipeline",
    "valkey_transaction",
    "valkey_cluster",
    "valkey_cluster_pipeline",
]
KINDS = DIRECT + PIPELINES + CLUSTER + VALKEY_PY
BACKENDS = ["scripts", "functions"]
#: every kind of client on both backends, for ``pytest.mark.parametrize("runner", ..., indirect=True)``
KINDS_AND_BACKENDS = [(kind, backend) for backend in BACKENDS for kind in KINDS]
KIND_IDS = [f"{kind}-{backend}" for kind, backend in KINDS_AND_BACKENDS]

#: (single server, cluster) client classes, by library and flavour
CLIENTS = {
    ("redis", False): (redis.Redis, redis.cluster.RedisCluster),
    ("redis", True): (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster),
    ("valkey", False): (valkey.Valkey, valkey.cluster.ValkeyCluster),
    ("valkey", True): (valkey.asyncio.Valkey, valkey.asyncio.cluster.ValkeyCluster),
}


class Runner:
    """Runs calls on one kind of client; ``client`` is what the calls receive."""

    def __init__(
        self,
        kind: str,
        server: dict[str, Any],
        cluster_port: int | None,
        backend: str = "scripts",
        **options: Any,
    ) -> None:
        """``options`` go to the client's constructor (``read_from_replicas``, ``retry``, ...)."""
        self.kind = kind
        self.backend = backend
        self.deployed: set[int] = set()
        self.is_async = "async" in kind
        self.loop = asyncio.new_event_loop() if self.is_async else None
        self.library = valkey if kind.startswith("valkey") else redis
        single, cluster = CLIENTS[self.library.__name__, self.is_async]
        self.cluster = "cluster" in kind
        if self.cluster:
            assert cluster_port is not None
            self.client: Any = cluster(host="127.0.0.1", port=cluster_port, **options)
        else:
            self.client = single(**server, **options)
        self.pipelined = "pipeline" in kind or "transaction" in kind

    def wait(self, result: Any) -> Any:
        if self.loop is not None:
            return self.loop.run_until_complete(result)
        return result

    def pipeline(self) -> Any:
        if self.cluster:
            return self.client.pipeline()
        return self.client.pipeline(transaction="transaction" in self.kind)

    def deploy(self, fn: Callable[..., Any]) -> None:
        """On the Functions backend, deploy ``fn``'s module (every Lua module, for another callable) once."""
        if self.backend != "functions" or id(fn) in self.deployed:
            return
        targets = (fn,) if isinstance(fn, (luaimport.LuaFunction, luaimport.LuaModule)) else ()
        self.wait(luaimport.bind(self.client, *targets, backend="functions"))
        self.deployed.add(id(fn))

    def call(
        self, fn: Callable[..., Any], keys: Sequence[Any] | None = None, args: Sequence[Any] | None = None
    ) -> Any:
        """One call; its error, if any, is raised."""
        self.deploy(fn)
        if not self.pipelined:
            return self.wait(fn(self.client, keys, args))
        (result,) = self.calls([(fn, keys, args)])
        return result

    def calls(self, calls: Sequence[Call], raise_on_error: bool = True) -> list[Any]:
        """Several calls: one pipeline for the pipelined kinds, one after another otherwise."""
        for fn, _, _ in calls:
            self.deploy(fn)
        if not self.pipelined:
            results = []
            for fn, keys, args in calls:
                try:
                    results.append(self.wait(fn(self.client, keys, args)))
                except self.library.exceptions.ResponseError as exc:
                    if raise_on_error:
                        raise
                    results.append(exc)
            return results
        pipe = self.pipeline()
        for fn, keys, args in calls:
            assert fn(pipe, keys, args) is pipe  # queued, and the pipeline returned, as redis-py does
        return list(self.wait(pipe.execute(raise_on_error=raise_on_error)))

    def ports(self) -> list[int]:
        """The ports of every node of the cluster the client talks to."""
        client = self.client
        if self.is_async:
            self.wait(client.initialize())
        return [node.port for node in client.get_nodes()]

    def run(self, coroutine_or_value: Awaitable[Any] | Any) -> Any:
        return self.wait(coroutine_or_value)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.run_until_complete(self.client.aclose())
            self.loop.close()
        else:
            self.client.close()
